"""The problem a fit solves: data, weights and a backend's kernels, behind the steps a trainer takes.

:class:`Problem` is the protocol every trainer and the outer loop use to
touch R and C; :class:`InMemoryProblem` runs it with a backend's kernels on
arrays in memory (or on a GPU), :class:`cfe_fast.backends.dask.problem.DaskProblem`
as per-chunk passes on a cluster. Steps write what they compute into the
:class:`~cfe_fast.training.state.State` they are given.
"""

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from .._float64 import matvec64, moments64
from ..core.losses import AggregatorPenalty, has_hessian, sample_loss_terms, supervised_weights
from ..core.missing import mean_of_observed


@dataclass(frozen=True)
class Settings:
    """The objective's constants (docs/method.md, "Objective")."""

    rho: float
    focal_gamma: float = 0.0
    focal_variant: str = "exact"
    penalty: AggregatorPenalty = AggregatorPenalty()
    weighted_aggregator: bool = True


@dataclass
class FitData:
    """What a backend needs to start a fit (:meth:`~cfe_fast.backends.contract.Backend.start_fit`).

    Attributes
    ----------
    P : array (n, m)
        Checked instance-major probabilities (a dask array for the Dask
        backend), NaN where an entry is not observed.
    labels : ndarray (n,)
        0/1, NaN for unlabeled.
    omega : ndarray (n_L,)
        Class weights of the labeled instances, in instance order.
    lam : float
    latent_dim : int
    confidence : str or array
        A strategy name, or the user's matrix (n, m).
    confidence_alpha : float
    settings : Settings
    rng : numpy.random.Generator
        Draws the initial instance factors.
    resume : FitState or None
        The state to continue from (a checkpoint), or None to start afresh.
    client : dask.distributed.Client or None
    classifier_names : sequence of str or None
        The classifiers' names (a DataFrame's columns), for error messages.
    """

    P: object
    labels: np.ndarray
    omega: np.ndarray
    lam: float
    latent_dim: int
    confidence: object
    confidence_alpha: float
    settings: Settings
    rng: np.random.Generator
    resume: object = None
    client: object = None
    classifier_names: object = None

    @property
    def labeled(self):
        return ~np.isnan(self.labels)

    @property
    def strategy(self):
        """The confidence strategy's name, or None for a user matrix."""
        return self.confidence if isinstance(self.confidence, str) else None


class Problem(Protocol):
    """The steps and losses a trainer uses; implemented in memory and on Dask.

    Attributes: ``settings`` (:class:`Settings`), ``lam``, ``labeled`` (n,),
    ``y_labeled`` and ``omega`` (n_L,), ``a`` (the supervised weights),
    ``s`` (rho / |O|, |O| = m n when every entry is observed),
    ``has_labels``, ``classifier_quality`` ((m,) for the "calibration"
    strategy, else None).
    """

    def classifier_step(self, state, solver="auto"):
        """The ALS classifier half-step: state.X from state.Y."""

    def instance_step(self, state, solver="auto"):
        """The ALS instance half-step: state.Y from state.X, and state.reconstruction."""

    def reconstruction_loss(self, X, Y):
        """Normalised L_rec at (X, Y)."""

    def reconstruction_gradient(self, X, Y):
        """(dL_rec/dX, dL_rec/dY) at (X, Y) (the joint trainer; in memory only)."""

    def instance_solves(self, X, w):
        """(Y, Z_labeled, loss): the ALS instance half-step Y (d, n), A_i^-1 X w of the labeled instances
        (d, n_L) from the same systems A_i, and L_rec at (X, Y) normalised by m n (the exact trainer; in
        memory only)."""

    def classifier_gram_terms(self, Y):
        """Per-classifier Grams G (m, d, d) and right-hand sides B (m, d) of the classifier half-step before
        the ridge (the exact trainer; in memory only)."""

    def labeled_factors(self, Y, positions=None):
        """Y of the labeled instances (d, n_L), or of those at ``positions`` in labeled order."""

    def make_evaluator(self, X, Y):
        """``evaluate(w, b, hessian, omega=None, gamma=None) -> AggregatorTerms`` at fixed (X, Y)."""

    def monitor_factors(self, Y):
        """The instance factors the collapse monitors look at."""

    def factor_moments(self, Y):
        """(mean (d,), second moment (d, d)) of the columns of Y, float64 on the host."""


class ProblemLosses:
    """The losses every problem derives from its steps and evaluator (shared by both implementations)."""

    def _init_weights(self, settings, labeled, y_labeled, omega, shape, n_observed=None):
        """The weights of the objective; ``n_observed``: |O|, the observed entries (None: all m n)."""
        m, n = shape
        n_observed = m * n if n_observed is None else n_observed
        self.shape = shape
        self.settings = settings
        self.labeled, self.y_labeled, self.omega = labeled, y_labeled, omega
        self.s = settings.rho / n_observed
        self.a = supervised_weights(omega, settings.rho) if omega.size else omega
        # the kernels normalise L_rec by m n; with entries missing it is normalised by |O| (docs/method.md)
        self._reconstruction_scale = None if n_observed == m * n else (m * n) / n_observed

    def _normalised(self, value):
        """A kernel's L_rec (or its gradient), normalised by m n, renormalised by |O|."""
        return value if self._reconstruction_scale is None else value * self._reconstruction_scale

    @property
    def has_labels(self):
        return self.y_labeled.size > 0

    @cached_property
    def host_labels(self):
        """(y_labeled, omega, a) as float64 NumPy arrays, for the trainers' arithmetic on the host
        (a GPU backend keeps the originals on the device)."""
        return tuple(np.asarray(self.to_host(v), dtype=np.float64) for v in (self.y_labeled, self.omega, self.a))

    def evaluator(self, state):
        """The aggregator's evaluator at the state's factors (made once per factors, kept on the state)."""
        if state.evaluator is None:
            state.evaluator = self.make_evaluator(state.X, state.Y)
        return state.evaluator

    def state_reconstruction(self, state):
        """L_rec at the state's factors: the value its instance step computed, else a new pass."""
        if state.reconstruction is None:
            state.reconstruction = self.reconstruction_loss(state.X, state.Y)
        return state.reconstruction

    def supervised_loss(self, state):
        """L_sup + the penalty on w for the weighted aggregator, BCE of the mean otherwise."""
        if not self.has_labels:
            return 0.0
        w = state.w
        if self.settings.weighted_aggregator:
            return self.evaluator(state)(w, state.b).loss + self.settings.penalty.value(w)
        Y_labeled = self.to_host(self.labeled_factors(state.Y))
        p = np.clip(mean_of_reconstruction(self.to_host(state.X), Y_labeled), 1e-12, 1 - 1e-12)
        y_labeled, omega = self.to_host(self.y_labeled), self.to_host(self.omega)
        loss, _, _ = sample_loss_terms(np.log(p) - np.log1p(-p), y_labeled, self.settings.focal_gamma)
        return float(omega @ loss / omega.sum())

    def objective(self, state):
        """(L, L_rec, L_sup) at the state."""
        rec = self.state_reconstruction(state)
        sup = self.supervised_loss(state)
        rho = self.settings.rho
        return rho * rec + (1 - rho) * sup, rec, sup


class InMemoryProblem(ProblemLosses):
    """:class:`Problem` on arrays in memory or on a GPU, with a backend's kernels.

    Parameters
    ----------
    backend : Backend
    R, C : arrays (m, n), where the backend computes
        C None: confidence 1 at every entry (the backend's kernels share one Gram).
    lam : float
    settings : Settings
    labeled : (n,) bool; y_labeled, omega : (n_L,)
    classifier_quality : (m,) or None
    missing : (m, n) bool on the host, or None
        The unobserved entries (C is 0 there and R holds a neutral value),
        None when every entry is observed.
    """

    def __init__(self, backend, R, C, lam, settings, labeled, y_labeled, omega, classifier_quality=None,
                 missing=None):
        self.backend, self.R, self.C, self.lam = backend, R, C, lam
        self.classifier_quality = classifier_quality
        self.missing = missing
        n_observed = None if missing is None else missing.size - int(np.count_nonzero(missing))
        self._init_weights(settings, labeled, y_labeled, omega, R.shape, n_observed)
        self._labeled_index = np.flatnonzero(self.backend.to_host(labeled))

    def to_host(self, a):
        return self.backend.to_host(a)

    def classifier_step(self, state, solver="auto"):
        """X from Y (the previous X starts ``solver="cg"``)."""
        state.X = self.backend.update_classifier_factors(state.Y, self.R, self.C, self.lam, solver=solver,
                                                         init=state.X)

    def instance_step(self, state, solver="auto"):
        """Y from X and L_rec at (X, Y), computed in the same pass over R and C."""
        previous = state.Y if solver == "cg" else None  # only the approximate solver starts from the old Y
        state.Y = None  # free the Y being replaced (and what the evaluator derived from it) before the new one
        Y, loss = self.backend.update_instance_factors(state.X, self.R, self.C, self.lam, solver=solver,
                                                       init=previous, with_loss=True)
        del previous
        state.Y = Y
        state.reconstruction = self._normalised(loss)

    def reconstruction_loss(self, X, Y):
        return self._normalised(self.backend.reconstruction_loss(X, Y, self.R, self.C, self.lam))

    def reconstruction_gradient(self, X, Y):
        gX, gY = self.backend.reconstruction_gradient(X, Y, self.R, self.C, self.lam)
        return self._normalised(gX), self._normalised(gY)

    def instance_solves(self, X, w):
        Y, Z, loss = self.backend.instance_solves(X, self.R, self.C, self.lam, w, with_loss=True)
        return Y, self.labeled_factors(Z), loss

    def classifier_gram_terms(self, Y):
        return self.backend.classifier_gram_terms(Y, self.R, self.C)

    def labeled_factors(self, Y, positions=None):
        """Y of the labeled instances (d, n_L) (those at ``positions`` in labeled order), gathered instance by instance.

        Y (d, n) is the transposed view of the kernels' instance-major
        factors, so the gather copies whole rows (``take`` with indices is
        much faster than a boolean mask) and the result is again a transposed
        view of contiguous (n_L, d) data, which the kernels read without
        another copy.
        """
        index = self._labeled_index if positions is None else self._labeled_index[positions]
        return np.take(Y.T, index, axis=0).T

    def labeled_mean_of_R(self, positions):
        """The mean over classifiers of the observed entries of R for the labeled instances at ``positions``
        (labeled order), on the host."""
        index = self._labeled_index[positions]
        R = np.asarray(self.to_host(self.R[:, index]), dtype=np.float64)
        if self.missing is not None:
            R = np.where(self.missing[:, index], np.nan, R)
        return mean_of_observed(R, axis=0)

    def make_evaluator(self, X, Y):
        """The fused kernel over the labeled instances (L_sup without the ridge) at fixed (X, Y).

        ``omega`` and ``gamma`` of a call override the class weights and the
        focal gamma. The evaluator remembers its latest default result, so
        the objective after the aggregator fit reuses the fit's last evaluation.
        """
        Y_labeled = self.labeled_factors(Y)
        backend, settings = self.backend, self.settings
        last = {}

        def evaluate(w, b, hessian=False, omega=None, gamma=None):
            default = omega is None and gamma is None
            if default:
                key = (np.asarray(w, dtype=np.float64).tobytes(), float(b))
                if last.get("key") == key and has_hessian(last["terms"], hessian):
                    return last["terms"]
            terms = backend.aggregator_terms(
                X, Y_labeled, self.y_labeled, self.omega if omega is None else omega, w, b,
                settings.focal_gamma if gamma is None else gamma, settings.focal_variant, hessian,
            )
            if default:
                last.update(key=key, terms=terms)
            return terms

        return evaluate

    def monitor_factors(self, Y):
        """All instance factors (in memory)."""
        return Y

    def factor_moments(self, Y):
        return tuple(np.asarray(self.to_host(moment), dtype=np.float64) for moment in moments64(Y))


def mean_of_reconstruction(X, Y):
    """Mean over classifiers of r_hat = X^T Y, as (mean of X's columns)^T Y (a dask Y stays lazy)."""
    return matvec64(np.asarray(X, dtype=np.float64).mean(axis=1), Y)
