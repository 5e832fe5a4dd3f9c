"""Loss terms shared by every backend (docs/method.md, "Objective").

Class weights, the per-instance loss terms of BCE and focal loss, the
aggregator's loss, gradient and Hessian assembled from a backend's sums
over the labeled instances, and the normalised reconstruction term.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

FOCAL_VARIANTS = ("exact", "weighted_bce")


def class_weights(y_labeled, balanced=True):
    """omega_i = n_L / (2 n_class(y_i)); all ones when off or a class is absent."""
    y = np.asarray(y_labeled, dtype=np.float64)
    n_pos = np.sum(y == 1)
    n_neg = y.size - n_pos
    if not balanced or n_pos == 0 or n_neg == 0:
        return np.ones(y.size)
    return np.where(y == 1, y.size / (2.0 * n_pos), y.size / (2.0 * n_neg))


def supervised_weights(omega, rho):
    """a_i = (1 - rho) omega_i / sum(omega): the weight of instance i in rho L_rec + (1 - rho) L_sup."""
    return (1.0 - rho) * omega / omega.sum()


def sample_loss_terms(z, y, focal_gamma=0.0, focal_variant="exact", xp=np):
    """Per-instance loss, dloss/dz and curvature at logits z (vectorised, module ``xp``).

    BCE, or focal loss -(1 - p_t)^gamma log p_t with its true derivative
    ("exact") or the variant of the original implementation that treats
    (1 - p_t)^gamma as a constant weight on the BCE gradient ("weighted_bce");
    the curvature is d2loss/dz2 for BCE and exact focal, and the frozen-weight
    BCE curvature for "weighted_bce". With a = (2y - 1) z, the logit of p_t,
    and e = exp(-|z|) (one exponential, never overflowing), p_t and 1 - p_t
    are 1 / (1 + e) and e / (1 + e) in the order the sign of a gives,
    -log p_t = max(-a, 0) + log1p(e), and p - y = -(2y - 1)(1 - p_t) without
    cancellation. The Numba kernel computes the same per instance.
    """
    z = xp.asarray(z, dtype=np.float64)
    sign = 2.0 * y - 1.0
    a = sign * z
    e = xp.exp(-xp.abs(z))
    log1p_e = xp.log1p(e)
    big = 1.0 / (1.0 + e)
    small = e * big
    right = a >= 0.0
    pt, q = xp.where(right, big, small), xp.where(right, small, big)  # p_t, 1 - p_t
    nlog_pt = xp.maximum(-a, 0.0) + log1p_e
    bce_grad = -sign * q
    bce_curv = pt * q
    g = focal_gamma
    if g == 0.0:
        return nlog_pt, bce_grad, bce_curv
    qg = xp.exp(-g * (xp.maximum(a, 0.0) + log1p_e))  # (1 - p_t)^gamma = exp(gamma log q)
    loss = qg * nlog_pt
    if focal_variant == "weighted_bce":
        return loss, qg * bce_grad, qg * bce_curv
    log_pt = -nlog_pt
    grad = sign * (g * qg * pt * log_pt - qg * q)
    curv = g * qg * q * pt * (log_pt + 1.0) - g * g * qg * pt * pt * log_pt + (g + 1.0) * qg * q * pt
    return loss, grad, curv


def sample_gradient(z, y, focal_gamma=0.0, focal_variant="exact", xp=np):
    """dloss/dz of :func:`sample_loss_terms` alone, for the steps that need no loss value.

    BCE: -(2y - 1)(1 - p_t) by the same expressions (one exponential, no
    logarithm), so the values are those of :func:`sample_loss_terms`; focal
    loss takes its full terms.
    """
    if focal_gamma != 0.0:
        return sample_loss_terms(z, y, focal_gamma, focal_variant, xp)[1]
    z = xp.asarray(z, dtype=np.float64)
    sign = 2.0 * y - 1.0
    e = xp.exp(-xp.abs(z))
    big = 1.0 / (1.0 + e)
    return -sign * (xp.where(sign * z >= 0.0, e, 1.0) * big)  # 1 - p_t: e / (1 + e) where a >= 0, else 1 / (1 + e)


#: where the aggregator's prior centres the weights w: "equal" (equal weights at any common
#: scale: the ensemble becomes the mean of the reconstruction) or "zero" (a ridge, as in
#: logistic-regression stacking: the ensemble becomes the class-balanced difference of means)
PRIOR_CENTERS = ("equal", "consensus", "zero")


@dataclass(frozen=True)
class AggregatorPenalty:
    """(ridge / 2) ||w||^2 + (shrinkage / 2) ||w - centre(w)||^2 on the aggregator's weights.

    The ridge keeps the fit well posed (r_hat has rank d; separable labels).
    Both strengths, ``l2`` and ``prior``, are in labeled instances: ridge =
    l2 / ``weight_total`` and shrinkage = prior / ``weight_total``, the total
    class weight of the labeled instances the supervised loss averages over
    (l2 = 1 is the ridge of scikit-learn's LogisticRegression with C = 1).
    The prior pulls the weights toward its ``center``, the line through a
    direction v, without pulling their scale along it: centre(w) =
    (v^T w / v^T v) v. "equal": v = 1, the ensemble toward the mean of the
    reconstruction; "consensus": v = ``direction``, the classifiers'
    agreement weights (:func:`cfe_fast.core.consensus.consensus_weights` of
    the factors; equal weights until it is set);
    "zero": centre(w) = 0 (a strong pull leaves the direction of the first
    gradient step, the class-weighted difference of the classes' mean
    r_hat). Never the intercept.
    """

    l2: float = 0.0
    prior: float = 0.0
    weight_total: float = 1.0
    center: str = "equal"
    direction: np.ndarray | None = field(default=None, compare=False)

    @property
    def ridge(self):
        return self.l2 / self.weight_total if self.l2 else 0.0

    @property
    def shrinkage(self):
        return self.prior / self.weight_total if self.prior else 0.0

    def _line(self, m):
        """The unit vector of the centre's line, or None for "zero"."""
        if self.center == "zero":
            return None
        if self.center == "equal" or self.direction is None:
            return np.full(m, 1.0 / np.sqrt(m))
        direction = np.asarray(self.direction, dtype=np.float64)
        return direction / np.linalg.norm(direction)

    def _offset(self, w):
        line = self._line(w.size)
        return w if line is None else w - (line @ w) * line

    def value(self, w):
        value = 0.5 * self.ridge * float(w @ w)
        if self.shrinkage:
            offset = self._offset(w)
            value += 0.5 * self.shrinkage * float(offset @ offset)
        return value

    def gradient(self, w):
        gradient = self.ridge * w
        if self.shrinkage:
            gradient = gradient + self.shrinkage * self._offset(w)
        return gradient

    def hessian(self, m):
        hessian = np.diag(np.full(m, self.ridge))
        if self.shrinkage:
            line = self._line(m)
            hessian = hessian + self.shrinkage * (np.eye(m) - (0.0 if line is None else np.outer(line, line)))
        return hessian

    def solve(self, M):
        """A^-1 M for the penalty's Hessian A (m x m) and M (m, k), in O(m k); None where A is singular.

        A = (ridge + shrinkage) I - shrinkage u u^T for a line centre of unit
        direction u, whose inverse is (I - u u^T) / (ridge + shrinkage) +
        u u^T / ridge; A = (ridge + shrinkage) I for "zero".
        """
        M = np.asarray(M, dtype=np.float64)
        total = self.ridge + self.shrinkage
        line = self._line(M.shape[0]) if self.shrinkage else None
        if line is None:
            return M / total if total > 0 else None
        if self.ridge <= 0:
            return None
        along = np.outer(line, line @ M)
        return (M - along) / total + along / self.ridge


class AggregatorTerms(NamedTuple):
    """Normalised supervised loss, its gradient and (optionally) its Hessian.

    ``hessian`` is (m + 1, m + 1) over (w, b), b last, or None.
    ``latent_hessian`` is (d + 1, d + 1) over (v, b) with v = X w (the
    logits are v^T y_i + b), or None: a kernel asked for ``hessian="latent"``
    returns it instead of ``hessian``, which is [X 0; 0 1]^T latent_hessian
    [X 0; 0 1].
    """

    loss: float
    grad_w: np.ndarray
    grad_b: float
    hessian: np.ndarray | None
    latent_hessian: np.ndarray | None = None


def has_hessian(terms, hessian):
    """Whether ``terms`` hold the Hessian asked for by ``hessian`` (False, True or "latent")."""
    if hessian == "latent":
        return terms.latent_hessian is not None
    return terms.hessian is not None or not hessian


def aggregator_terms_from_sums(X, loss_sum, g, H, total, hessian=True):
    """AggregatorTerms from sums over the labeled instances in latent space.

    With z_i = v^T y_i + b (v = X w): ``loss_sum`` = sum omega_i loss_i,
    ``g`` (d + 1,) = sum e_i [y_i; 1] and ``H`` (d + 1, d + 1) = sum h_i
    [y_i; 1][y_i; 1]^T or None; ``total`` = sum omega_i. Since r_hat_i =
    X^T y_i, the map [y; 1] -> [r_hat; 1] lifts them to (w, b). With
    ``hessian="latent"`` the Hessian stays in latent space (``latent_hessian``).
    """
    X = np.asarray(X, dtype=np.float64)
    terms = AggregatorTerms(float(loss_sum) / total, X.T @ g[:-1] / total, float(g[-1]) / total, None)
    if H is None:
        return terms
    if hessian == "latent":
        return terms._replace(latent_hessian=np.asarray(H, dtype=np.float64) / total)
    lift = np.zeros((X.shape[0] + 1, X.shape[1] + 1))
    lift[:-1, :-1] = X
    lift[-1, -1] = 1.0
    return terms._replace(hessian=lift.T @ H @ lift / total)


def normalised_reconstruction_loss(weighted_sse, x_squared, y_squared, lam, m, n):
    """L_rec = (sum c (r - r_hat)^2 + lam (||X||^2 + ||Y||^2)) / (m n) from its sums."""
    return float((weighted_sse + lam * (x_squared + y_squared)) / (m * n))
