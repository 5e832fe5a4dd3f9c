"""What the in-memory backends (NumPy, Numba, CuPy) share: data checks, the start of a fit, the fold-in."""

from contextlib import nullcontext

import numpy as np

from .._validation import (
    as_float_array,
    check_confidence,
    check_labels,
    check_observed_classifiers,
    check_probabilities,
    check_probability_range,
    check_solvable,
)
from ..core.confidence import instance_major_confidence
from ..core.missing import fill_missing, has_missing, missing_entries
from ..training.problem import InMemoryProblem
from ..training.state import State, initial_fit_state


class InMemoryBackend:
    """Base of the backends whose data are NumPy arrays (placed on a device by :meth:`place`)."""

    def place(self, *arrays):
        """The arrays unchanged: the kernels compute where the arrays are."""
        return arrays

    def to_host(self, array):
        return array

    def session(self, client):
        """A context for a whole fit (the Dask backend's cluster); nothing here."""
        return nullcontext(client)

    def gather(self, client, *arrays):
        """The fitted arrays as NumPy arrays (they already are)."""
        return arrays

    def check_new_data(self, X, dtype):
        """Checked instance-major probabilities (n_new, m) for a fold-in (NaN = unobserved)."""
        return np.ascontiguousarray(check_probabilities(X, "X", dtype, missing=True))

    def check_data(self, X, y, dtype, client=None, names=None):
        """P (n, m) C-contiguous in ``dtype`` (NaN = unobserved) and labels (n,) NaN where unlabeled.

        Label errors are reported before range errors of P; a classifier
        with no observed entry is refused, by its name in ``names`` if given.
        """
        P = as_float_array(X, "X", 2, dtype, missing=True)
        labels = check_labels(y, P.shape[0], "y")
        P = np.ascontiguousarray(check_probability_range(P, "X"))
        if has_missing(P):
            check_observed_classifiers(P, names)
        return P, labels

    def start_fit(self, data):
        """The problem and the initial (or resumed) state of a fit on :class:`~cfe_fast.training.problem.FitData`.

        Unobserved entries (NaN in P) get confidence 0 and the value
        :data:`~cfe_fast.core.missing.FILL_VALUE` in the R the kernels read.
        """
        missing = missing_entries(data.P)
        P = data.P
        dtype = P.dtype
        if data.strategy is None:
            C = np.ascontiguousarray(check_confidence(data.confidence, P.shape, "confidence", dtype, missing))
            quality = None
        else:
            C, quality = instance_major_confidence(P, data.labels, data.strategy, data.confidence_alpha, dtype,
                                                   data.classifier_names)
        P = fill_missing(P, missing)
        check_solvable(C.T, data.lam, data.latent_dim, axis=0)
        check_solvable(C.T, data.lam, data.latent_dim, axis=1)
        n, m = P.shape
        progress = data.resume or initial_fit_state(data.rng, n, m, data.latent_dim, dtype)
        labeled = data.labeled
        # R, C as (m, n) views of the instance-major arrays; a GPU backend moves them to the device once
        R, C, Y, X, labeled, y_labeled, omega = self.place(P.T, C.T, progress.Y, progress.X, labeled,
                                                           data.labels[labeled], data.omega)
        progress.X = progress.Y = None  # the state owns the factors: the initial Y is freed once replaced
        problem = InMemoryProblem(self, R, C, data.lam, data.settings, labeled, y_labeled, omega, quality,
                                  missing=None if missing is None else missing.T)
        return problem, State(X, Y, progress.w, progress.b), progress

    def fold_in_data(self, X, P, lam, confidence):
        """Instance factors (d, n_new) of checked instance-major probabilities P (n_new, m), NaN = unobserved."""
        C = np.ascontiguousarray(confidence(P), dtype=P.dtype)
        check_solvable(C.T, lam, X.shape[0], axis=0)
        return self.fold_in(X, fill_missing(P, missing_entries(P)).T, C.T, lam)


class ModuleBackend(InMemoryBackend):
    """An in-memory backend whose kernels are the functions of a module with the reference's signatures.

    ``kernels``: the module (:mod:`cfe_fast.reference` for "numpy", the CuPy
    kernels for "cupy"); its half-steps take no ``solver`` (they are exact)
    and no ``init``.
    """

    kernels = None

    def update_instance_factors(self, X, R, C, lam, *, solver="auto", init=None, with_loss=False):
        return self.kernels.update_instance_factors(X, R, C, lam, with_loss=with_loss)

    def update_classifier_factors(self, Y, R, C, lam, *, solver="auto", init=None):
        return self.kernels.update_classifier_factors(Y, R, C, lam)

    def fold_in(self, X, R, C, lam):
        return self.kernels.update_instance_factors(X, R, C, lam)

    def reconstruction_loss(self, X, Y, R, C, lam):
        return self.kernels.reconstruction_loss(X, Y, R, C, lam)

    def aggregator_terms(self, X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact",
                         hessian=False):
        return self.kernels.aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma, focal_variant,
                                             hessian)
