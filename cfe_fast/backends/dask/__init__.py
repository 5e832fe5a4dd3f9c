"""Dask backend: CF-Ensemble on data chunked along instances, in memory or out of core.

P (= R^T) and C are instance-major dask arrays (n, m) chunked along
instances only; they may live in worker memory or be lazy (a Zarr store, a
``.npy`` memmap via :func:`.data.from_npy`), so R and C never have to fit in
the cluster's memory. A sweep is one task per chunk running the Numba
kernels (see :mod:`.engine`); in-memory kernels of the contract are the
Numba backend's. With ``client=None`` a fit runs on a ``LocalCluster`` of
its own and brings its results back as NumPy arrays. A sparse P (a
``scipy.sparse`` matrix, or a dask array whose chunks are) is fitted on its
stored entries by the Numba sparse kernels, chunk by chunk (:mod:`.sparse`).
"""

import functools

import dask.array as da
import numpy as np

from ..._validation import check_labels, check_solvable
from ...core.confidence import confidence_chunk
from ...core.sparse import has_sparse_chunks, is_sparse
from ...training.state import FitState, State, initial_instance_factors
from .. import CAPABILITIES
from ..numba import NumbaBackend
from ..shared_gram import starts_at_fixed_point
from . import sparse
from .data import (
    as_instance_chunks,
    calibration_quality,
    check_confidence,
    check_probabilities,
    client_scope,
    count_missing,
)
from .engine import DaskEngine, fold_in_chunks
from .problem import DaskProblem


class DaskBackend(NumbaBackend):
    """The contract on a dask cluster; the kernels on in-memory arrays are the Numba backend's."""

    name = "dask"
    capabilities = CAPABILITIES["dask"]

    def session(self, client):
        """A context yielding ``client``, or the client of a new ``LocalCluster`` closed on exit."""
        return client_scope(client)

    def gather(self, client, *arrays):
        """Dask arrays computed to NumPy (before the fit's own cluster closes)."""
        return tuple(client.compute(list(arrays), sync=True))

    def check_new_data(self, X, dtype):
        """Lazy checked chunks of a dask array (dense, or of sparse chunks); in-memory input is checked in memory."""
        if has_sparse_chunks(X):
            return sparse.checked_sparse_chunks(X, dtype)
        if not isinstance(X, da.Array):
            return super().check_new_data(X, dtype)
        return check_probabilities(as_instance_chunks(X, "X", None, dtype), "X", missing=True)

    def check_data(self, X, y, dtype, client=None, names=None):
        """P as instance chunks on the cluster (CSR chunks for a sparse X or a dask array of sparse chunks:
        :func:`.sparse.sparse_chunks`) and the labels."""
        if is_sparse(X) or has_sparse_chunks(X):
            labels = check_labels(y, X.shape[0], "y")
            return sparse.sparse_chunks(X, client, dtype, names), labels
        P = check_probabilities(as_instance_chunks(X, "X", client, dtype), "X", missing=True, names=names)
        return P, check_labels(y, P.shape[0], "y")

    def start_fit(self, data):
        """The problem on a :class:`DaskEngine`; unobserved entries (NaN in P, or not stored in its CSR
        chunks: :class:`.sparse.SparseDaskEngine`) get confidence 0 chunk by chunk."""
        P, labels, d = data.P, data.labels, data.latent_dim
        if has_sparse_chunks(P):
            engine, quality = sparse.engine_of_fit(data.client, data, data.omega)
            n_observed = engine.n_observed()
        else:
            engine, quality, n_observed = self._dense_engine(data)
        if starts_at_fixed_point(data.strategy, n_observed == P.size, data.lam):
            engine.init_optimal_factors(d)  # ALS's fixed point is known: start there, as in memory
        else:
            engine.init_instance_factors(data.rng, functools.partial(initial_instance_factors, d=d, dtype=P.dtype))
        labeled = data.labeled
        problem = DaskProblem(self, engine, data.settings, labeled, labels[labeled], data.omega, quality,
                              n_observed=n_observed)
        m = P.shape[1]
        progress = FitState(Y=None, X=None, w=np.full(m, 1.0 / m), b=0.0)
        return problem, State(None, None, progress.w, progress.b), progress

    @staticmethod
    def _dense_engine(data):
        """``(engine, quality, n_observed)`` of a fit on a dense dask P (NaN = unobserved)."""
        P, labels, lam, d = data.P, data.labels, data.lam, data.latent_dim
        n_missing = count_missing(P)
        quality = None
        if data.strategy is None:
            C = as_instance_chunks(data.confidence, "confidence", data.client, P.dtype)
            confidence = check_confidence(C, P, "confidence", has_missing=n_missing > 0)
        else:
            if data.strategy == "calibration":
                quality = calibration_quality(P, labels, data.classifier_names)
            confidence = functools.partial(confidence_chunk, strategy=data.strategy, alpha=data.confidence_alpha,
                                           quality=quality)
        engine = DaskEngine(data.client, P, labels, data.omega, lam, confidence, has_missing=n_missing > 0)
        check_solvable(engine.C, lam, d, axis=0)
        check_solvable(engine.C, lam, d, axis=1)
        return engine, quality, P.size - n_missing

    def fold_in_data(self, X, P, lam, confidence, dtype, values=None):
        """Lazy fold-in of a dask array P (in ``dtype`` already), one task per chunk of P; the Numba fold-in for NumPy input."""
        if not isinstance(P, da.Array):
            return super().fold_in_data(X, P, lam, confidence, dtype, values)
        Y = (sparse.fold_in_chunks if has_sparse_chunks(P) else fold_in_chunks)(X, P, lam, confidence).T
        return Y if values is None else values(Y)


BACKEND = DaskBackend()
