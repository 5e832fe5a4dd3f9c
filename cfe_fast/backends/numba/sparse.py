"""The Numba backend on a sparse P: a fit's problem on the observed entries (trainer "als") and the fold-in.

The fit holds P's observed entries by instance and by classifier with their
confidences (:func:`cfe_fast.core.sparse.layouts`) and the factors: O(nnz +
(n + m) d) memory; no (n, m) array is formed. Its kernels are those of
:mod:`.sparse_steps`; the aggregator reads the labeled instances' factors
only, as on dense data.
"""

import numpy as np
from scipy.sparse import csr_array

from ..._validation import check_solvable
from ...core.sparse import Entries, row_means, sparse_classifier_quality, stored_confidence
from ...training.problem import InMemoryProblem
from ...training.state import State, initial_fit_state
from .losses import normalised_loss
from .sparse_steps import by_classifier, solve_sparse_classifiers, solve_sparse_instances, sparse_squared_residual


def _confidence_matrix(P, values):
    """The stored confidences as a sparse (m, n) matrix of R's layout (for :func:`check_solvable`)."""
    return csr_array((values, P.indices, P.indptr), shape=P.shape).T


def layouts(P, C_values):
    """(by instance, by classifier) :class:`~cfe_fast.core.sparse.Entries` of the checked CSR P with
    confidences ``C_values`` (in CSR order, or empty for confidence 1)."""
    by_instance = Entries(P.indptr, P.indices, P.data, C_values)
    return by_instance, by_classifier(by_instance, P.shape[1])


class SparseProblem(InMemoryProblem):
    """:class:`~cfe_fast.training.problem.Problem` of the ALS trainer on the observed entries of a sparse P.

    Parameters
    ----------
    backend : NumbaBackend
        Its aggregator kernel serves the evaluator.
    P : scipy.sparse.csr_array (n, m)
        The checked probabilities (stored = observed).
    by_instance, by_classifier : Entries
        P's entries with their confidences, by instance (CSR) and by classifier (CSC).
    lam, settings, labeled, y_labeled, omega, classifier_quality
        As for :class:`~cfe_fast.training.problem.InMemoryProblem`.
    """

    def __init__(self, backend, P, by_instance, by_classifier, lam, settings, labeled, y_labeled, omega,
                 classifier_quality=None):
        self.backend, self.lam = backend, lam
        self.P, self.by_instance, self.by_classifier = P, by_instance, by_classifier
        self.classifier_quality = classifier_quality
        n, m = P.shape
        self._init_weights(settings, labeled, y_labeled, omega, (m, n), n_observed=P.nnz)
        self._labeled_index = np.flatnonzero(labeled)

    def _loss(self, sse, X, Yt):
        return self._normalised(normalised_loss(sse, X, Yt, self.lam))

    def classifier_step(self, state, solver="auto"):
        """X from Y, each classifier over its observed instances."""
        state.X = solve_sparse_classifiers(state.Y.T, self.by_classifier, self.lam)

    def instance_step(self, state, solver="auto"):
        """Y from X, each instance over its observed classifiers, and L_rec at (X, Y) in the same pass."""
        state.Y = None  # the new factors do not depend on the old ones: free them first
        Yt, sse = solve_sparse_instances(state.X, self.by_instance, self.lam, loss=True)
        state.Y = Yt.T
        state.reconstruction = self._loss(sse, state.X, Yt)

    def reconstruction_loss(self, X, Y):
        Yt = np.ascontiguousarray(Y.T)
        return self._loss(sparse_squared_residual(X, Yt, self.by_instance), X, Yt)

    def labeled_mean_of_R(self, positions):
        """The mean of the observed entries of the labeled instances at ``positions`` (labeled order)."""
        return row_means(self.P[self._labeled_index[positions]])


def start_fit(backend, data):
    """``(problem, state, progress)`` of a fit on the checked sparse ``data.P`` (see ``Backend.start_fit``)."""
    P = data.P
    dtype = P.dtype
    quality = None
    if data.strategy == "calibration":  # rounded to dtype, as C holds it
        quality = sparse_classifier_quality(P, data.labels, data.classifier_names).astype(dtype).astype(np.float64)
    values = stored_confidence(P, data.labels, data.strategy, data.confidence_alpha, quality, data.confidence)
    if data.lam == 0:
        C = _confidence_matrix(P, values if values.size else np.ones(P.nnz, dtype=dtype))
        check_solvable(C, data.lam, data.latent_dim, axis=0)
        check_solvable(C, data.lam, data.latent_dim, axis=1)
    by_instance, by_classifier = layouts(P, values)
    del values
    n, m = P.shape
    progress = data.resume or initial_fit_state(data.rng, n, m, data.latent_dim, dtype)
    labeled = data.labeled
    problem = SparseProblem(backend, P, by_instance, by_classifier, data.lam, data.settings, labeled,
                            data.labels[labeled], data.omega, quality)
    state = State(progress.X, progress.Y, progress.w, progress.b)
    progress.X = progress.Y = None  # the state owns the factors
    return problem, state, progress


def fold_in_block(X, rows, C, lam):
    """Instance factors (d, rows) of a checked CSR block of new instances with confidences C (its pattern)."""
    entries = Entries(rows.indptr, rows.indices, rows.data, C.data.astype(rows.dtype))
    return solve_sparse_instances(X, entries, lam).T
