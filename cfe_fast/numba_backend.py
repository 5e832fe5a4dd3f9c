"""Numba backend: the ALS half-steps, the reconstruction loss and the fused
aggregator kernel, with the signatures of :mod:`cfe_fast.reference`.

Design
------
* R and C are used instance-major (n, m), which is the estimator's native
  layout (``P = R.T``): every chunk of instances is a contiguous block.
* Gram matrices are built by BLAS GEMMs over packed lower triangles
  (``T = d (d + 1) / 2`` entries), e.g. ``G[:, chunk] = P_X @ C[chunk].T`` with
  ``P_X[t(a, b), u] = x_u[a] x_u[b]``: symmetry halves the work.
* The packed systems of a chunk are factorised together by one batched
  Cholesky whose innermost loop runs over the systems, so it vectorises (SIMD
  across systems) and stays cache-resident. Factorisation and solves run in
  float64 for float32 data too.
* Solvers (``solver=`` of the half-steps; rule of ``"auto"``: :func:`choose_solver`):
  ``"dual"`` -- instance step in the m x m form (push-through identity)
  ``y = X D (lam I + D X^T X D)^-1 D r`` with ``D = diag(sqrt(c))``, the
  default when m <= 1.2 d; ``"primal"`` -- d x d systems from the batched-GEMM
  Gram, the default otherwise; ``"cg"`` -- approximate: a few warm-started,
  Jacobi-preconditioned conjugate-gradient steps per system without forming
  the systems (matrix-vector products are GEMMs), as implicit's ALS does.
  The classifier step always builds its m Grams with GEMMs over packed
  outer products, a block of latent rows at a time so the block stays in
  cache (or runs CG with ``"cg"``).
* Reductions over instances (classifier Grams, losses, gradients) sum float64
  partials of fixed-size chunks in a fixed order, so results do not depend on
  the number of threads.
"""

from contextlib import contextmanager
from functools import partial

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads, types
from numba.extending import overload

from ._errors import PIVOT_RTOL, SingularSystemError
from ._float64 import squared_norm
from ._threads import single_threaded_blas

#: every kernel: cached on disk, and NumPy's error model (a float division by
#: zero gives inf/nan, as in NumPy, instead of raising): Python's model puts a
#: zero test before every division, which kept the loops over systems with a
#: division (pivots, triangular solves) from vectorising (scalar vdivsd/vsqrtsd;
#: the pivot loop of the batched Cholesky ran 4.4x faster without the test)
_njit = partial(njit, cache=True, error_model="numpy")

#: bytes of packed float64 systems factorised together (about the L2 cache;
#: measured at m=100, d=64: 256 KiB 2.5 s, 1 MiB 1.06 s, 2 MiB 2.0 s per 1e5 instances)
_SYSTEMS_BYTES = 1024 * 1024
#: instances per partial sum of the classifier Grams, and bytes of packed outer
#: products y_i y_i^T per GEMM there (in L2). Measured per 1e6 instances, one core:
#: (m, d) = (10, 64) 1.3 s (256 instances, 512 KiB) against 1.9 s (1024, 512 KiB)
#: and 4.2 s before (1024 instances, all d (d + 1) / 2 rows at once: 17 MB);
#: (100, 64) 12 s for all of them (GEMM-bound).
_GRAM_CHUNK = 256
_GRAM_BLOCK_BYTES = 512 * 1024
#: instances per partial sum of a reduction over instances
_REDUCE_CHUNK = 1024
#: parallel tasks of the classifier-step reductions (contiguous runs of chunks, one
#: partial sum each): a fixed number, so results do not depend on the thread count
_REDUCE_BLOCKS = 32
#: kernels estimated below this many flops run on one thread: a parallel region
#: costs a thread wake-up (~0.05 ms idle, more on a loaded machine). Measured
#: at m=18, d=9 with one parallel region per call (see :func:`_ordered_sum`):
#: 2 threads break even at n=1,000 instances (~2e6 flops) and win from 3,000
_PARALLEL_MIN_FLOPS = 2e6


# ----------------------------------------------------------------- helpers
@contextmanager
def _kernel_threads(flops):
    """BLAS on one thread, and Numba's parallel loops on one thread for small work.

    Results do not depend on the thread count, so this changes speed only.
    """
    before = get_num_threads()
    with single_threaded_blas():
        if flops < _PARALLEL_MIN_FLOPS:
            set_num_threads(1)
        try:
            yield
        finally:
            set_num_threads(before)


def _float64(a):
    """``a`` as float64 in a kernel: ``a`` itself when it already is (astype always copies)."""
    return a.astype(np.float64)


@overload(_float64)
def _float64_overload(a):
    if a.dtype == types.float64:
        return lambda a: a
    return lambda a: a.astype(np.float64)


@_njit(inline="always")
def _tri(i):
    """Offset of row i in a packed lower triangle (row-major)."""
    return i * (i + 1) // 2


@_njit
def _ordered_sum(parts):
    """parts[0] + parts[1] + ... in this order, as a new float64 array.

    A serial function on purpose: in a parallel kernel every array expression
    outside the prange loop (``g += part[c]``, ``np.zeros``) is a parallel
    region of its own, one launch per term of a loop -- 64 per classifier
    step and 60 per aggregator pass, ~50 us each with passively waiting
    threads (the aggregator kernel ran 3.5x slower on 2 threads than on 1).
    The parallel kernels therefore allocate their per-task partials with
    np.empty, fill them inside the loop, and add them up here.
    """
    total = np.zeros(parts.shape[1:])
    for k in range(parts.shape[0]):
        total += parts[k]
    return total


@_njit(inline="always")
def _scaled_product(out, a, g, b):
    """out = a * g * b elementwise (a, b rows, g a scalar), without temporaries."""
    for i in range(out.shape[0]):
        out[i] = a[i] * g * b[i]


@_njit
def _add_ridge(G, k, lam):
    for j in range(k):
        G[_tri(j) + j, :] += lam


@_njit(inline="always", fastmath={"contract"})
def _subtract_products(t, A, L, n):
    """t[b] -= sum_{p<n} A[p, b] * L[p, b] for every system b.

    Four terms per pass over t: one load and store of t per four fused
    multiply-adds instead of per one (the loop over b is SIMD across systems).
    The grouping is fixed, so results do not depend on anything but the data.
    """
    nb = t.shape[0]
    p = 0
    while p + 4 <= n:
        a0, a1, a2, a3 = A[p], A[p + 1], A[p + 2], A[p + 3]
        l0, l1, l2, l3 = L[p], L[p + 1], L[p + 2], L[p + 3]
        for b in range(nb):
            t[b] -= (a0[b] * l0[b] + a1[b] * l1[b]) + (a2[b] * l2[b] + a3[b] * l3[b])
        p += 4
    while p < n:
        a0, l0 = A[p], L[p]
        for b in range(nb):
            t[b] -= a0[b] * l0[b]
        p += 1


@_njit(fastmath={"contract"})
def _packed_cholesky(G, failed):
    """Factorise nb SPD systems at once, in place: G = L L^T per column.

    G : (k (k + 1) / 2, nb) float64, packed lower triangles, one system per
        column (the innermost index, so every loop below is SIMD across systems).
    failed : (nb,) bool, set where a pivot L_jj**2 <= PIVOT_RTOL * A_jj.

    Left-looking (one column of L at a time, from the rows above it), with
    the dot products of four columns of L per pass (:func:`_subtract_products`).
    """
    nb = G.shape[1]
    k = int((np.sqrt(8 * G.shape[0] + 1) - 1) / 2 + 0.5)
    inv = np.empty(nb)
    for j in range(k):
        rj = _tri(j)
        Lj = G[rj:rj + j]
        for b in range(nb):
            inv[b] = G[rj + j, b]  # A_jj, kept for the pivot test
        _subtract_products(G[rj + j], Lj, Lj, j)
        for b in range(nb):
            pivot = G[rj + j, b]
            if not pivot > PIVOT_RTOL * inv[b]:
                failed[b] = True
                pivot = 1.0
            pivot = np.sqrt(pivot)
            G[rj + j, b] = pivot
            inv[b] = 1.0 / pivot
        for i in range(j + 1, k):
            ri = _tri(i)
            _subtract_products(G[ri + j], G[ri:ri + j], Lj, j)
            for b in range(nb):
                G[ri + j, b] *= inv[b]


@_njit(fastmath={"contract"})
def _packed_solve(L, B):
    """Solve L L^T x = B in place for nb factorised systems; B is (k, nb).

    Forward substitution takes the dot products four terms per pass
    (:func:`_subtract_products`); back substitution is right-looking: once
    x_i is known, it leaves the rows p < i of B, which are the contiguous
    row i of the packed L (a left-looking pass would read a column of L).
    """
    k, nb = B.shape
    for i in range(k):  # L z = B
        ri = _tri(i)
        _subtract_products(B[i], L[ri:ri + i], B, i)
        _divide(B[i], L[ri + i])
    for i in range(k - 1, -1, -1):  # L^T x = z
        ri = _tri(i)
        xi = B[i]
        _divide(xi, L[ri + i])
        for p in range(i):
            lp = L[ri + p]
            bp = B[p]
            for b in range(nb):
                bp[b] -= lp[b] * xi[b]


@_njit(inline="always")
def _divide(row, by):
    for b in range(row.shape[0]):
        row[b] /= by[b]


@_njit
def _packed_cholesky_solve(G, B, failed):
    """Factorise the packed systems G and solve them for B, both in place."""
    _packed_cholesky(G, failed)
    _packed_solve(G, B)


@_njit
def _packed_outer_rows(F, a0, a1):
    """Rows a0 <= a < a1 of the packed f f^T of every column of F (k, nb).

    Returns the (tri(a1) - tri(a0), nb) block of entries t(a, c), c <= a.
    """
    nb = F.shape[1]
    P = np.empty((_tri(a1) - _tri(a0), nb), dtype=F.dtype)
    for a in range(a0, a1):
        fa = F[a]
        for c in range(a + 1):
            fc = F[c]
            row = P[_tri(a) - _tri(a0) + c]
            for b in range(nb):
                row[b] = fa[b] * fc[b]
    return P


@_njit
def _packed_outer(F):
    """(k, nb) columns f -> (k (k + 1) / 2, nb) packed f f^T per column."""
    return _packed_outer_rows(F, 0, F.shape[0])


# --------------------------------------------------------------- solver rule
#: exact instance-step forms; "cg" is the approximate one
SOLVERS_EXACT = ("dual", "primal")
SOLVERS = ("auto", *SOLVERS_EXACT, "cg")
#: conjugate-gradient steps per half-step of solver="cg" (implicit's default)
CG_STEPS = 3


#: the dual form is taken while m <= DUAL_MAX_RATIO * d (measured: benchmarks/solver_rule.py)
DUAL_MAX_RATIO = 1.2


def choose_solver(m, d, lam=1.0):
    """The exact instance-step form that ``solver="auto"`` uses for m classifiers, latent dim d.

    ``"dual"`` (m x m systems, push-through identity) when m <= 1.2 d and
    lam > 0, else ``"primal"`` (d x d systems from a batched-GEMM Gram). With
    lam = 0 only m >= d is solvable, and the dual system D X^T X D then has
    rank d: singular for m > d, so the primal form is taken. Per instance the
    dual factorises an m x m system (m^3 / 3 flops, all in the batched
    Cholesky); the primal builds the d x d Gram with a GEMM (m d (d + 1)
    flops, about three times faster per flop) and factorises it (d^3 / 3).
    With that ratio they break even near m = 1.3 d; measured on the
    development machine (``benchmarks/results/solver_rule_cpu2.md``) the
    dual takes 0.5-0.75x the primal's time at m = d and 0.5-0.9x at
    m = 1.2 d, and is slower from about m = 1.25 d on. The classifier step
    always solves m d x d systems (n is the large dimension).
    """
    return "dual" if m <= DUAL_MAX_RATIO * d and lam > 0 else "primal"


def _check_solver(solver, m, d, lam=1.0):
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "auto":
        return choose_solver(m, d, lam)
    return solver


# -------------------------------------------------------- instance step
@_njit(parallel=True)
def _instance_primal(X, PX, Rt, Ct, lam, chunk, Yt, failed, v, Zt, sse):
    """Primal d x d systems; if v.size, also Zt[i] = A_i^-1 v (same factors);
    if sse.size, sse[c] = sum c (r - r_hat)^2 over chunk c at the new factors."""
    n = Rt.shape[0]
    d = X.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        Cc = Ct[s:e]
        G = _float64(np.dot(PX, Cc.T))
        B = _float64(np.dot(X, (Cc * Rt[s:e]).T))
        _add_ridge(G, d, lam)
        _packed_cholesky_solve(G, B, failed[s:e])
        Yt[s:e] = B.T
        if v.size:
            V = np.empty((d, e - s))
            for a in range(d):
                V[a] = v[a]
            _packed_solve(G, V)
            Zt[s:e] = V.T
        if sse.size:  # while the chunk of R and C is in cache
            sse[c] = _squared_residual(np.dot(Yt[s:e], X), Rt[s:e], Cc)


@_njit(parallel=True)
def _instance_dual(X, XtX, Rt, Ct, lam, chunk, Yt, failed, w, Zt, sse):
    """Dual m x m systems (m <= 1.2 d by default); if w.size, also Zt[i] = A_i^-1 X w; if
    sse.size, sse[c] = sum c (r - r_hat)^2 over chunk c at the new factors.

    A_i^-1 X w = (X w - X D M^-1 D X^T X w) / lam  (Woodbury), M = lam I + D X^T X D.
    The dual solution z_i = M^-1 D r_i gives the weighted residual for free:
    D (r_i - X^T y_i) = D r_i - (M - lam I) z_i = lam z_i.
    """
    n, m = Rt.shape
    if w.size:
        Xw = np.dot(X, w)
        XtXw = np.dot(XtX, w)
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        # (m, nc) C-contiguous: a transposed view stays F-ordered through sqrt and
        # products, and the loops over systems on its strided rows do not vectorise
        S = np.sqrt(_float64(np.ascontiguousarray(Ct[s:e].T)))  # D per instance
        M = np.empty((_tri(m), e - s))
        for u in range(m):
            for v in range(u + 1):
                _scaled_product(M[_tri(u) + v], S[u], XtX[u, v], S[v])
        Z = S * _float64(np.ascontiguousarray(Rt[s:e].T))
        _add_ridge(M, m, lam)
        _packed_cholesky_solve(M, Z, failed[s:e])
        Yt[s:e] = np.dot((S * Z).T, X.T)  # instance-major GEMM output: a transposed write was slower than the solve
        if w.size:
            W = np.empty((m, e - s))
            for u in range(m):
                W[u] = S[u] * XtXw[u]
            _packed_solve(M, W)
            Zc = np.dot((S * W).T, X.T)
            for i in range(e - s):
                for a in range(Zc.shape[1]):
                    Zt[s + i, a] = (Xw[a] - Zc[i, a]) / lam
        if sse.size:
            sse[c] = lam * lam * np.sum(Z * Z)


def _chunk_for(k):
    """Systems factorised together so that their packed triangles fit in cache."""
    return int(np.clip(_SYSTEMS_BYTES // (8 * max(k * (k + 1) // 2, 1)) // 8 * 8, 8, 512))


def _raise_if_failed(failed, what):
    if failed.any():
        idx = int(np.flatnonzero(failed)[0])
        raise SingularSystemError(
            f"the ridge system of {what} {idx} is singular (or numerically so); increase lam"
        )


def _working_dtype(R):
    return np.float32 if R.dtype == np.float32 else np.float64


def solve_instances(X, Rt, Ct, lam, w=None, *, solver="auto", init=None, cg_steps=CG_STEPS, loss=False):
    """Instance half-step on instance-major data.

    Parameters
    ----------
    X : (d, m) classifier factors.
    Rt, Ct : (n, m) C-contiguous probabilities and confidences.
    lam : float
    w : (m,) array, optional
        Also return Zt (n, d) float64 with Zt[i] = (X C_i X^T + lam I)^-1 X w,
        from the same factorisations (the exact trainer's rank-one update
        needs it; an exact solver, and lam > 0 with the dual form).
    solver : {"auto", "dual", "primal", "cg"}
        Exact dual m x m or primal d x d systems (``"auto"``: see
        :func:`choose_solver`), or ``"cg"``: ``cg_steps`` Jacobi-preconditioned
        conjugate-gradient steps from ``init`` -- approximate.
    init : (n, d) array, optional
        Start of the CG iterations (the previous instance factors); zeros if None.
    cg_steps : int
    loss : bool
        Also return ``sum_{u,i} c_ui (r_ui - x_u^T y_i)^2`` at the new factors
        (float64), computed while each chunk of R and C is in cache: free in
        the dual form (the residual is lam z_i), one small GEMM per chunk in
        the primal form, a separate pass with ``"cg"``.

    Returns
    -------
    Yt : (n, d) C-contiguous, dtype of Rt; then Zt if ``w`` is given, then the
    weighted squared residual if ``loss``.
    """
    dtype = _working_dtype(Rt)
    d, m = X.shape
    n = Rt.shape[0]
    want_z = w is not None
    solver = _check_solver(solver, m, d, lam)
    if want_z and solver == "cg":
        raise ValueError("w (the second right-hand side) needs an exact solver, not 'cg'")
    if want_z and solver == "dual" and lam == 0:
        raise ValueError("w (the second right-hand side) with the dual form needs lam > 0; use solver='primal'")
    Yt = np.empty((n, d), dtype=dtype)
    failed = np.zeros(n, dtype=np.bool_)
    Zt = np.empty((n, d) if want_z else (0, d))
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    with _kernel_threads(n * (m * d * d + d**3 / 3)):
        if solver == "cg":
            Y0t = np.zeros((n, d), dtype=dtype) if init is None else np.ascontiguousarray(init, dtype=dtype)
            _instance_cg(X64, Rt, Ct, float(lam), _chunk_for(d), int(cg_steps), Y0t, Yt)
            sse = np.array([weighted_squared_residual_t(X, Yt, Rt, Ct)] if loss else [])
        elif solver == "dual":
            chunk = _chunk_for(m)
            sse = np.empty(-(-n // chunk) if loss else 0)
            w64 = np.asarray(w if want_z else np.empty(0), dtype=np.float64)
            _instance_dual(X64, X64.T @ X64, Rt, Ct, float(lam), chunk, Yt, failed, w64, Zt, sse)
        else:
            chunk = _chunk_for(d)
            sse = np.empty(-(-n // chunk) if loss else 0)
            X = np.ascontiguousarray(X, dtype=dtype)
            rows, cols = np.tril_indices(d)
            PX = np.ascontiguousarray(X[rows] * X[cols])
            v = X64 @ np.asarray(w, dtype=np.float64) if want_z else np.empty(0)
            _instance_primal(X, PX, Rt, Ct, float(lam), chunk, Yt, failed, v, Zt, sse)
    _raise_if_failed(failed, "instance")
    outputs = [Yt] + ([Zt] if want_z else []) + ([float(sse.sum())] if loss else [])
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


@_njit(inline="always")
def _cg_step(matvec_P, P, R, Y, diag, rz):
    """One preconditioned CG step on nb independent systems (columns), in place.

    matvec_P = A P; R the residual; rz[b] = r_b^T z_b. Systems whose search
    direction has no curvature (converged, or zero) are left unchanged. Every
    loop runs over the systems innermost (rows are contiguous), so it
    vectorises; each system's sums still run over a in order.
    """
    k, nb = P.shape
    pap = np.zeros(nb)
    for a in range(k):
        for b in range(nb):
            pap[b] += P[a, b] * matvec_P[a, b]
    step = np.empty(nb)  # alpha, then beta
    for b in range(nb):
        step[b] = rz[b] / pap[b] if pap[b] > 0.0 else 0.0
    rz_new = np.zeros(nb)
    for a in range(k):
        for b in range(nb):
            Y[a, b] += step[b] * P[a, b]
            R[a, b] -= step[b] * matvec_P[a, b]
            rz_new[b] += R[a, b] * R[a, b] / diag[a, b]
    for b in range(nb):
        step[b] = rz_new[b] / rz[b] if rz[b] > 0.0 else 0.0
        rz[b] = rz_new[b]
    for a in range(k):
        for b in range(nb):
            P[a, b] = R[a, b] / diag[a, b] + step[b] * P[a, b]


@_njit(inline="always")
def _cg_start(R, diag):
    """Jacobi-preconditioned first direction P = D^-1 R and rz = r^T D^-1 r per column."""
    P = R / diag
    rz = np.sum(R * P, axis=0)
    return P, rz


@_njit(parallel=True)
def _instance_cg(X, Rt, Ct, lam, chunk, steps, Y0t, Yt):
    """Warm-started Jacobi-preconditioned CG on the primal systems, without forming them.

    A_i p = X (c_i * (X^T p)) + lam p costs 4 d m flops (two small GEMMs per chunk).
    """
    n = Rt.shape[0]
    X2 = X * X
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        Cc = _float64(np.ascontiguousarray(Ct[s:e].T))  # (m, nc)
        Y = _float64(np.ascontiguousarray(Y0t[s:e].T))  # (d, nc)
        diag = np.maximum(np.dot(X2, Cc) + lam, 1e-300)
        R = np.dot(X, Cc * Rt[s:e].T) - np.dot(X, Cc * np.dot(X.T, Y)) - lam * Y
        P, rz = _cg_start(R, diag)
        for _ in range(steps):
            _cg_step(np.dot(X, Cc * np.dot(X.T, P)) + lam * P, P, R, Y, diag, rz)
        Yt[s:e] = Y.T


# ------------------------------------------------------ classifier step
@_njit
def _chunk_grams(Yc, Cc, RCc, rows, Gc, Bc):
    """Packed Grams (T, m) and right-hand sides (d, m) of one chunk of instances.

    Yc (d, nc) instance factors, Cc (nc, m) confidences, RCc = Cc * Rc. The
    packed outer products are formed ``rows`` latent rows at a time, so the
    block that the GEMM reads stays in cache; each block fills its own rows of Gc.
    """
    d = Yc.shape[0]
    for a0 in range(0, d, rows):
        a1 = min(d, a0 + rows)
        Gc[_tri(a0):_tri(a1)] = np.dot(_packed_outer_rows(Yc, a0, a1), Cc)
    # the right-hand side cancels (sums of c y r of both signs): float64 always
    Bc[:] = np.dot(_float64(Yc), _float64(RCc))


@_njit(inline="always")
def _block_range(b, n_blocks, n_chunks):
    """Chunks [c0, c1) of reduction block b: n_chunks split into n_blocks contiguous runs."""
    return b * n_chunks // n_blocks, (b + 1) * n_chunks // n_blocks


@_njit(parallel=True)
def _classifier_grams(Yt, Rt, Ct, chunk, n_blocks, rows=1):
    """G (T, m) = sum_i c_ui packed(y_i y_i^T) and B (d, m) = sum_i y_i c_ui r_ui, float64.

    Instances are cut into fixed chunks, the chunks into ``n_blocks``
    contiguous blocks (one parallel task each, one parallel region in all);
    a block sums its chunks in order and the blocks are added in order, so
    the result depends on n and n_blocks only, not on the number of threads.
    """
    n, d = Yt.shape
    m = Rt.shape[1]
    n_chunks = (n + chunk - 1) // chunk
    n_blocks = max(1, min(n_blocks, n_chunks))
    part_G = np.empty((n_blocks, _tri(d), m))
    part_B = np.empty((n_blocks, d, m))
    for blk in prange(n_blocks):
        c0, c1 = _block_range(blk, n_blocks, n_chunks)
        part_G[blk] = 0.0
        part_B[blk] = 0.0
        Gc = np.empty((_tri(d), m))
        Bc = np.empty((d, m))
        for c in range(c0, c1):
            s = c * chunk
            e = min(n, s + chunk)
            Cc = Ct[s:e]
            _chunk_grams(np.ascontiguousarray(Yt[s:e].T), Cc, Cc * Rt[s:e], rows, Gc, Bc)
            part_G[blk] += Gc
            part_B[blk] += Bc
    return _ordered_sum(part_G), _ordered_sum(part_B)  # fixed order: independent of the thread count


def _gram_rows(d, chunk):
    """Latent rows per packed-outer block of :func:`_chunk_grams`: ~_GRAM_BLOCK_BYTES per block."""
    return int(np.clip(_GRAM_BLOCK_BYTES // (8 * chunk * d), 1, d))


def classifier_sums(Yt, Rt, Ct):
    """Per-classifier packed Grams and right-hand sides, before the ridge and the solve.

    Sums over disjoint blocks of instances add up to the sums over their union
    (the Dask backend reduces them across chunks).

    Parameters
    ----------
    Yt : (n, d) instance factors; Rt, Ct : (n, m), instance-major.

    Returns
    -------
    G : (d (d + 1) / 2, m) float64
        Column u is the packed lower triangle (row-major, entry (a, b) at
        a (a + 1) / 2 + b) of Y C_u Y^T = sum_i c_ui y_i y_i^T.
    B : (d, m) float64
        Column u is Y C_u r_u.
    """
    dtype = _working_dtype(Rt)
    d = Yt.shape[1]
    m = Rt.shape[1]
    with _kernel_threads(Yt.shape[0] * m * d * d):
        return _classifier_grams(np.ascontiguousarray(Yt, dtype=dtype), Rt, Ct, _GRAM_CHUNK, _REDUCE_BLOCKS,
                                 _gram_rows(d, _GRAM_CHUNK))


@_njit(parallel=True)
def _classifier_products(Yt, Rt, Ct, P, first, chunk, n_blocks):
    """One pass over the instances for the classifier CG, without forming the systems.

    Returns out (3 if ``first`` else 1, d, m): out[0] = sum_i y_i c_ui (y_i^T p_u)
    for every u (the systems times P); if ``first``, also out[1] = Y C_u r_u
    (right-hand sides) and out[2] = sum_i c_ui y_i**2 (the Jacobi diagonals).
    Fixed chunks in fixed blocks, added in order (see :func:`_classifier_grams`).
    """
    n = Yt.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    n_blocks = max(1, min(n_blocks, n_chunks))
    part = np.empty((n_blocks, 3 if first else 1, P.shape[0], P.shape[1]))
    for blk in prange(n_blocks):
        c0, c1 = _block_range(blk, n_blocks, n_chunks)
        part[blk] = 0.0
        for c in range(c0, c1):
            s = c * chunk
            e = min(n, s + chunk)
            Yc = _float64(Yt[s:e])
            Cc = _float64(Ct[s:e])
            part[blk, 0] += np.dot(Yc.T, Cc * np.dot(Yc, P))
            if first:
                part[blk, 1] += np.dot(Yc.T, Cc * Rt[s:e])
                part[blk, 2] += np.dot((Yc * Yc).T, Cc)
    return _ordered_sum(part)


def _solve_classifiers_cg(Yt, Rt, Ct, lam, init, steps):
    """Warm-started Jacobi-preconditioned CG for the m classifier systems (approximate).

    Each step is one pass over the instances (:func:`_classifier_products`).
    """
    d = Yt.shape[1]
    m = Rt.shape[1]
    X = np.zeros((d, m)) if init is None else np.array(init, dtype=np.float64)
    with _kernel_threads(4 * Yt.shape[0] * m * d):
        sums = _classifier_products(Yt, Rt, Ct, X, True, _REDUCE_CHUNK, _REDUCE_BLOCKS)
        diag = np.maximum(sums[2] + lam, 1e-300)
        R = sums[1] - sums[0] - lam * X
        P, rz = _cg_start(R, diag)
        for _ in range(steps):
            AP = _classifier_products(Yt, Rt, Ct, P, False, _REDUCE_CHUNK, _REDUCE_BLOCKS)[0]
            _cg_step(AP + lam * P, P, R, X, diag, rz)
    return X


def solve_classifiers(Yt, Rt, Ct, lam, *, solver="auto", init=None, cg_steps=CG_STEPS):
    """Classifier half-step on instance-major data. Returns X (d, m).

    ``solver``: any exact choice builds the m packed Grams
    (:func:`classifier_sums`) and factorises them; ``"cg"`` runs
    ``cg_steps`` preconditioned CG steps from ``init`` (d, m) (zeros if None)
    without forming the Grams -- approximate.
    """
    dtype = _working_dtype(Rt)
    d = Yt.shape[1]
    m = Rt.shape[1]
    solver = _check_solver(solver, m, d)
    Yt = np.ascontiguousarray(Yt, dtype=dtype)
    if solver == "cg":
        return _solve_classifiers_cg(Yt, Rt, Ct, float(lam), init, int(cg_steps)).astype(dtype)
    G, B = classifier_sums(Yt, Rt, Ct)
    return solve_classifier_sums(G, B, lam, dtype)


def solve_classifier_sums(G, B, lam, dtype=np.float64):
    """X (d, m) from the summed classifier-step sums of :func:`classifier_sums`.

    Adds the ridge and solves the m packed systems; G and B are overwritten.
    """
    _add_ridge(G, B.shape[0], float(lam))
    failed = np.zeros(B.shape[1], dtype=np.bool_)
    _packed_cholesky_solve(G, B, failed)
    _raise_if_failed(failed, "classifier")
    return B.astype(dtype)


# ------------------------------------------------------------- losses
@_njit
def _squared_residual(R_hat, Rc, Cc):
    """sum c (r - r_hat)^2 over a block of instances (nc, m), in float64."""
    acc = 0.0
    for i in range(Rc.shape[0]):
        for u in range(Rc.shape[1]):
            r = np.float64(Rc[i, u]) - np.float64(R_hat[i, u])
            acc += np.float64(Cc[i, u]) * r * r
    return acc


@_njit(parallel=True)
def _weighted_squared_residual(X, Yt, Rt, Ct, chunk):
    n = Rt.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    partial = np.empty(n_chunks)
    for c in prange(n_chunks):
        s = c * chunk
        e = min(n, s + chunk)
        partial[c] = _squared_residual(np.dot(Yt[s:e], X), Rt[s:e], Ct[s:e])
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


@_njit(parallel=True)
def _weighted_residual_grads(X, Yt, Rt, Ct, chunk, gYt):
    """Fused pass over chunks with E = c (r - r_hat): returns sum c (r - r_hat)^2 and
    gX = -2 sum_i y_i e_i^T (d, m), and writes gYt[i] = -2 X e_i (float64,
    fixed-order reduction)."""
    n, m = Rt.shape
    d = X.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    sse_p = np.empty(n_chunks)
    gX_p = np.empty((n_chunks, d, m))
    X64 = _float64(X)
    for c in prange(n_chunks):
        s = c * chunk
        e = min(n, s + chunk)
        Yc = _float64(Yt[s:e])
        residual = _float64(Rt[s:e]) - np.dot(Yc, X64)
        E = _float64(Ct[s:e]) * residual
        acc = 0.0
        for i in range(e - s):
            for u in range(m):
                acc += E[i, u] * residual[i, u]
        sse_p[c] = acc
        gX_p[c] = -2.0 * np.dot(Yc.T, E)
        gYt[s:e] = -2.0 * np.dot(E, X64.T)
    sse = 0.0
    for c in range(n_chunks):
        sse += sse_p[c]
    return sse, _ordered_sum(gX_p)


@_njit(inline="always")
def _sample_terms(z, y, gamma, exact_focal):
    """Per-instance loss, dloss/dz and curvature (see reference.sample_loss_terms).

    One exp and one log1p per instance (two exps with focal loss): with
    e = exp(-|z|), p_t and 1 - p_t are 1 / (1 + e) and e / (1 + e) in the
    order the sign of a = (2y - 1) z gives, and -log p_t = max(-a, 0) + log1p(e).
    """
    sign = 2.0 * y - 1.0
    a = sign * z
    e = np.exp(-abs(z))
    log1p_e = np.log1p(e)
    big = 1.0 / (1.0 + e)
    small = e * big
    pt, q = (big, small) if a >= 0.0 else (small, big)  # p_t, 1 - p_t
    nlog_pt = max(-a, 0.0) + log1p_e
    bce_grad = -sign * q  # = sigmoid(z) - y, without cancellation
    bce_curv = pt * q
    if gamma == 0.0:
        return nlog_pt, bce_grad, bce_curv
    qg = np.exp(-gamma * (max(a, 0.0) + log1p_e))  # (1 - p_t)^gamma
    loss = qg * nlog_pt
    if not exact_focal:
        return loss, qg * bce_grad, qg * bce_curv
    log_pt = -nlog_pt
    grad = sign * (gamma * qg * pt * log_pt - qg * q)
    curv = gamma * qg * q * pt * (log_pt + 1.0) - gamma * gamma * qg * pt * pt * log_pt + (gamma + 1.0) * qg * q * pt
    return loss, grad, curv


@_njit(parallel=True)
def _aggregator_partials(v, b, YtL, yL, omega, gamma, exact_focal, want_hessian, chunk):
    """Fused pass over labeled instances: z_i = v^T y_i + b, never R_hat.

    Returns the weighted loss sum, g = sum e_i [y_i; 1] and, if asked,
    H = sum h_i [y_i; 1][y_i; 1]^T (all float64, fixed-order reduction).
    A chunk's Hessian is one small GEMM, [Y; 1]^T (h * [Y; 1]).
    """
    n, d = YtL.shape
    n_chunks = (n + chunk - 1) // chunk
    k = d + 1
    loss_p = np.empty(n_chunks)
    grad_p = np.empty((n_chunks, k))
    hess_p = np.empty((n_chunks, k, k) if want_hessian else (n_chunks, 0, 0))
    for c in prange(n_chunks):
        s = c * chunk
        nc = min(n, s + chunk) - s
        Yc = np.empty((nc, k))
        Hc = np.empty((nc, k) if want_hessian else (0, k))
        g = np.zeros(k)
        loss_sum = 0.0
        for r in range(nc):
            i = s + r
            z = b
            for a in range(d):
                Yc[r, a] = YtL[i, a]
                z += v[a] * Yc[r, a]
            Yc[r, d] = 1.0
            loss, grad, curv = _sample_terms(z, yL[i], gamma, exact_focal)
            loss_sum += omega[i] * loss
            e = omega[i] * grad
            for a in range(k):
                g[a] += e * Yc[r, a]
            if want_hessian:
                h = omega[i] * curv
                for a in range(k):
                    Hc[r, a] = h * Yc[r, a]
        loss_p[c] = loss_sum
        grad_p[c] = g
        if want_hessian:
            hess_p[c] = np.dot(Yc.T, Hc)
    loss_total = 0.0
    for c in range(n_chunks):
        loss_total += loss_p[c]
    return loss_total, _ordered_sum(grad_p), _ordered_sum(hess_p)


# ------------------------------------------------------------ public kernels
def _instance_major(A, dtype):
    return np.ascontiguousarray(np.asarray(A).T, dtype=dtype)


def _instance_major_init(init, dtype):
    return None if init is None else _instance_major(init, dtype)


def update_instance_factors(X, R, C, lam, *, solver="auto", init=None, cg_steps=CG_STEPS, with_loss=False):
    """Instance half-step (see :func:`cfe_fast.reference.update_instance_factors`).

    ``solver`` and ``init`` (d, n), the CG start, as in :func:`solve_instances`;
    ``with_loss``: also return the normalised L_rec at (X, Y), computed in the
    same pass over R and C.
    """
    dtype = _working_dtype(np.asarray(R))
    result = solve_instances(X, _instance_major(R, dtype), _instance_major(C, dtype), lam,
                             solver=solver, init=_instance_major_init(init, dtype), cg_steps=cg_steps, loss=with_loss)
    if not with_loss:
        return result.T
    Yt, sse = result
    return Yt.T, _normalised_loss(sse, X, Yt, lam)


def update_classifier_factors(Y, R, C, lam, *, solver="auto", init=None, cg_steps=CG_STEPS):
    """Classifier half-step (see :func:`cfe_fast.reference.update_classifier_factors`).

    ``solver`` and ``init`` (d, m), the CG start, as in :func:`solve_classifiers`.
    """
    dtype = _working_dtype(np.asarray(R))
    return solve_classifiers(_instance_major(Y, dtype), _instance_major(R, dtype), _instance_major(C, dtype), lam,
                             solver=solver, init=init, cg_steps=cg_steps)


def instance_solves(X, R, C, lam, w):
    """Instance half-step and Z[:, i] = A_i^-1 X w (see :func:`cfe_fast.reference.instance_solves`)."""
    dtype = _working_dtype(np.asarray(R))
    Yt, Zt = solve_instances(X, _instance_major(R, dtype), _instance_major(C, dtype), lam, w)
    return Yt.T, Zt.T


def classifier_gram_terms(Y, R, C):
    """Per-classifier Grams (m, d, d) and right-hand sides (m, d) (see the reference)."""
    dtype = _working_dtype(np.asarray(R))
    G, B = classifier_sums(_instance_major(Y, dtype), _instance_major(R, dtype), _instance_major(C, dtype))
    d = B.shape[0]
    rows, cols = np.tril_indices(d)
    full = np.zeros((G.shape[1], d, d))
    full[:, rows, cols] = G.T
    full[:, cols, rows] = G.T
    return full, B.T


def reconstruction_gradient(X, Y, R, C, lam):
    """Gradients of the normalised L_rec (see :func:`cfe_fast.reference.reconstruction_gradient`)."""
    dtype = _working_dtype(np.asarray(R))
    _, gX, gYt = reconstruction_loss_grad_t(
        np.asarray(X, dtype=dtype), _instance_major(Y, dtype), _instance_major(R, dtype), _instance_major(C, dtype), lam
    )
    return gX, gYt.T


def fold_in(X, R_new, C_new, lam):
    """Inductive fold-in: the exact instance half-step with X fixed."""
    return update_instance_factors(X, R_new, C_new, lam)


def reconstruction_loss_grad_t(X, Yt, Rt, Ct, lam):
    """Normalised L_rec and its gradients (dX (d, m), dYt (n, d)) on instance-major data, float64."""
    n, m = Rt.shape
    gYt = np.empty((n, X.shape[0]))
    with _kernel_threads(4 * n * m * X.shape[0]):
        sse, gX = _weighted_residual_grads(np.ascontiguousarray(X), np.ascontiguousarray(Yt), Rt, Ct, _REDUCE_CHUNK, gYt)
    X64 = np.asarray(X, dtype=np.float64)
    scale = 1.0 / (m * n)
    loss = _normalised_loss(sse, X, Yt, lam)
    return loss, (gX + 2 * lam * X64) * scale, (gYt + 2 * lam * np.asarray(Yt, dtype=np.float64)) * scale


def weighted_squared_residual_t(X, Yt, Rt, Ct):
    """``sum_{u,i} c_ui (r_ui - x_u^T y_i)^2`` over a block of instances (float64)."""
    X = np.ascontiguousarray(X, dtype=Rt.dtype)
    with _kernel_threads(2 * Rt.shape[0] * Rt.shape[1] * X.shape[0]):
        return _weighted_squared_residual(X, np.ascontiguousarray(Yt, dtype=Rt.dtype), Rt, Ct, _REDUCE_CHUNK)


def _normalised_loss(sse, X, Yt, lam):
    """L_rec = (sum c (r - r_hat)^2 + lam (||X||^2 + ||Y||^2)) / (m n) from the weighted residual ``sse``."""
    return (sse + lam * (squared_norm(X) + squared_norm(Yt))) / (X.shape[1] * Yt.shape[0])


def reconstruction_loss_t(X, Yt, Rt, Ct, lam):
    """Normalised reconstruction term on instance-major data."""
    return _normalised_loss(weighted_squared_residual_t(X, Yt, Rt, Ct), X, Yt, lam)


def reconstruction_loss(X, Y, R, C, lam):
    """Normalised reconstruction term (see :func:`cfe_fast.reference.reconstruction_loss`)."""
    dtype = _working_dtype(np.asarray(R))
    return reconstruction_loss_t(X, _instance_major(Y, dtype), _instance_major(R, dtype), _instance_major(C, dtype), lam)


def aggregator_sums_t(v, b, YtL, y_labeled, omega, focal_gamma=0.0, focal_variant="exact", hessian=False):
    """Unnormalised sums of the fused aggregator kernel over labeled factors YtL (n_L, d).

    With ``z_i = v^T y_i + b`` (v = X w) returns the weighted loss sum, the
    gradient sum g (d + 1,) over ``[y_i; 1]`` and, if asked, the Hessian sum
    H (d + 1, d + 1) (else (0, 0)). Sums over disjoint blocks add up.
    """
    with _kernel_threads(YtL.shape[0] * (YtL.shape[1] + 2) ** (2 if hessian else 1) * 4):
        return _aggregator_partials(
            np.asarray(v, dtype=np.float64), float(b), np.ascontiguousarray(YtL),
            np.asarray(y_labeled, dtype=np.float64), np.asarray(omega, dtype=np.float64),
            float(focal_gamma), focal_variant == "exact", bool(hessian), _REDUCE_CHUNK,
        )


def aggregator_terms_from_sums(X, sums, total, hessian=False):
    """AggregatorTerms (normalised by ``total = sum omega``) from :func:`aggregator_sums_t` sums."""
    from .reference import AggregatorTerms

    loss, g, H = sums
    X = np.asarray(X, dtype=np.float64)
    full_hessian = None
    if hessian:
        lift = np.zeros((X.shape[0] + 1, X.shape[1] + 1))  # [y; 1] -> [r_hat; 1]
        lift[:-1, :-1] = X
        lift[-1, -1] = 1.0
        full_hessian = lift.T @ H @ lift / total
    return AggregatorTerms(loss / total, X.T @ g[:-1] / total, g[-1] / total, full_hessian)


def aggregator_terms_t(X, YtL, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact", hessian=False):
    """Fused aggregator loss/gradient/Hessian on instance-major labeled factors (n_L, d)."""
    v = np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64)
    sums = aggregator_sums_t(v, b, YtL, y_labeled, omega, focal_gamma, focal_variant, hessian)
    return aggregator_terms_from_sums(X, sums, float(np.sum(omega)), hessian)


def aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact", hessian=False):
    """Fused aggregator kernel (see :func:`cfe_fast.reference.aggregator_terms`)."""
    return aggregator_terms_t(X, np.asarray(Y_labeled).T, y_labeled, omega, w, b, focal_gamma, focal_variant, hessian)
