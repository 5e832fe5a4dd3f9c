"""What the in-memory backends (NumPy, Numba, CuPy) share: data checks, the start of a fit, the fold-in."""

from contextlib import contextmanager, nullcontext

import numpy as np
from scipy.sparse import csr_array

from .._float64 import blocks
from .._validation import (
    as_float_array,
    check_confidence,
    check_labels,
    check_observed_classifiers,
    check_probabilities,
    check_probability_range,
    check_solvable,
    check_solvable_counts,
)
from ..core.confidence import confidence_rule, instance_major_confidence
from ..core.missing import fill_missing, filled_chunk, has_missing, missing_entries
from ..core.sparse import (
    check_observed_sparse_classifiers,
    check_sparse_probabilities,
    is_sparse,
    row_means,
    sparse_classifier_quality,
    stored_confidence,
)
from ..training.problem import InMemoryProblem
from . import shared_gram
from ..training.state import State, initial_fit_state


@contextmanager
def located(offset):
    """Re-raise an error about a block of new instances with the block's position in the data."""
    try:
        yield
    except ValueError as error:
        if offset == 0:
            raise
        raise type(error)(f"{error} (index within the block of new instances starting at row {offset})") from None


def start_state(data, P, complete):
    """The :class:`~cfe_fast.training.state.FitState` a new fit on instance-major P (n, m) starts from.

    Where every confidence is 1 (the "uniform" strategy on ``complete`` data)
    and lam > 0, ALS's fixed point is known (:func:`.shared_gram.optimal_start`):
    Y0 is that; else Y0 is drawn from the model's Generator.
    """
    n, m = P.shape
    Y0 = shared_gram.optimal_start(P, data.latent_dim, data.lam) \
        if shared_gram.starts_at_fixed_point(data.strategy, complete, data.lam) else None
    return initial_fit_state(data.rng, n, m, data.latent_dim, P.dtype, Y0)


class InMemoryBackend:
    """Base of the backends whose data are NumPy arrays (placed on a device by :meth:`place`)."""

    #: whether the kernels take a :class:`~cfe_fast.core.confidence.ConfidenceRule` for C (see :meth:`start_fit`)
    confidence_rules = False

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
        """Checked instance-major probabilities (n_new, m) for a fold-in (NaN = unobserved); float input is not copied.

        :meth:`fold_in_data` converts each block of rows to ``dtype`` (C-contiguous),
        so X is never copied whole (an F-ordered X such as a DataFrame's
        values, float64 rows for a float32 model). A sparse X gives the checked
        CSR of :func:`~cfe_fast.core.sparse.check_sparse_probabilities` (for the
        backends whose capabilities take one).
        """
        if is_sparse(X):
            return check_sparse_probabilities(X, "X")
        return check_probabilities(X, "X", missing=True)

    def check_data(self, X, y, dtype, client=None, names=None):
        """P (n, m) C-contiguous in ``dtype`` (NaN = unobserved) and labels (n,) NaN where unlabeled.

        Label errors are reported before range errors of P; a classifier
        with no observed entry is refused, by its name in ``names`` if given.
        A sparse X gives the checked CSR P (in ``dtype``) of
        :func:`~cfe_fast.core.sparse.check_sparse_probabilities`.
        """
        if is_sparse(X):
            labels = check_labels(y, X.shape[0], "y")
            return check_observed_sparse_classifiers(check_sparse_probabilities(X, "X", dtype), names), labels
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
        A backend with ``confidence_rules`` (kernels that compute each block
        of C from R) gets a named strategy's C as a
        :class:`~cfe_fast.core.confidence.ConfidenceRule` where one can
        stand for it (:func:`~cfe_fast.core.confidence.confidence_rule`) and
        lam > 0, so C is never stored whole; otherwise C is an array.
        """
        missing = missing_entries(data.P)
        P = data.P
        dtype = P.dtype
        uniform = data.strategy == "uniform" and missing is None  # confidence 1 everywhere: one shared Gram
        rule = None
        if not uniform and self.confidence_rules and data.lam > 0:  # lam = 0 checks every system's C: stored
            rule = confidence_rule(P, data.labels, data.strategy, data.confidence_alpha, dtype, missing,
                                   data.classifier_names)
        if uniform:  # no C at all (None in the contract)
            C, quality = None, None
            check_solvable_counts(None, P.shape[1], data.lam, data.latent_dim, axis=0)
            check_solvable_counts(None, P.shape[0], data.lam, data.latent_dim, axis=1)
        elif rule is not None:
            C, quality = rule, rule.quality
        else:
            if data.strategy is None:
                Ct = np.ascontiguousarray(check_confidence(data.confidence, P.shape, "confidence", dtype, missing))
                quality = None
            else:
                Ct, quality = instance_major_confidence(P, data.labels, data.strategy, data.confidence_alpha, dtype,
                                                        data.classifier_names)
            check_solvable(Ct.T, data.lam, data.latent_dim, axis=0)
            check_solvable(Ct.T, data.lam, data.latent_dim, axis=1)
            C = Ct.T  # (m, n) view of the instance-major array
        P = fill_missing(P, missing)
        n, m = P.shape
        progress = data.resume or start_state(data, P, complete=missing is None)
        labeled = data.labeled
        # R, C as (m, n) views of the instance-major arrays; a GPU backend moves them to the device once
        R, C, Y, X, labeled, y_labeled, omega = self.place(P.T, C, progress.Y, progress.X, labeled,
                                                           data.labels[labeled], data.omega)
        progress.X = progress.Y = None  # the state owns the factors: the initial Y is freed once replaced
        problem = InMemoryProblem(self, R, C, data.lam, data.settings, labeled, y_labeled, omega, quality,
                                  missing=None if missing is None else missing.T)
        return problem, State(X, Y, progress.w, progress.b), progress

    def fold_in_data(self, X, P, lam, confidence, dtype, values=None):
        """Instance factors (d, n_new) of checked instance-major probabilities P (n_new, m), NaN = unobserved
        (or a checked sparse CSR P, stored entries = observed, where the backend takes one), or their ``values``.

        The instances are folded in blocks of :func:`~cfe_fast._float64.blocks`
        (about ``config.FLOAT64_BLOCK_BYTES`` of P each); each block's results
        go into one preallocated output. Every instance's system is solved on
        its own; only the order of the floating-point sums of a kernel's
        products over a block's rows depends on the blocks (a few units in the
        last place).
        """
        n, d = P.shape[0], X.shape[0]
        out = None
        sparse = is_sparse(P)
        for start, stop in blocks(n, -(-P.nnz // n) if sparse else P.shape[1]):  # sparse: stored entries per row
            if sparse:
                rows = P[start:stop].astype(dtype)
                C = confidence(rows)
            else:
                rows = np.ascontiguousarray(P[start:stop], dtype=dtype)
                C = np.ascontiguousarray(confidence(rows), dtype=dtype)
                if np.all(C == 1):  # every system shares one Gram (C None in the contract)
                    C = None
            with located(start):
                if C is None:
                    check_solvable_counts(None, P.shape[1], lam, d, axis=0)
                else:
                    check_solvable(C.T, lam, d, axis=0)
                Y = self.fold_in_block(X, rows, C, lam)
            result = values(Y) if values is not None else Y.T
            if out is None:  # the backend's result type, for the whole of P
                out = np.empty((n, *result.shape[1:]), dtype=result.dtype)
            out[start:stop] = result
        return out if values is not None else out.T

    def fold_in_block(self, X, rows, C, lam):
        """Instance factors (d, rows) of a block of new instances (rows, m), confidences C (None: 1 everywhere)."""
        return self.fold_in(X, filled_chunk(rows).T, None if C is None else C.T, lam)


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

    def instance_solves(self, X, R, C, lam, w, *, with_loss=False):
        return self.kernels.instance_solves(X, R, C, lam, w, with_loss=with_loss)

    def classifier_gram_terms(self, Y, R, C):
        return self.kernels.classifier_gram_terms(Y, R, C)

    def reconstruction_gradient(self, X, Y, R, C, lam):
        return self.kernels.reconstruction_gradient(X, Y, R, C, lam)


def sparse_confidences(data):
    """``(values, quality)`` of a fit on the checked sparse CSR ``data.P``: the confidences (nnz,) of its
    stored entries in P's dtype (empty for "uniform": 1 everywhere) and the "calibration" quality (or None).

    With ``lam == 0`` an instance or classifier with no positive confidence is refused (its system is singular).
    """
    P = data.P
    quality = None
    if data.strategy == "calibration":  # rounded to P's dtype, as a dense C holds it
        quality = sparse_classifier_quality(P, data.labels, data.classifier_names).astype(P.dtype).astype(np.float64)
    values = stored_confidence(P, data.labels, data.strategy, data.confidence_alpha, quality, data.confidence)
    if data.lam == 0:
        C = csr_array((values if values.size else np.ones(P.nnz, dtype=P.dtype), P.indices, P.indptr),
                      shape=P.shape).T  # R's layout (m, n)
        check_solvable(C, data.lam, data.latent_dim, axis=0)
        check_solvable(C, data.lam, data.latent_dim, axis=1)
    return values, quality


class SparseProblem(InMemoryProblem):
    """:class:`~cfe_fast.training.problem.Problem` of the ALS trainer on the observed entries of a sparse P;
    a backend's subclass runs the half-steps and the loss with its sparse kernels.

    Parameters
    ----------
    backend
        Its aggregator kernel serves the evaluator.
    P : scipy.sparse.csr_array (n, m)
        The checked probabilities (stored = observed), on the host.
    lam, settings, labeled, y_labeled, omega, classifier_quality
        As for :class:`~cfe_fast.training.problem.InMemoryProblem`.
    """

    def __init__(self, backend, P, lam, settings, labeled, y_labeled, omega, classifier_quality=None):
        self.backend, self.lam, self.P = backend, lam, P
        self.classifier_quality = classifier_quality
        n, m = P.shape
        self._init_weights(settings, labeled, y_labeled, omega, (m, n), n_observed=P.nnz)
        self._labeled_index = np.flatnonzero(self.backend.to_host(labeled))

    def labeled_mean_of_R(self, positions):
        """The mean of the observed entries of the labeled instances at ``positions`` (labeled order)."""
        return row_means(self.P[self._labeled_index[positions]])
