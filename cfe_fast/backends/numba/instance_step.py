"""Instance half-step: one ridge system per instance, dual, primal or CG.

``"dual"`` solves the m x m form ``y = X D (lam I + D X^T X D)^-1 D r`` with
``D = diag(sqrt(c))`` (push-through identity); ``"primal"`` the d x d
systems, whose packed Grams of a chunk are one BLAS GEMM
``G[:, chunk] = P_X @ C[chunk].T`` with ``P_X[t(a, b), u] = x_u[a] x_u[b]``;
``"cg"`` a few warm-started, Jacobi-preconditioned conjugate-gradient steps
per system without forming it (approximate). The systems of a chunk are
factorised together by the batched Cholesky of :mod:`.linalg`.
"""

import numpy as np
from numba import prange

from ... import config
from ..._float64 import working_dtype
from .common import as_float64, assign, jit, kernel_threads, run_tasks, tri
from .confidence import chunk_confidence, kernel_confidence
from .linalg import (
    add_ridge,
    cg_start,
    cg_step,
    packed_cholesky_solve,
    packed_solve,
    raise_if_failed,
    scaled_product,
    systems_per_chunk,
)
from .losses import squared_residual, weighted_squared_residual_t


def choose_solver(m, d, lam=1.0):
    """The exact instance-step form that ``solver="auto"`` takes for m classifiers, latent dim d.

    ``"dual"`` (m x m systems) when m <= ``config.DUAL_MAX_RATIO`` d and
    lam > 0, else ``"primal"`` (d x d systems from a batched-GEMM Gram). With
    lam = 0 only m >= d is solvable, and the dual system D X^T X D then has
    rank d: singular for m > d, so the primal form is taken. Per instance the
    dual factorises an m x m system (m^3 / 3 flops, all in the batched
    Cholesky); the primal builds the d x d Gram with a GEMM (m d (d + 1)
    flops, about three times faster per flop) and factorises it (d^3 / 3),
    so they break even near m = 1.3 d; the measured crossover is in
    ``benchmarks/results/solver_rule_cpu2.md``. The classifier step always
    solves m d x d systems (n is the large dimension).
    """
    return "dual" if m <= config.DUAL_MAX_RATIO * d and lam > 0 else "primal"


def resolve_solver(solver, m, d, lam=1.0):
    """The concrete form ("dual", "primal" or "cg") of a ``solver`` argument."""
    return choose_solver(m, d, lam) if solver == "auto" else solver


@jit(nogil=True)
def _instance_primal(X, PX, Rt, conf, lam, chunk, Yt, failed, v, Zt, sse, first, stop):
    """Primal d x d systems of chunks first <= c < stop (the tasks of :func:`~.common.run_tasks`);
    if v.size, also Zt[i] = A_i^-1 v (same factors); if sse.size, sse[c] = sum c (r - r_hat)^2
    over chunk c at the new factors."""
    n = Rt.shape[0]
    d = X.shape[0]
    for c in range(first, stop):
        s = c * chunk
        e = min(n, s + chunk)
        Cc = chunk_confidence(conf, Rt, s, e)
        G = as_float64(np.dot(PX, Cc.T))
        B = as_float64(np.dot(X, (Cc * Rt[s:e]).T))
        add_ridge(G, d, lam)
        packed_cholesky_solve(G, B, failed[s:e])
        assign(Yt[s:e], B.T)
        if v.size:
            V = np.empty((d, e - s))
            for a in range(d):
                V[a] = v[a]
            packed_solve(G, V)
            assign(Zt[s:e], V.T)
        if sse.size:  # while the chunk of R and C is in cache
            sse[c] = squared_residual(np.dot(Yt[s:e], X), Rt[s:e], Cc)


@jit(nogil=True)
def _instance_dual(X, XtX, Rt, conf, lam, chunk, Yt, failed, w, Zt, sse, first, stop):
    """Dual m x m systems (see :func:`choose_solver`) of chunks first <= c < stop (the tasks of
    :func:`~.common.run_tasks`); if w.size, also Zt[i] = A_i^-1 X w; if sse.size,
    sse[c] = sum c (r - r_hat)^2 over chunk c at the new factors.

    A_i^-1 X w = (X w - X D M^-1 D X^T X w) / lam  (Woodbury), M = lam I + D X^T X D.
    The dual solution z_i = M^-1 D r_i gives the weighted residual for free:
    D (r_i - X^T y_i) = D r_i - (M - lam I) z_i = lam z_i.
    """
    n, m = Rt.shape
    if w.size:
        Xw = np.dot(X, w)
        XtXw = np.dot(XtX, w)
    for c in range(first, stop):
        s = c * chunk
        e = min(n, s + chunk)
        # (m, nc) C-contiguous: a transposed view stays F-ordered through sqrt and
        # products, and the loops over systems on its strided rows do not vectorise
        S = np.sqrt(as_float64(np.ascontiguousarray(chunk_confidence(conf, Rt, s, e).T)))  # D per instance
        M = np.empty((tri(m), e - s))
        for u in range(m):
            for v in range(u + 1):
                scaled_product(M[tri(u) + v], S[u], XtX[u, v], S[v])
        Z = S * as_float64(np.ascontiguousarray(Rt[s:e].T))
        add_ridge(M, m, lam)
        packed_cholesky_solve(M, Z, failed[s:e])
        # instance-major GEMM output: a transposed write was slower than the solve
        assign(Yt[s:e], np.dot((S * Z).T, X.T))
        if w.size:
            W = np.empty((m, e - s))
            for u in range(m):
                assign(W[u], S[u] * XtXw[u])
            packed_solve(M, W)
            Zc = np.dot((S * W).T, X.T)
            for i in range(e - s):
                for a in range(Zc.shape[1]):
                    Zt[s + i, a] = (Xw[a] - Zc[i, a]) / lam
        if sse.size:
            sse[c] = lam * lam * np.sum(Z * Z)


def solve_instances(X, Rt, Ct, lam, w=None, *, solver="auto", init=None, cg_steps=None, loss=False):
    """Instance half-step on instance-major data.

    Parameters
    ----------
    X : (d, m) classifier factors.
    Rt : (n, m) C-contiguous probabilities.
    Ct : (n, m) C-contiguous confidences, or a :class:`~cfe_fast.core.confidence.ConfidenceRule`
        (each chunk's block computed from Rt, :mod:`.confidence`).
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
    cg_steps : int, optional
        Default ``config.CG_STEPS``.
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
    dtype = working_dtype(Rt)
    d, m = X.shape
    n = Rt.shape[0]
    want_z = w is not None
    solver = resolve_solver(solver, m, d, lam)
    cg_steps = config.CG_STEPS if cg_steps is None else cg_steps
    if want_z and solver == "cg":
        raise ValueError("w (the second right-hand side) needs an exact solver, not 'cg'")
    if want_z and solver == "dual" and lam == 0:
        raise ValueError("w (the second right-hand side) with the dual form needs lam > 0; use solver='primal'")
    Yt = np.empty((n, d), dtype=dtype)
    failed = np.zeros(n, dtype=np.bool_)
    Zt = np.empty((n, d) if want_z else (0, d))
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    conf = kernel_confidence(Ct, dtype)
    with kernel_threads(n * (m * d * d + d**3 / 3)):
        if solver == "cg":
            Y0t = np.zeros((n, d), dtype=dtype) if init is None else np.ascontiguousarray(init, dtype=dtype)
            _instance_cg(X64, Rt, conf, float(lam), systems_per_chunk(d), int(cg_steps), Y0t, Yt)
            sse = np.array([weighted_squared_residual_t(X, Yt, Rt, Ct)] if loss else [])
        elif solver == "dual":
            chunk = systems_per_chunk(m)
            sse = np.empty(-(-n // chunk) if loss else 0)
            w64 = np.asarray(w if want_z else np.empty(0), dtype=np.float64)
            run_tasks(_instance_dual, -(-n // chunk), X64, X64.T @ X64, Rt, conf, float(lam), chunk, Yt, failed, w64,
                      Zt, sse)
        else:
            chunk = systems_per_chunk(d)
            sse = np.empty(-(-n // chunk) if loss else 0)
            X = np.ascontiguousarray(X, dtype=dtype)
            rows, cols = np.tril_indices(d)
            PX = np.ascontiguousarray(X[rows] * X[cols])
            v = X64 @ np.asarray(w, dtype=np.float64) if want_z else np.empty(0)
            run_tasks(_instance_primal, -(-n // chunk), X, PX, Rt, conf, float(lam), chunk, Yt, failed, v, Zt, sse)
    raise_if_failed(failed, "instance")
    outputs = [Yt] + ([Zt] if want_z else []) + ([float(sse.sum())] if loss else [])
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


@jit(parallel=True)
def _instance_cg(X, Rt, conf, lam, chunk, steps, Y0t, Yt):
    """Warm-started Jacobi-preconditioned CG on the primal systems, without forming them.

    A_i p = X (c_i * (X^T p)) + lam p costs 4 d m flops (two small GEMMs per chunk).
    """
    n = Rt.shape[0]
    X2 = X * X
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        Cc = as_float64(np.ascontiguousarray(chunk_confidence(conf, Rt, s, e).T))  # (m, nc)
        Y = as_float64(np.ascontiguousarray(Y0t[s:e].T))  # (d, nc)
        diag = np.maximum(np.dot(X2, Cc) + lam, 1e-300)
        R = np.dot(X, Cc * Rt[s:e].T) - np.dot(X, Cc * np.dot(X.T, Y)) - lam * Y
        P, rz = cg_start(R, diag)
        for _ in range(steps):
            cg_step(np.dot(X, Cc * np.dot(X.T, P)) + lam * P, P, R, Y, diag, rz)
        assign(Yt[s:e], Y.T)
