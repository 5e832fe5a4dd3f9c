"""Plain NumPy reference implementation of every cfe_fast kernel: the oracle.

Written to be read, not to be fast: one loop iteration per ridge system, the
reconstruction R_hat = X.T @ Y materialised where that is the obvious way to
write the formula. Every fast backend (Numba, CuPy, Dask) and the shared math
of :mod:`cfe_fast.core` are tested against the functions here, so this module
imports nothing of cfe_fast but its exceptions. Layout follows
docs/method.md: R, C are (m, n); X is (d, m); Y is (d, n). Everything is
computed in float64.

Missing entries: R may hold NaN where an entry is not observed. Every
function here then reads C as 0 there, whatever C holds, and the
reconstruction term is normalised by the number of observed entries |O|
instead of m n (see :func:`observed`).
"""

from typing import NamedTuple

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import expit

from .errors import PIVOT_RTOL, SingularSystemError

CONFIDENCE_STRATEGIES = ("uniform", "certainty", "label_aware", "calibration")
FOCAL_VARIANTS = ("exact", "weighted_bce")


# ------------------------------------------------------------- missing entries
def observed(R, C):
    """(R, C, |O|) with the unobserved entries (NaN in R) read as r = 0 and c = 0.

    |O| is the number of observed entries; any value of R and C at an
    unobserved entry is ignored. C None means confidence 1 at every entry.
    """
    R = np.asarray(R, dtype=np.float64)
    C = np.ones_like(R) if C is None else np.asarray(C, dtype=np.float64)
    is_observed = ~np.isnan(R)
    return np.where(is_observed, R, 0.0), np.where(is_observed, C, 0.0), int(is_observed.sum())


# --------------------------------------------------------------------------- ALS
def cholesky_solve(A, b, what="system"):
    """Solve the symmetric positive definite system ``A x = b`` by Cholesky.

    Raises :class:`SingularSystemError` when A is not positive definite or a
    pivot falls below ``PIVOT_RTOL`` times its diagonal entry.
    """
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        L = None
    if L is None or np.any(np.diag(L) ** 2 <= PIVOT_RTOL * np.diag(A)):
        raise SingularSystemError(f"the ridge system of {what} is singular; increase lam")
    z = solve_triangular(L, b, lower=True)
    return solve_triangular(L.T, z, lower=False)


def update_instance_factors(X, R, C, lam, *, with_loss=False):
    """Instance half-step: y_i = (X C_i X^T + lam I)^-1 X C_i r_i for every i.

    Parameters
    ----------
    X : ndarray (d, m)  classifier factors.
    R, C : ndarray (m, n)  probabilities and confidences.
    lam : float  ridge penalty.
    with_loss : bool  also return :func:`reconstruction_loss` at (X, Y).

    Returns
    -------
    Y : ndarray (d, n); and the loss if ``with_loss``.
    """
    X = np.asarray(X, dtype=np.float64)
    R_given = R
    R, C, _ = observed(R, C)
    d, n = X.shape[0], R.shape[1]
    Y = np.empty((d, n))
    for i in range(n):
        A = (X * C[:, i]) @ X.T + lam * np.eye(d)
        rhs = X @ (C[:, i] * R[:, i])
        Y[:, i] = cholesky_solve(A, rhs, f"instance {i}")
    return (Y, reconstruction_loss(X, Y, R_given, C, lam)) if with_loss else Y


def update_classifier_factors(Y, R, C, lam):
    """Classifier half-step: x_u = (Y C_u Y^T + lam I)^-1 Y C_u r_u for every u.

    Returns X of shape (d, m).
    """
    Y = np.asarray(Y, dtype=np.float64)
    R, C, _ = observed(R, C)
    d, m = Y.shape[0], R.shape[0]
    X = np.empty((d, m))
    for u in range(m):
        A = (Y * C[u]) @ Y.T + lam * np.eye(d)
        rhs = Y @ (C[u] * R[u])
        X[:, u] = cholesky_solve(A, rhs, f"classifier {u}")
    return X


def classifier_gram_terms(Y, R, C):
    """Per-classifier Grams G[u] = Y C_u Y^T (m, d, d) and right-hand sides B[u] = Y C_u r_u (m, d).

    The classifier half-step before the ridge and the solve.
    """
    Y = np.asarray(Y, dtype=np.float64)
    R, C, _ = observed(R, C)
    G = np.stack([(Y * C[u]) @ Y.T for u in range(R.shape[0])])
    B = np.stack([Y @ (C[u] * R[u]) for u in range(R.shape[0])])
    return G, B


def instance_solves(X, R, C, lam, w, *, with_loss=False):
    """The instance half-step Y and, from the same systems, Z[:, i] = A_i^-1 X w.

    A_i = X C_i X^T + lam I. Returns (Y, Z), both (d, n); with ``with_loss``
    also :func:`reconstruction_loss` at (X, Y).
    """
    R_given = R
    X = np.asarray(X, dtype=np.float64)
    R, C, _ = observed(R, C)
    d, n = X.shape[0], R.shape[1]
    v = X @ np.asarray(w, dtype=np.float64)
    Y, Z = np.empty((d, n)), np.empty((d, n))
    for i in range(n):
        A = (X * C[:, i]) @ X.T + lam * np.eye(d)
        Y[:, i] = cholesky_solve(A, X @ (C[:, i] * R[:, i]), f"instance {i}")
        Z[:, i] = cholesky_solve(A, v, f"instance {i}")
    return (Y, Z, reconstruction_loss(X, Y, R_given, C, lam)) if with_loss else (Y, Z)


def fold_in(X, R_new, C_new, lam):
    """Inductive fold-in of new instances: the instance half-step with X fixed."""
    return update_instance_factors(X, R_new, C_new, lam)


def reconstruction_loss(X, Y, R, C, lam):
    """Normalised reconstruction term of docs/method.md:

    [sum c_ui (r_ui - x_u^T y_i)^2 + lam (||X||^2 + ||Y||^2)] / |O|,

    the sum over the observed entries, |O| their number (m n when R has no NaN).
    """
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    R, C, n_observed = observed(R, C)
    residual = R - X.T @ Y
    return float((np.sum(C * residual**2) + lam * (np.sum(X**2) + np.sum(Y**2))) / n_observed)


def reconstruction_gradient(X, Y, R, C, lam):
    """Gradients (dL_rec/dX, dL_rec/dY) of the normalised reconstruction term."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    R, C, n_observed = observed(R, C)
    E = C * (R - X.T @ Y)
    return (-2 * Y @ E.T + 2 * lam * X) / n_observed, (-2 * X @ E + 2 * lam * Y) / n_observed


# -------------------------------------------------------------------- confidence
def certainty_confidence(R):
    """c = |r - 0.5|: confident predictions weigh more; 0 where r is not observed (NaN)."""
    R = np.asarray(R, dtype=np.float64)
    return np.where(np.isnan(R), 0.0, np.abs(R - 0.5))


def uniform_confidence(R):
    """c = 1 at every observed entry, 0 where r is not observed (NaN)."""
    return np.where(np.isnan(np.asarray(R, dtype=np.float64)), 0.0, 1.0)


def label_aware_confidence(R, labels, alpha=1.0):
    """|r - 0.5| (1 + alpha s) on labeled columns (the original implementation's default).

    s = r for positives and 1 - r for negatives (rewards being right);
    unlabeled columns keep |r - 0.5|; 0 where r is not observed (NaN).
    """
    R = np.asarray(R, dtype=np.float64)
    C = certainty_confidence(R)
    labeled = ~np.isnan(labels)
    y = labels[labeled]
    s = np.where(y == 1, R[:, labeled], 1.0 - R[:, labeled])
    C[:, labeled] *= np.where(np.isnan(s), 1.0, 1.0 + alpha * s)
    return C


def calibration_confidence(R, labels, floor=0.05):
    """Per classifier: 1 - Brier score over its observed labeled entries, floored at ``floor``; 0 where r is
    not observed (NaN). A classifier with no observed labeled entry is an error."""
    R = np.asarray(R, dtype=np.float64)
    labeled = ~np.isnan(labels)
    if not labeled.any():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    brier = np.empty(R.shape[0])
    for u in range(R.shape[0]):
        scored = labeled & ~np.isnan(R[u])
        if not scored.any():
            raise ValueError(f"the 'calibration' confidence: classifier {u} has no observed entry on a labeled "
                             "instance")
        brier[u] = np.mean((R[u, scored] - labels[scored]) ** 2)
    quality = np.maximum(1.0 - brier, floor)
    return np.where(np.isnan(R), 0.0, quality[:, None])


def confidence(R, labels, strategy, alpha=1.0, floor=0.05):
    """Confidence matrix C (m, n) for a named strategy (see docs/method.md)."""
    if strategy == "uniform":
        return uniform_confidence(R)
    if strategy == "certainty":
        return certainty_confidence(R)
    if strategy == "label_aware":
        return label_aware_confidence(R, labels, alpha)
    if strategy == "calibration":
        return calibration_confidence(R, labels, floor)
    raise ValueError(f"unknown confidence strategy {strategy!r}; choose one of {CONFIDENCE_STRATEGIES}")


# -------------------------------------------------------------------- aggregator
def class_weights(y_labeled, balanced=True):
    """omega_i = n_L / (2 n_class(y_i)); all ones when off or a class is absent."""
    y = np.asarray(y_labeled, dtype=np.float64)
    n_pos = np.sum(y == 1)
    n_neg = y.size - n_pos
    if not balanced or n_pos == 0 or n_neg == 0:
        return np.ones(y.size)
    return np.where(y == 1, y.size / (2.0 * n_pos), y.size / (2.0 * n_neg))


def sample_loss_terms(z, y, focal_gamma=0.0, focal_variant="exact"):
    """Per-instance loss, dloss/dz and curvature at logits z (vectorised).

    BCE in log-sum-exp form; focal loss -(1 - p_t)^gamma log p_t with its true
    derivative ("exact") or the original implementation's variant that treats
    (1 - p_t)^gamma as a constant weight on the BCE gradient ("weighted_bce"). The curvature is
    d2loss/dz2 for BCE and exact focal, and the frozen-weight BCE curvature for
    "weighted_bce".
    """
    z = np.asarray(z, dtype=np.float64)
    sign = 2.0 * y - 1.0
    a = sign * z  # logit of p_t
    log_pt = -np.logaddexp(0.0, -a)
    pt = expit(a)
    q = expit(-a)  # 1 - p_t
    g = focal_gamma
    loss = -(q**g) * log_pt
    bce_grad = expit(z) - y
    bce_curv = pt * q
    if g == 0.0:
        return loss, bce_grad, bce_curv
    if focal_variant == "weighted_bce":
        return loss, q**g * bce_grad, q**g * bce_curv
    grad = sign * (g * q**g * pt * log_pt - q ** (g + 1))
    curv = g * q ** (g + 1) * pt * (log_pt + 1) - g**2 * q**g * pt**2 * log_pt + (g + 1) * q ** (g + 1) * pt
    return loss, grad, curv


class AggregatorTerms(NamedTuple):
    """Normalised supervised loss, its gradient and (optionally) its Hessian.

    ``hessian`` is (m + 1, m + 1) over (w, b), b last, or None;
    ``latent_hessian`` (d + 1, d + 1) over (X w, b), for ``hessian="latent"``.
    """

    loss: float
    grad_w: np.ndarray
    grad_b: float
    hessian: np.ndarray | None
    latent_hessian: np.ndarray | None = None


def aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact", hessian=False):
    """L_sup = sum omega_i loss(y_i, sigma(w^T r_hat_i + b)) / sum omega_i and derivatives.

    Parameters
    ----------
    X : (d, m) classifier factors.  Y_labeled : (d, n_L) factors of labeled instances.
    y_labeled : (n_L,) 0/1 labels.  omega : (n_L,) instance weights.
    w : (m,), b : float  aggregator.
    """
    X, Y_labeled = np.asarray(X, dtype=np.float64), np.asarray(Y_labeled, dtype=np.float64)
    R_hat = X.T @ Y_labeled  # (m, n_L): the reference may materialise it
    z = w @ R_hat + b
    loss, grad, curv = sample_loss_terms(z, y_labeled, focal_gamma, focal_variant)
    total = omega.sum()
    features = np.vstack([R_hat, np.ones(z.size)])  # (m + 1, n_L)
    full_grad = features @ (omega * grad) / total
    terms = AggregatorTerms(float(omega @ loss / total), full_grad[:-1], float(full_grad[-1]), None)
    if hessian == "latent":  # over (v, b), v = X w: the logits are v^T y_i + b
        latent = np.vstack([Y_labeled, np.ones(z.size)])
        return terms._replace(latent_hessian=(latent * (omega * curv)) @ latent.T / total)
    if hessian:
        return terms._replace(hessian=(features * (omega * curv)) @ features.T / total)
    return terms


def objective(X, Y, R, C, lam, labels, w, b, rho, balanced=True, focal_gamma=0.0, focal_variant="exact", l2=0.0,
              shrinkage=0.0):
    """The full normalised objective rho L_rec + (1 - rho) L_sup (docs/method.md).

    Returns (total, reconstruction, supervised); L_sup includes the penalty
    (l2/2)||w||^2 + (shrinkage/2) sum_u (w_u - mean(w))^2
    and is 0 when nothing is labeled.
    """
    rec = reconstruction_loss(X, Y, R, C, lam)
    labeled = ~np.isnan(labels)
    sup = 0.0
    if labeled.any():
        y = labels[labeled]
        terms = aggregator_terms(X, np.asarray(Y)[:, labeled], y, class_weights(y, balanced), w, b, focal_gamma, focal_variant)
        w = np.asarray(w, dtype=np.float64)
        sup = terms.loss + 0.5 * l2 * float(np.dot(w, w)) + 0.5 * shrinkage * float(np.sum((w - np.mean(w)) ** 2))
    return rho * rec + (1 - rho) * sup, rec, sup


# ------------------------------------------------------- exact-objective steps
def supervised_weights(omega, rho):
    """a_i = (1 - rho) omega_i / sum(omega): the weight of instance i in rho L_rec + (1 - rho) L_sup."""
    return (1.0 - rho) * omega / omega.sum()


def exact_instance_step(X, R, C, lam, Y0, w, b, labeled, y_labeled, a, s, focal_gamma=0.0):
    """Instance block of the exact trainer, one dense system per instance (docs/method.md).

    Labeled i solves [2s(X C_i X^T + lam I) + (a_i/4) v v^T] y = 2s X C_i r_i
    + (a_i/4) v v^T y_i0 - a_i g_i v, with v = X w and g_i = dloss/dz at y_i0;
    unlabeled instances take the ALS solution. s = rho / |O|.
    """
    X = np.asarray(X, dtype=np.float64)
    R, C, _ = observed(R, C)
    Y = update_instance_factors(X, R, C, lam)
    v = X @ w
    Y0_labeled = np.asarray(Y0, dtype=np.float64)[:, labeled]
    _, g, _ = sample_loss_terms(v @ Y0_labeled + b, y_labeled, focal_gamma)
    d = X.shape[0]
    for k, i in enumerate(np.flatnonzero(labeled)):
        A = 2 * s * ((X * C[:, i]) @ X.T + lam * np.eye(d)) + a[k] / 4 * np.outer(v, v)
        rhs = 2 * s * X @ (C[:, i] * R[:, i]) + a[k] / 4 * v * (v @ Y0_labeled[:, k]) - a[k] * g[k] * v
        Y[:, i] = cholesky_solve(A, rhs, f"instance {i}")
    return Y


def exact_classifier_step(Y, R, C, lam, X0, w, b, labeled, y_labeled, a, s, focal_gamma=0.0, grams=None):
    """Classifier block of the exact trainer: x_u one at a time (Gauss-Seidel), docs/method.md.

    z_i is linear in x_u with slope w_u y_i, so with S = (1/4) sum_i a_i y_i y_i^T
    x_u solves [2s(G_u + lam I) + w_u^2 S] x = 2s B_u - w_u q + w_u^2 S x_u0,
    q = sum_i a_i g_i y_i at the current logits, which are updated after each u.
    ``grams`` = (G, B) as from :func:`classifier_gram_terms` (computed here if None).
    """
    G, B = classifier_gram_terms(Y, R, C) if grams is None else grams
    Y_labeled = np.asarray(Y, dtype=np.float64)[:, labeled]
    X = np.array(X0, dtype=np.float64)
    d, m = X.shape
    z = (X @ w) @ Y_labeled + b
    S = 0.25 * (Y_labeled * a) @ Y_labeled.T
    for u in range(m):
        _, g, _ = sample_loss_terms(z, y_labeled, focal_gamma)
        q = Y_labeled @ (a * g)
        A = 2 * s * (G[u] + lam * np.eye(d)) + w[u] ** 2 * S
        rhs = 2 * s * B[u] - w[u] * q + w[u] ** 2 * S @ X[:, u]
        x_new = cholesky_solve(A, rhs, f"classifier {u}")
        z += w[u] * (x_new - X[:, u]) @ Y_labeled
        X[:, u] = x_new
    return X
