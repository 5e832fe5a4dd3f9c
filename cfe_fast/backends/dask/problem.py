"""The trainers' :class:`~cfe_fast.training.problem.Problem` over a :class:`~.engine.DaskEngine`."""

import dask
import numpy as np

from ... import config
from ..._float64 import moments64
from ...training.problem import ProblemLosses


class DaskProblem(ProblemLosses):
    """Problem whose steps are per-chunk passes on a cluster; Y stays on the workers.

    The ALS trainer's half-steps, the reconstruction loss and the aggregator
    terms run as passes of the engine (each chunk of R and C read once per
    sweep). One pass computes the instance factors and, from them, the
    classifier Grams of the next classifier step, so the classifier step
    takes the Y of the latest instance step (or the initial Y) only: any
    other Y is refused. The collapse monitors look at a fixed sample of at
    most ``config.DASK_MONITOR_SAMPLE`` instances, so Y is never gathered whole.
    """

    def __init__(self, backend, engine, settings, labeled, y_labeled, omega, classifier_quality=None, seed=0,
                 n_observed=None):
        self.backend = backend  # its kernels on in-memory arrays (e.g. on gathered labeled factors)
        self.engine = engine
        self.lam = engine.lam
        self.classifier_quality = classifier_quality
        n, m = engine.shape
        self._init_weights(settings, labeled, y_labeled, omega, (m, n), n_observed)
        size = min(n, config.DASK_MONITOR_SAMPLE)
        self._sample = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
        self._latest_Y = None  # the Y whose Grams the engine holds (None: the initial Y)
        self._labeled_index = np.flatnonzero(labeled)

    @staticmethod
    def to_host(a):
        return a

    def classifier_step(self, state, solver="auto"):
        """X from the Grams of the latest pass, which must be the pass that made state.Y."""
        if state.Y is not self._latest_Y:
            raise RuntimeError("the Dask problem's classifier step takes the Y of its latest instance step only")
        state.X = self.engine.classifier_step()

    def instance_step(self, state, solver="auto"):
        """The fused pass: Y, the next classifier Grams, L_rec and the labeled rows, in one pass."""
        state.forget_derived()
        self.engine.instance_step(state.X)
        state.Y = self._latest_Y = self.engine.instance_factors()
        state.reconstruction = self._normalised(self.engine.reconstruction_loss())

    def reconstruction_loss(self, X, Y):
        """L_rec from the sums of the latest pass (which ran with these factors)."""
        if Y is not self._latest_Y:
            raise RuntimeError("the Dask problem knows L_rec of its latest instance step only")
        return self._normalised(self.engine.reconstruction_loss())

    def labeled_factors(self, Y, positions=None):
        """Y of the labeled instances (d, n_L) (those at ``positions``), gathered to the client."""
        Y_labeled = self.engine.labeled_factors()
        return Y_labeled if positions is None else Y_labeled[:, positions]

    def labeled_mean_of_R(self, positions):
        """The mean over classifiers of the observed entries of R for the labeled instances at ``positions``
        (labeled order)."""
        return self.engine.mean_of_rows(self._labeled_index[positions])

    def make_evaluator(self, X, Y):
        engine, settings = self.engine, self.settings

        def evaluate(w, b, hessian=False, omega=None, gamma=None):
            if omega is not None:
                raise NotImplementedError("per-call instance weights are not supported by the Dask backend")
            return engine.aggregator_terms(w, b, settings.focal_gamma if gamma is None else gamma,
                                           settings.focal_variant, hessian)

        return evaluate

    def monitor_factors(self, Y):
        """Y of the fixed monitoring sample, gathered to the client."""
        return np.asarray(Y[:, self._sample].compute())

    def factor_moments(self, Y):
        """The moments of all instance factors, one pass over the workers' chunks."""
        return tuple(np.asarray(moment, dtype=np.float64) for moment in dask.compute(*moments64(Y)))
