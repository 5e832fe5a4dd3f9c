"""The block steps of the exact trainer: each minimises a quadratic majoriser of the whole objective.

docs/method.md, "Exact-objective training": with s = rho / (m n), a_i the
supervised weights, v = X w and the logistic curvature bound 1/4, the
instance block of a labeled instance is the ALS system plus a rank-one term,
and the classifier block is solved one classifier at a time (z_i is linear
in x_u with slope w_u y_i).
"""

import numpy as np
from scipy.linalg import solve_triangular

from ..core.losses import sample_gradient
from ..errors import PIVOT_RTOL, singular_system_error


def instance_step(problem, X, Y0, w, b):
    """Instance block via Sherman-Morrison: Y (d, n) float64 on the host.

    The labeled systems are the ALS systems A_i plus kappa_i v v^T; the
    backend returns A_i^-1 b_i and A_i^-1 v from one factorisation each, and
    the rank-one correction is applied in O(d) per instance. Unlabeled
    instances take the ALS solution.
    """
    p = problem
    y_labeled, _, a = p.host_labels
    Y, Z = p.backend.instance_solves(X, p.R, p.C, p.lam, w)
    Y = np.asarray(p.to_host(Y), dtype=np.float64)  # the backend's own result: corrected in place
    v = np.asarray(p.to_host(X), dtype=np.float64) @ w
    Y0_labeled = np.asarray(p.to_host(p.labeled_factors(Y0)), dtype=np.float64)
    g = sample_gradient(v @ Y0_labeled + b, y_labeled, p.settings.focal_gamma)
    kappa = a / (8 * p.s)
    shift = kappa * (v @ Y0_labeled) - a * g / (2 * p.s)
    Z_labeled = np.asarray(p.to_host(p.labeled_factors(Z)), dtype=np.float64)
    U = p.labeled_factors(Y) + shift * Z_labeled
    Y.T[np.flatnonzero(p.to_host(p.labeled))] = (U - kappa * Z_labeled * (v @ U) / (1 + kappa * (v @ Z_labeled))).T
    return Y


def classifier_step(problem, X0, Y, w, b):
    """Classifier block, x_u one at a time (Gauss-Seidel): X (d, m) float64 on the host.

    With S = (1/4) sum_i a_i y_i y_i^T, x_u solves
    [2s(G_u + lam I) + w_u^2 S] x = 2s B_u - w_u q + w_u^2 S x_u0 with
    q = sum_i a_i g_i y_i at the current logits, which are updated after
    each u; the Grams G_u and right-hand sides B_u come from the backend.
    """
    p = problem
    y_labeled, _, a = p.host_labels
    G, B = (np.asarray(p.to_host(t)) for t in p.backend.classifier_gram_terms(Y, p.R, p.C))
    Y_labeled = np.asarray(p.to_host(p.labeled_factors(Y)), dtype=np.float64)
    s, lam = p.s, p.lam
    X = np.array(p.to_host(X0), dtype=np.float64)
    d, m = X.shape
    z = (X @ w) @ Y_labeled + b
    S = 0.25 * (Y_labeled * a) @ Y_labeled.T
    for u in range(m):
        g = sample_gradient(z, y_labeled, p.settings.focal_gamma)
        q = Y_labeled @ (a * g)
        A = 2 * s * (G[u] + lam * np.eye(d)) + w[u] ** 2 * S
        rhs = 2 * s * B[u] - w[u] * q + w[u] ** 2 * S @ X[:, u]
        x_new = _solve_spd(A, rhs, u)
        z += w[u] * (x_new - X[:, u]) @ Y_labeled
        X[:, u] = x_new
    return X


def _solve_spd(A, rhs, u):
    """x of the SPD system A x = rhs of classifier u, by Cholesky; a tiny pivot is an error."""
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        L = None
    if L is None or np.any(np.diag(L) ** 2 <= PIVOT_RTOL * np.diag(A)):
        raise singular_system_error("classifier", u)
    return solve_triangular(L.T, solve_triangular(L, rhs, lower=True), lower=False)
