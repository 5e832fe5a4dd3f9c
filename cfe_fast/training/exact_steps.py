"""The block steps of the exact trainer: each minimises a quadratic majoriser of the whole objective.

docs/method.md, "Exact-objective training": with s = rho / (m n), a_i the
supervised weights, v = X w and the logistic curvature bound 1/4, the
instance block of a labeled instance is the ALS system plus a rank-one term,
and the classifier block is solved one classifier at a time (z_i is linear
in x_u with slope w_u y_i). The per-instance work over the labeled factors
runs in small compiled passes (one per classifier in the classifier block,
one in the instance block), on one thread: a parallel launch per pass costs
more than it saves on a loaded machine (benchmarks/results/trainer_speed_cpu2.md).
"""

import numpy as np
from scipy.linalg import solve_triangular

from ..backends.numba.common import jit
from ..backends.numba.losses import sample_terms
from ..errors import PIVOT_RTOL, singular_system_error


def instance_step(problem, X, Y0, w, b):
    """Instance block via Sherman-Morrison: Y (d, n) float64 on the host, and L_rec at (X, Y).

    The labeled systems are the ALS systems A_i plus kappa_i v v^T; the
    backend returns A_i^-1 b_i and A_i^-1 v from one factorisation each, and
    the rank-one correction is applied in O(d) per instance. Unlabeled
    instances take the ALS solution. L_rec comes without another pass over R
    and C: the backend's L_rec at the ALS solution plus, per labeled instance
    moved by delta from its ALS solution (the minimiser of its quadratic
    part of m n L_rec, whose Hessian is 2 A_i), delta^T A_i delta (at the float64 Y
    returned).
    """
    p = problem
    y_labeled, _, a = p.host_labels
    Y, Z_labeled, loss = p.instance_solves(X, w)
    Yt = _instance_major(p.to_host(Y))  # the backend's own result: corrected in place
    v = np.asarray(p.to_host(X), dtype=np.float64) @ w
    Y0t_labeled, Zt_labeled = (_instance_major(p.to_host(F)) for F in (p.labeled_factors(Y0), Z_labeled))
    increases = _rank_one_corrections(Yt, np.flatnonzero(p.to_host(p.labeled)), Y0t_labeled, Zt_labeled, v,
                                      float(b), y_labeled, a, p.s, float(p.settings.focal_gamma))
    m, n = p.shape
    return Yt.T, p._normalised(loss + float(np.sum(increases)) / (m * n))


def _instance_major(F):
    """Factors F (d, k) on the host as C-contiguous float64 (k, d) (no copy when F is the transposed view of such)."""
    return np.ascontiguousarray(np.asarray(F, dtype=np.float64).T)


@jit
def _rank_one_corrections(Yt, index, Y0t_labeled, Zt_labeled, v, b, y, a, s, gamma):
    """Row ``index[k]`` of Yt (the ALS solution u = A^-1 b of labeled instance k) becomes the
    solution of (A + kappa v v^T) y = b + shift v, kappa = a_k / (8 s), shift = kappa v^T y0 -
    a_k g_k / (2 s) at the previous y0: with z = A^-1 v, U = u + shift z and
    y = U - kappa z (v^T U) / (1 + kappa v^T z) (Sherman-Morrison). Returns, per labeled
    instance, (y - u)^T A (y - u) = t^2 v^T z with y - u = t z."""
    d = v.size
    increases = np.empty(index.size)
    for k in range(index.size):
        i = index[k]
        t0 = 0.0
        for c in range(d):
            t0 += v[c] * Y0t_labeled[k, c]
        _, g, _ = sample_terms(t0 + b, y[k], gamma, True)
        kappa = a[k] / (8 * s)
        shift = kappa * t0 - a[k] * g / (2 * s)
        vU = 0.0
        vZ = 0.0
        for c in range(d):
            Yt[i, c] += shift * Zt_labeled[k, c]  # U
            vU += v[c] * Yt[i, c]
            vZ += v[c] * Zt_labeled[k, c]
        for c in range(d):
            Yt[i, c] -= kappa * Zt_labeled[k, c] * vU / (1 + kappa * vZ)
        t = shift - kappa * vU / (1 + kappa * vZ)
        increases[k] = t * t * vZ
    return increases


def classifier_step(problem, X0, Y, w, b):
    """Classifier block, x_u one at a time (Gauss-Seidel): X (d, m) float64 on the host.

    With S = (1/4) sum_i a_i y_i y_i^T, x_u solves
    [2s(G_u + lam I) + w_u^2 S] x = 2s B_u - w_u q + w_u^2 S x_u0 with
    q = sum_i a_i g_i y_i at the current logits, which are updated after
    each u; the Grams G_u and right-hand sides B_u come from the backend.
    """
    p = problem
    y_labeled, _, a = p.host_labels
    G, B = (np.asarray(p.to_host(t)) for t in p.classifier_gram_terms(Y))
    Yt_labeled = _instance_major(p.to_host(p.labeled_factors(Y)))
    s, lam, gamma = p.s, p.lam, float(p.settings.focal_gamma)
    X = np.array(p.to_host(X0), dtype=np.float64)
    d, m = X.shape
    z = Yt_labeled @ (X @ w) + b
    S = 0.25 * (Yt_labeled.T * a) @ Yt_labeled
    step = np.zeros(d)
    for u in range(m):
        q = _shift_and_gradient_sum(z, step, Yt_labeled, y_labeled, a, gamma)
        A = 2 * s * (G[u] + lam * np.eye(d)) + w[u] ** 2 * S
        rhs = 2 * s * B[u] - w[u] * q + w[u] ** 2 * S @ X[:, u]
        x_new = _solve_spd(A, rhs, u)
        step = w[u] * (x_new - X[:, u])
        X[:, u] = x_new
    return X


@jit
def _shift_and_gradient_sum(z, step, Yt_labeled, y, a, gamma):
    """z_i += step^T y_i (the logits after the previous classifier's update), then
    q = sum_i a_i g_i y_i with g_i = dloss/dz at the new z_i: one pass over the labeled factors."""
    n, d = Yt_labeled.shape
    q = np.zeros(d)
    for i in range(n):
        t = 0.0
        for k in range(d):
            t += step[k] * Yt_labeled[i, k]
        z[i] += t
        _, g, _ = sample_terms(z[i], y[i], gamma, True)
        e = a[i] * g
        for k in range(d):
            q[k] += e * Yt_labeled[i, k]
    return q


def _solve_spd(A, rhs, u):
    """x of the SPD system A x = rhs of classifier u, by Cholesky; a tiny pivot is an error."""
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        L = None
    if L is None or np.any(np.diag(L) ** 2 <= PIVOT_RTOL * np.diag(A)):
        raise singular_system_error("classifier", u)
    return solve_triangular(L.T, solve_triangular(L, rhs, lower=True), lower=False)
