"""CFEnsembleClassifier: the scikit-learn style estimator over the kernels."""

import time
import warnings

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from . import reference
from ._validation import (
    check_confidence,
    check_labels,
    check_lam,
    check_positive_int,
    check_probabilities,
    check_solvable,
)
from .aggregator import fit_aggregator
from .backends import get_backend
from .kernels import solver_options

AGGREGATORS = ("weighted", "mean")
DTYPES = {"float64": np.float64, "float32": np.float32}


class CFEnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Combine the probability outputs of many classifiers with CF-Ensemble.

    The classifiers x instances probability matrix R is factorised by
    confidence-weighted alternating least squares (R ~ X^T Y), using labeled and
    unlabeled instances alike; an aggregator ``sigma(w^T r_hat + b)`` fitted on
    the labeled instances reads the prediction off the reconstruction.

    Parameters
    ----------
    latent_dim : int or None, default=None
        Latent dimension d. None picks ``max(1, min(20, n_classifiers // 2))``.
        A value >= n_classifiers warns: the factorisation can then copy R.
    rho : float in [0, 1], default=0.5
        Weight of the reconstruction term in the objective (SPEC.md).
    lam : float, default=0.1
        Ridge penalty of the ALS half-steps (> 0 recommended; 0 is refused
        where a system would be singular).
    confidence : {"label_aware", "certainty", "uniform", "calibration"} or array, default="label_aware"
        Confidence strategy, or a user matrix C of shape (n_instances,
        n_classifiers) that is used exactly as given.
    confidence_alpha : float, default=1.0
        Strength of the label reward of the "label_aware" strategy.
    aggregator : {"weighted", "mean"}, default="weighted"
        "weighted" fits (w, b) of ``sigma(w^T r_hat + b)``; "mean" predicts
        the mean of r_hat, clipped to [0, 1], and fits nothing.
    class_weight : "balanced" or None, default="balanced"
        Inverse class-frequency weights of the supervised loss.
    focal_gamma : float, default=0.0
        0 for cross-entropy, > 0 for focal loss.
    focal_variant : {"exact", "weighted_bce"}, default="exact"
        True focal gradient, or the seeds' (1 - p_t)^gamma-weighted BCE gradient.
    aggregator_l2 : float, default=1e-3
        Ridge on w; keeps the Newton fit well posed when r_hat is collinear
        (it has rank d) or the labels are separable.
    freeze_aggregator_iters : int, default=0
        Keep (w, b) at its initial value (w = 1/m, b = 0) for this many iterations.
    max_iter : int, default=50
    tol : float, default=1e-5
        Stop when the relative change of the objective falls below tol.
    random_state : int, numpy Generator or None
        Seeds the model's own Generator (the global RNG is never used).
    backend : {"numba", "numpy"}, default="numba"
    solver : {"auto", "dual", "primal", "cg"}, default="auto"
        How the ALS half-steps solve their ridge systems (Numba backend; the
        NumPy reference is exact and ignores it). "auto": exact, dual m x m
        systems when n_classifiers < latent_dim, else primal d x d systems.
        "cg": approximate, 3 conjugate-gradient steps per system per
        iteration, warm-started from the previous factors (faster for large
        latent_dim and n_classifiers; the factors trail the exact ALS ones).
    dtype : {"float64", "float32"}, default="float64"
    verbose : bool, default=False

    Attributes
    ----------
    classes_ : ndarray [0, 1]
    n_features_in_ : int
        Number of classifiers m.
    latent_dim_ : int
    classifier_factors_ : ndarray (d, m)
        X.
    instance_factors_ : ndarray (d, n)
        Y of the fitted instances.
    coef_ : ndarray (m,), intercept_ : float
        Aggregator (w, b).
    transductive_proba_ : ndarray (n,)
        P(y = 1) for every fitted instance, labeled or not.
    history_ : dict of lists
        Per iteration: "loss", "reconstruction", "supervised", "aggregator_steps", "time".
    n_iter_ : int
    converged_ : bool
    """

    def __init__(
        self,
        latent_dim=None,
        rho=0.5,
        lam=0.1,
        confidence="label_aware",
        confidence_alpha=1.0,
        aggregator="weighted",
        class_weight="balanced",
        focal_gamma=0.0,
        focal_variant="exact",
        aggregator_l2=1e-3,
        freeze_aggregator_iters=0,
        max_iter=50,
        tol=1e-5,
        random_state=None,
        backend="numba",
        solver="auto",
        dtype="float64",
        verbose=False,
    ):
        self.latent_dim = latent_dim
        self.rho = rho
        self.lam = lam
        self.confidence = confidence
        self.confidence_alpha = confidence_alpha
        self.aggregator = aggregator
        self.class_weight = class_weight
        self.focal_gamma = focal_gamma
        self.focal_variant = focal_variant
        self.aggregator_l2 = aggregator_l2
        self.freeze_aggregator_iters = freeze_aggregator_iters
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.backend = backend
        self.solver = solver
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------ checks
    def _check_params(self, n_classifiers):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {self.aggregator!r}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if self.focal_variant not in reference.FOCAL_VARIANTS:
            raise ValueError(f"focal_variant must be one of {reference.FOCAL_VARIANTS}, got {self.focal_variant!r}")
        if not 0 <= self.rho <= 1:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        for name in ("focal_gamma", "aggregator_l2", "tol", "confidence_alpha"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        check_lam(self.lam)
        check_positive_int(self.max_iter, "max_iter")
        if self.freeze_aggregator_iters < 0:
            raise ValueError(f"freeze_aggregator_iters must be >= 0, got {self.freeze_aggregator_iters}")
        solver_options(get_backend(self.backend), self.solver)
        if self.latent_dim is None:
            return max(1, min(20, n_classifiers // 2))
        d = check_positive_int(self.latent_dim, "latent_dim")
        if d >= n_classifiers:
            warnings.warn(
                f"latent_dim={d} >= n_classifiers={n_classifiers}: the factorisation can "
                "reproduce R exactly and the collaborative-filtering step does nothing; "
                "use a latent_dim below the number of classifiers",
                UserWarning,
                stacklevel=3,
            )
        return d

    def _confidence_matrix(self, P, labels):
        """C (n, m) for the instances in P; labels NaN where unknown."""
        dtype = DTYPES[self.dtype]
        if self._strategy() is not None:
            C = reference.confidence(P.T, labels, self.confidence, self.confidence_alpha).T
            return np.ascontiguousarray(C, dtype=dtype)
        return np.ascontiguousarray(check_confidence(self.confidence, P.shape, "confidence", dtype))

    def _fold_in_confidence(self, P):
        """Label-free confidence for new instances (SPEC.md, inductive prediction).

        "label_aware", "certainty" and a user matrix fold in with |r - 0.5|;
        "uniform" with ones; "calibration" with the fitted per-classifier quality.
        """
        dtype = DTYPES[self.dtype]
        strategy = self._strategy()
        if strategy == "calibration":
            return np.ascontiguousarray(np.broadcast_to(self.classifier_quality_, P.shape), dtype=dtype)
        if strategy == "uniform":
            return np.ones(P.shape, dtype=dtype)
        return np.ascontiguousarray(np.abs(P - 0.5), dtype=dtype)

    def _strategy(self):
        """The confidence strategy name, or None for a user-supplied matrix."""
        return self.confidence if isinstance(self.confidence, str) else None

    # --------------------------------------------------------------- fit
    def fit(self, X, y):
        """Fit on the probability matrix X = P (n_instances, n_classifiers) and labels y.

        y holds 0/1 for labeled instances and NaN or -1 for unlabeled ones. All
        instances take part in the factorisation (transductive); the
        probabilities of the fitted instances end up in ``transductive_proba_``.
        """
        dtype = DTYPES[self.dtype] if self.dtype in DTYPES else None
        P = np.ascontiguousarray(check_probabilities(X, "X", dtype))
        n, m = P.shape
        d = self._check_params(m)
        labels = check_labels(y, n, "y")
        labeled = ~np.isnan(labels)
        y_labeled = labels[labeled]
        aggregator = self.aggregator
        if not labeled.any():
            warnings.warn(
                "y has no labeled instance: fitting the reconstruction only; predictions are the "
                "mean of the reconstruction (aggregator='mean')",
                UserWarning,
                stacklevel=2,
            )
            aggregator = "mean"
        elif np.unique(y_labeled).size < 2:
            raise ValueError(
                f"y has labeled instances of one class only ({int(y_labeled[0])}); "
                "the aggregator needs both classes"
            )
        C = self._confidence_matrix(P, labels)
        lam = float(self.lam)
        check_solvable(C.T, lam, d, axis=0)
        check_solvable(C.T, lam, d, axis=1)
        if self._strategy() == "calibration":
            self.classifier_quality_ = C[0].astype(np.float64)
        kernels = get_backend(self.backend)
        R, C = P.T, C.T  # (m, n) views of the instance-major arrays: no copies
        omega = reference.class_weights(y_labeled, self.class_weight == "balanced")

        rng = np.random.default_rng(self.random_state)
        Y = (rng.standard_normal((n, d)) / np.sqrt(d)).astype(P.dtype).T
        w, b = np.full(m, 1.0 / m), 0.0
        history = {key: [] for key in ("loss", "reconstruction", "supervised", "aggregator_steps", "time")}
        previous = None
        self.converged_ = False
        start = time.perf_counter()
        X = None
        for iteration in range(1, self.max_iter + 1):
            # init: the CG start (warm start from the previous factors); exact solvers ignore it
            X = kernels.update_classifier_factors(Y, R, C, lam, **solver_options(kernels, self.solver, X))
            Y = kernels.update_instance_factors(X, R, C, lam, **solver_options(kernels, self.solver, Y))
            steps = 0
            Y_labeled = Y[:, labeled]
            if aggregator == "weighted" and iteration > self.freeze_aggregator_iters:
                w, b, steps = fit_aggregator(
                    lambda w_, b_, hess: kernels.aggregator_terms(
                        X, Y_labeled, y_labeled, omega, w_, b_, self.focal_gamma, self.focal_variant, hess
                    ),
                    w, b, self.aggregator_l2, line_search=self.focal_gamma == 0 or self.focal_variant == "exact",
                )
            rec = kernels.reconstruction_loss(X, Y, R, C, lam)
            sup = self._supervised_loss(X, Y_labeled, y_labeled, omega, w, b, aggregator) if labeled.any() else 0.0
            loss = self.rho * rec + (1 - self.rho) * sup
            for key, value in zip(history, (loss, rec, sup, steps, time.perf_counter() - start)):
                history[key].append(value)
            if self.verbose:
                print(f"iter {iteration:4d}  loss {loss:.6e}  rec {rec:.6e}  sup {sup:.6e}")
            if not np.isfinite(loss):
                raise FloatingPointError(f"the objective became {loss} at iteration {iteration}")
            frozen = aggregator == "weighted" and iteration <= self.freeze_aggregator_iters
            if previous is not None and not frozen and abs(loss - previous) <= self.tol * max(abs(loss), 1e-300):
                self.converged_ = True
                break
            previous = loss

        self.classes_ = np.array([0, 1])
        self.n_features_in_ = m
        self.latent_dim_ = d
        self.aggregator_ = aggregator
        self.classifier_factors_ = np.ascontiguousarray(X)
        self.instance_factors_ = Y
        self.coef_ = w
        self.intercept_ = float(b)
        self.history_ = history
        self.n_iter_ = iteration
        self.transductive_proba_ = self._proba_from_factors(Y)
        return self

    def _supervised_loss(self, X, Y_labeled, y_labeled, omega, w, b, aggregator):
        if aggregator == "weighted":
            terms = get_backend(self.backend).aggregator_terms(
                X, Y_labeled, y_labeled, omega, w, b, self.focal_gamma, self.focal_variant, False
            )
            return terms.loss + 0.5 * self.aggregator_l2 * float(w @ w)
        p = np.clip(self._mean_of_reconstruction(X, Y_labeled), 1e-12, 1 - 1e-12)
        loss, _, _ = reference.sample_loss_terms(np.log(p) - np.log1p(-p), y_labeled, self.focal_gamma)
        return float(omega @ loss / omega.sum())

    @staticmethod
    def _mean_of_reconstruction(X, Y):
        return np.asarray(X, dtype=np.float64).mean(axis=1) @ np.asarray(Y, dtype=np.float64)

    def _proba_from_factors(self, Y):
        """P(y = 1) from instance factors, via v = X w (R_hat never formed)."""
        X = np.asarray(self.classifier_factors_, dtype=np.float64)
        if self.aggregator_ == "mean":
            return np.clip(self._mean_of_reconstruction(X, Y), 0.0, 1.0)
        return expit((X @ self.coef_) @ np.asarray(Y, dtype=np.float64) + self.intercept_)

    # ----------------------------------------------------------- predict
    def transform(self, X):
        """Instance factors Y (d, n_new) of new instances, folded in with X fixed."""
        check_is_fitted(self, "classifier_factors_")
        P = np.ascontiguousarray(check_probabilities(X, "X", DTYPES[self.dtype]))
        if P.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {P.shape[1]} classifiers; the model was fitted on {self.n_features_in_}")
        C = self._fold_in_confidence(P)
        check_solvable(C.T, float(self.lam), self.latent_dim_, axis=0)
        return get_backend(self.backend).fold_in(self.classifier_factors_, P.T, C.T, float(self.lam))

    def predict_proba(self, X):
        """Class probabilities (n_new, 2) of new instances (inductive fold-in)."""
        p = self._proba_from_factors(self.transform(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        """Class labels (0/1) of new instances, thresholded at 0.5."""
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]
