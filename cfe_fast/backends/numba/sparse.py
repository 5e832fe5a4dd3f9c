"""The Numba backend on a sparse P: a fit's problem on the observed entries (every trainer) and the fold-in.

The fit holds P's observed entries by instance and by classifier with their
confidences (:func:`cfe_fast.core.sparse.layouts`) and the factors: O(nnz +
(n + m) d) memory; no (n, m) array is formed. Its kernels are those of
:mod:`.sparse_steps` (and, for the "exact" and "joint" trainers, of
:mod:`.sparse_objective`); the aggregator reads the labeled instances'
factors only, as on dense data.
"""

import numpy as np

from ...core.sparse import Entries
from ...training.state import State
from ..in_memory import SparseProblem, sparse_confidences, start_state
from .losses import normalised_loss
from .sparse_objective import sparse_labeled_solves, sparse_reconstruction_gradient
from .sparse_steps import (
    by_classifier,
    solve_sparse_classifiers,
    solve_sparse_instances,
    sparse_classifier_sums,
    sparse_squared_residual,
)


def layouts(P, C_values):
    """(by instance, by classifier) :class:`~cfe_fast.core.sparse.Entries` of the checked CSR P with
    confidences ``C_values`` (in CSR order, or empty for confidence 1)."""
    by_instance = Entries(P.indptr, P.indices, P.data, C_values)
    return by_instance, by_classifier(by_instance, P.shape[1])


class NumbaSparseProblem(SparseProblem):
    """:class:`~cfe_fast.backends.in_memory.SparseProblem` with the kernels of :mod:`.sparse_steps` on
    ``by_instance`` and ``by_classifier``, P's entries with their confidences by instance (CSR) and by
    classifier (CSC)."""

    def __init__(self, backend, P, by_instance, by_classifier, lam, settings, labeled, y_labeled, omega,
                 classifier_quality=None):
        super().__init__(backend, P, lam, settings, labeled, y_labeled, omega, classifier_quality)
        self.by_instance, self.by_classifier = by_instance, by_classifier

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

    def instance_solves(self, X, w):
        """The exact trainer's instance block: Y of the instance half-step, A_i^-1 X w of the labeled instances
        (float64) and L_rec at (X, Y) normalised by m n (see :meth:`~cfe_fast.training.problem.Problem.instance_solves`)."""
        Yt, sse = solve_sparse_instances(X, self.by_instance, self.lam, loss=True)
        v = np.asarray(X, dtype=np.float64) @ w
        Zt = sparse_labeled_solves(X, self.by_instance, self.lam, v, self._labeled_index)
        return Yt.T, Zt.T, normalised_loss(sse, X, Yt, self.lam)

    def classifier_gram_terms(self, Y):
        """Per-classifier Grams (m, d, d) and right-hand sides (m, d) over the observed entries, float64."""
        G, B = sparse_classifier_sums(np.ascontiguousarray(Y.T), self.by_classifier)
        d = B.shape[0]
        lower = np.tril_indices(d)
        full = np.empty((G.shape[1], d, d))
        full[:, lower[0], lower[1]] = G.T  # the packed rows of the lower triangle (row-major, tri(a) + b)
        full[:, lower[1], lower[0]] = G.T
        return full, B.T

    def reconstruction_gradient(self, X, Y):
        """(dL_rec/dX, dL_rec/dY) at (X, Y), float64, over the observed entries."""
        gX, gYt = sparse_reconstruction_gradient(X, Y.T, self.by_instance, self.by_classifier, self.lam)
        m, n = self.shape
        return self._normalised(gX / (m * n)), self._normalised(gYt.T / (m * n))


def start_fit(backend, data):
    """``(problem, state, progress)`` of a fit on the checked sparse ``data.P`` (see ``Backend.start_fit``)."""
    P = data.P
    values, quality = sparse_confidences(data)
    by_instance, by_classifier = layouts(P, values)
    del values
    n, m = P.shape
    progress = data.resume or start_state(data, P, complete=P.nnz == n * m)
    labeled = data.labeled
    problem = NumbaSparseProblem(backend, P, by_instance, by_classifier, data.lam, data.settings, labeled,
                                 data.labels[labeled], data.omega, quality)
    state = State(progress.X, progress.Y, progress.w, progress.b)
    progress.X = progress.Y = None  # the state owns the factors
    return problem, state, progress


def fold_in_block(X, rows, C, lam):
    """Instance factors (d, rows) of a checked CSR block of new instances with confidences C (its pattern)."""
    entries = Entries(rows.indptr, rows.indices, rows.data, C.data.astype(rows.dtype))
    return solve_sparse_instances(X, entries, lam).T
