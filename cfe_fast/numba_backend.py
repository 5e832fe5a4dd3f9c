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
* When m < d the instance step uses the dual m x m form (push-through identity)
  ``y = X D (lam I + D X^T X D)^-1 D r`` with ``D = diag(sqrt(c))``.
* Reductions over instances (classifier Grams, losses, gradients) sum float64
  partials of fixed-size chunks in a fixed order, so results do not depend on
  the number of threads.
"""

import numpy as np
from numba import njit, prange

from ._errors import PIVOT_RTOL, SingularSystemError
from ._threads import single_threaded_blas

#: bytes of packed float64 systems factorised together (about the L2 cache;
#: measured at m=100, d=64: 256 KiB 2.5 s, 1 MiB 1.06 s, 2 MiB 2.0 s per 1e5 instances)
_SYSTEMS_BYTES = 1024 * 1024
#: instances per partial sum of a reduction over instances
_REDUCE_CHUNK = 1024


# ----------------------------------------------------------------- helpers
@njit(cache=True, inline="always")
def _tri(i):
    """Offset of row i in a packed lower triangle (row-major)."""
    return i * (i + 1) // 2


@njit(cache=True)
def _add_ridge(G, k, lam):
    for j in range(k):
        G[_tri(j) + j, :] += lam


@njit(cache=True)
def _packed_cholesky(G, failed):
    """Factorise nb SPD systems at once, in place: G = L L^T per column.

    G : (k (k + 1) / 2, nb) float64, packed lower triangles, one system per
        column (the innermost index, so every loop below is SIMD across systems).
    failed : (nb,) bool, set where a pivot L_jj**2 <= PIVOT_RTOL * A_jj.
    """
    nb = G.shape[1]
    k = int((np.sqrt(8 * G.shape[0] + 1) - 1) / 2 + 0.5)
    inv = np.empty(nb)
    for j in range(k):
        rj = _tri(j)
        for b in range(nb):
            inv[b] = G[rj + j, b]  # A_jj, kept for the pivot test
        for p in range(j):
            for b in range(nb):
                G[rj + j, b] -= G[rj + p, b] * G[rj + p, b]
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
            for p in range(j):
                for b in range(nb):
                    G[ri + j, b] -= G[ri + p, b] * G[rj + p, b]
            for b in range(nb):
                G[ri + j, b] *= inv[b]


@njit(cache=True)
def _packed_solve(L, B):
    """Solve L L^T x = B in place for nb factorised systems; B is (k, nb)."""
    k, nb = B.shape
    for i in range(k):  # forward substitution L z = B
        ri = _tri(i)
        for p in range(i):
            for b in range(nb):
                B[i, b] -= L[ri + p, b] * B[p, b]
        for b in range(nb):
            B[i, b] /= L[ri + i, b]
    for i in range(k - 1, -1, -1):  # back substitution L^T x = z
        for p in range(i + 1, k):
            rp = _tri(p)
            for b in range(nb):
                B[i, b] -= L[rp + i, b] * B[p, b]
        for b in range(nb):
            B[i, b] /= L[_tri(i) + i, b]


@njit(cache=True)
def _packed_cholesky_solve(G, B, failed):
    """Factorise the packed systems G and solve them for B, both in place."""
    _packed_cholesky(G, failed)
    _packed_solve(G, B)


@njit(cache=True)
def _packed_outer(F):
    """(k, nb) columns f -> (k (k + 1) / 2, nb) packed f f^T per column."""
    k, nb = F.shape
    P = np.empty((_tri(k), nb), dtype=F.dtype)
    for a in range(k):
        fa = F[a]
        for c in range(a + 1):
            fc = F[c]
            row = P[_tri(a) + c]
            for b in range(nb):
                row[b] = fa[b] * fc[b]
    return P


# -------------------------------------------------------- instance step
@njit(cache=True, parallel=True)
def _instance_primal(X, PX, Rt, Ct, lam, chunk, Yt, failed, v, Zt):
    """Primal d x d systems; if v.size, also Zt[i] = A_i^-1 v (same factors)."""
    n = Rt.shape[0]
    d = X.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        Cc = Ct[s:e]
        G = np.dot(PX, Cc.T).astype(np.float64)
        B = np.dot(X, (Cc * Rt[s:e]).T).astype(np.float64)
        _add_ridge(G, d, lam)
        _packed_cholesky_solve(G, B, failed[s:e])
        Yt[s:e] = B.T
        if v.size:
            V = np.empty((d, e - s))
            for a in range(d):
                V[a] = v[a]
            _packed_solve(G, V)
            Zt[s:e] = V.T


@njit(cache=True, parallel=True)
def _instance_dual(X, XtX, Rt, Ct, lam, chunk, Yt, failed, w, Zt):
    """Dual m x m systems (m < d); if w.size, also Zt[i] = A_i^-1 X w.

    A_i^-1 X w = (X w - X D M^-1 D X^T X w) / lam  (Woodbury), M = lam I + D X^T X D.
    """
    n, m = Rt.shape
    if w.size:
        Xw = np.dot(X, w)
        XtXw = np.dot(XtX, w)
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        S = np.sqrt(Ct[s:e].T.astype(np.float64))  # (m, nc): D per instance
        M = np.empty((_tri(m), e - s))
        for u in range(m):
            for v in range(u + 1):
                M[_tri(u) + v] = S[u] * XtX[u, v] * S[v]
        Z = S * Rt[s:e].T
        _add_ridge(M, m, lam)
        _packed_cholesky_solve(M, Z, failed[s:e])
        Yt[s:e] = np.dot(X, S * Z).T
        if w.size:
            W = np.empty((m, e - s))
            for u in range(m):
                W[u] = S[u] * XtXw[u]
            _packed_solve(M, W)
            Zc = np.dot(X, S * W)
            for i in range(e - s):
                for a in range(Zc.shape[0]):
                    Zt[s + i, a] = (Xw[a] - Zc[a, i]) / lam


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


def solve_instances(X, Rt, Ct, lam, w=None):
    """Instance half-step on instance-major data.

    X (d, m); Rt, Ct (n, m) C-contiguous. Returns Yt (n, d), C-contiguous.
    With ``w`` (m,) given, also returns Zt (n, d) float64 with
    Zt[i] = (X C_i X^T + lam I)^-1 X w, from the same factorisations (the
    exact trainer's rank-one update needs it; requires lam > 0 when m < d).
    """
    dtype = _working_dtype(Rt)
    d, m = X.shape
    n = Rt.shape[0]
    Yt = np.empty((n, d), dtype=dtype)
    failed = np.zeros(n, dtype=np.bool_)
    want_z = w is not None
    Zt = np.empty((n, d) if want_z else (0, d))
    with single_threaded_blas():
        if m < d:
            X64 = np.ascontiguousarray(X, dtype=np.float64)
            w64 = np.asarray(w if want_z else np.empty(0), dtype=np.float64)
            _instance_dual(X64, X64.T @ X64, Rt, Ct, float(lam), _chunk_for(m), Yt, failed, w64, Zt)
        else:
            X = np.ascontiguousarray(X, dtype=dtype)
            rows, cols = np.tril_indices(d)
            PX = np.ascontiguousarray(X[rows] * X[cols])
            v = np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64) if want_z else np.empty(0)
            _instance_primal(X, PX, Rt, Ct, float(lam), _chunk_for(d), Yt, failed, v, Zt)
    _raise_if_failed(failed, "instance")
    return (Yt, Zt) if want_z else Yt


# ------------------------------------------------------ classifier step
@njit(cache=True, parallel=True)
def _classifier_grams(Yt, Rt, Ct, chunk, group, G, B):
    """Accumulate G (T, m) = sum_i c_ui packed(y_i y_i^T) and B (d, m) in float64."""
    n, d = Yt.shape
    m = Rt.shape[1]
    n_chunks = (n + chunk - 1) // chunk
    part_G = np.empty((group, _tri(d), m))
    part_B = np.empty((group, d, m))
    for g0 in range(0, n_chunks, group):
        g1 = min(n_chunks, g0 + group)
        for c in prange(g0, g1):
            s = c * chunk
            e = min(n, s + chunk)
            Yc = np.ascontiguousarray(Yt[s:e].T)
            Cc = Ct[s:e]
            part_G[c - g0] = np.dot(_packed_outer(Yc), Cc)
            # the right-hand side cancels (sums of c y r of both signs): float64 always
            part_B[c - g0] = np.dot(Yc.astype(np.float64), (Cc * Rt[s:e]).astype(np.float64))
        for c in range(g0, g1):  # fixed order: independent of the thread count
            G += part_G[c - g0]
            B += part_B[c - g0]


def classifier_sums(Yt, Rt, Ct):
    """Partial sums of the classifier step over a block of instances.

    Returns G (d (d + 1) / 2, m), the packed lower triangles of
    ``sum_i c_ui y_i y_i^T``, and B (d, m) = ``sum_i c_ui r_ui y_i``, both
    float64 and without the ridge. Sums over disjoint blocks add up to the sums
    over their union (the Dask backend reduces them across chunks).
    """
    dtype = _working_dtype(Rt)
    d = Yt.shape[1]
    m = Rt.shape[1]
    Yt = np.ascontiguousarray(Yt, dtype=dtype)
    G = np.zeros((d * (d + 1) // 2, m))
    B = np.zeros((d, m))
    group = max(2, 2 * _num_threads())
    with single_threaded_blas():
        _classifier_grams(Yt, Rt, Ct, _REDUCE_CHUNK, group, G, B)
    return G, B


def solve_classifier_sums(G, B, lam, dtype=np.float64):
    """X (d, m) from the summed classifier-step sums of :func:`classifier_sums`.

    Adds the ridge and solves the m packed systems; G and B are overwritten.
    """
    _add_ridge(G, B.shape[0], float(lam))
    failed = np.zeros(B.shape[1], dtype=np.bool_)
    _packed_cholesky_solve(G, B, failed)
    _raise_if_failed(failed, "classifier")
    return B.astype(dtype)


def solve_classifiers(Yt, Rt, Ct, lam):
    """Classifier half-step on instance-major data. Returns X (d, m)."""
    G, B = classifier_sums(Yt, Rt, Ct)
    return solve_classifier_sums(G, B, lam, _working_dtype(Rt))


def _num_threads():
    from numba import get_num_threads

    return get_num_threads()


# ------------------------------------------------------------- losses
@njit(cache=True, parallel=True)
def _weighted_squared_residual(X, Yt, Rt, Ct, chunk):
    n, m = Rt.shape
    n_chunks = (n + chunk - 1) // chunk
    partial = np.zeros(n_chunks)
    for c in prange(n_chunks):
        s = c * chunk
        e = min(n, s + chunk)
        R_hat = np.dot(Yt[s:e], X)
        acc = 0.0
        for i in range(e - s):
            for u in range(m):
                r = np.float64(Rt[s + i, u]) - np.float64(R_hat[i, u])
                acc += np.float64(Ct[s + i, u]) * r * r
        partial[c] = acc
    total = 0.0
    for c in range(n_chunks):
        total += partial[c]
    return total


@njit(cache=True, parallel=True)
def _weighted_residual_grads(X, Yt, Rt, Ct, chunk, gYt):
    """Fused pass over chunks with E = c (r - r_hat): returns sum c (r - r_hat)^2 and
    gX = -2 sum_i y_i e_i^T (d, m), and writes gYt[i] = -2 X e_i (float64,
    fixed-order reduction)."""
    n, m = Rt.shape
    d = X.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    sse_p = np.zeros(n_chunks)
    gX_p = np.zeros((n_chunks, d, m))
    X64 = X.astype(np.float64)
    for c in prange(n_chunks):
        s = c * chunk
        e = min(n, s + chunk)
        Yc = Yt[s:e].astype(np.float64)
        residual = Rt[s:e].astype(np.float64) - np.dot(Yc, X64)
        E = Ct[s:e].astype(np.float64) * residual
        acc = 0.0
        for i in range(e - s):
            for u in range(m):
                acc += E[i, u] * residual[i, u]
        sse_p[c] = acc
        gX_p[c] = -2.0 * np.dot(Yc.T, E)
        gYt[s:e] = -2.0 * np.dot(E, X64.T)
    sse = 0.0
    gX = np.zeros((d, m))
    for c in range(n_chunks):
        sse += sse_p[c]
        gX += gX_p[c]
    return sse, gX


def squared_norm(A):
    """sum(A**2) accumulated in float64."""
    a = np.asarray(A, dtype=np.float64).ravel()
    return float(a @ a)


@njit(cache=True, inline="always")
def _softplus(x):
    return max(x, 0.0) + np.log1p(np.exp(-abs(x)))


@njit(cache=True)
def _sample_terms(z, y, gamma, exact_focal):
    """Per-instance loss, dloss/dz and curvature (see reference.sample_loss_terms)."""
    sign = 2.0 * y - 1.0
    a = sign * z
    log_pt = -_softplus(-a)
    pt = np.exp(log_pt)
    q = np.exp(-_softplus(a))  # 1 - p_t
    p = 1.0 / (1.0 + np.exp(-z)) if z >= 0 else np.exp(z) / (1.0 + np.exp(z))
    bce_grad = p - y
    bce_curv = pt * q
    if gamma == 0.0:
        return -log_pt, bce_grad, bce_curv
    qg = q**gamma
    loss = -qg * log_pt
    if not exact_focal:
        return loss, qg * bce_grad, qg * bce_curv
    grad = sign * (gamma * qg * pt * log_pt - qg * q)
    curv = gamma * qg * q * pt * (log_pt + 1.0) - gamma * gamma * qg * pt * pt * log_pt + (gamma + 1.0) * qg * q * pt
    return loss, grad, curv


@njit(cache=True, parallel=True)
def _aggregator_partials(v, b, YtL, yL, omega, gamma, exact_focal, want_hessian, chunk):
    """Fused pass over labeled instances: z_i = v^T y_i + b, never R_hat.

    Returns the weighted loss sum, g = sum e_i [y_i; 1] and, if asked,
    H = sum h_i [y_i; 1][y_i; 1]^T (all float64, fixed-order reduction).
    """
    n, d = YtL.shape
    n_chunks = (n + chunk - 1) // chunk
    k = d + 1 if want_hessian else 0
    loss_p = np.zeros(n_chunks)
    grad_p = np.zeros((n_chunks, d + 1))
    hess_p = np.zeros((n_chunks, k, k))
    for c in prange(n_chunks):
        yt = np.empty(d + 1)
        yt[d] = 1.0
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            z = b
            for a in range(d):
                yt[a] = YtL[i, a]
                z += v[a] * yt[a]
            loss, grad, curv = _sample_terms(z, yL[i], gamma, exact_focal)
            loss_p[c] += omega[i] * loss
            for a in range(d + 1):
                grad_p[c, a] += omega[i] * grad * yt[a]
            if want_hessian:
                h = omega[i] * curv
                for a in range(k):
                    for a2 in range(a + 1):
                        hess_p[c, a, a2] += h * yt[a] * yt[a2]
    loss_sum = 0.0
    g = np.zeros(d + 1)
    H = np.zeros((k, k))
    for c in range(n_chunks):
        loss_sum += loss_p[c]
        g += grad_p[c]
        H += hess_p[c]
    for a in range(k):
        for a2 in range(a):
            H[a2, a] = H[a, a2]
    return loss_sum, g, H


# ------------------------------------------------------------ public kernels
def _instance_major(A, dtype):
    return np.ascontiguousarray(np.asarray(A).T, dtype=dtype)


def update_instance_factors(X, R, C, lam):
    """Instance half-step (see :func:`cfe_fast.reference.update_instance_factors`)."""
    dtype = _working_dtype(np.asarray(R))
    return solve_instances(X, _instance_major(R, dtype), _instance_major(C, dtype), lam).T


def update_classifier_factors(Y, R, C, lam):
    """Classifier half-step (see :func:`cfe_fast.reference.update_classifier_factors`)."""
    dtype = _working_dtype(np.asarray(R))
    return solve_classifiers(_instance_major(Y, dtype), _instance_major(R, dtype), _instance_major(C, dtype), lam)


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
    """Inductive fold-in: the instance half-step with X fixed."""
    return update_instance_factors(X, R_new, C_new, lam)


def reconstruction_loss_grad_t(X, Yt, Rt, Ct, lam):
    """Normalised L_rec and its gradients (dX (d, m), dYt (n, d)) on instance-major data, float64."""
    n, m = Rt.shape
    gYt = np.empty((n, X.shape[0]))
    with single_threaded_blas():
        sse, gX = _weighted_residual_grads(np.ascontiguousarray(X), np.ascontiguousarray(Yt), Rt, Ct, _REDUCE_CHUNK, gYt)
    X64 = np.asarray(X, dtype=np.float64)
    scale = 1.0 / (m * n)
    loss = (sse + lam * (squared_norm(X) + squared_norm(Yt))) * scale
    return loss, (gX + 2 * lam * X64) * scale, (gYt + 2 * lam * np.asarray(Yt, dtype=np.float64)) * scale


def weighted_squared_residual_t(X, Yt, Rt, Ct):
    """``sum_{u,i} c_ui (r_ui - x_u^T y_i)^2`` over a block of instances (float64)."""
    X = np.ascontiguousarray(X, dtype=Rt.dtype)
    with single_threaded_blas():
        return _weighted_squared_residual(X, np.ascontiguousarray(Yt, dtype=Rt.dtype), Rt, Ct, _REDUCE_CHUNK)


def reconstruction_loss_t(X, Yt, Rt, Ct, lam):
    """Normalised reconstruction term on instance-major data."""
    n, m = Rt.shape
    sse = weighted_squared_residual_t(X, Yt, Rt, Ct)
    return (sse + lam * (squared_norm(X) + squared_norm(Yt))) / (m * n)


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
