"""The Dask backend on a sparse P: chunks of instances held as ``scipy.sparse`` CSR, the Numba sparse kernels per chunk.

P is a dask array (n, m) whose chunks, along instances only, are canonical
CSR arrays (stored entries = observed, as
:func:`~cfe_fast.core.sparse.check_sparse_probabilities` makes them): a
``scipy.sparse`` P split here into chunks of about
``config.DASK_CHUNK_BYTES`` of stored entries and sent to the cluster once,
or a user's dask array of sparse chunks, checked chunk by chunk as it is
read (it may stay lazy). :class:`SparseDaskEngine` runs the sweep of
:class:`~.engine.DaskEngine` with the kernels of
:mod:`cfe_fast.backends.numba.sparse_steps` on every chunk: the chunk's
instance systems over its observed entries, then its partial classifier
Grams over the same entries by classifier, nnz d^2 flops a sweep in all.
A chunk's confidences are computed in its task from the chunk (or read
from a user's confidence at its stored entries) and never kept. Memory: P's
chunks (O(nnz)) and Y (n d) on the workers, the classifier Grams (m d^2)
on the client.
"""

import functools
import operator

import dask
import dask.array as da
import numpy as np
import scipy.sparse

from ... import config
from ..._float64 import squared_norm
from ..._validation import check_solvable, check_solvable_counts, refuse_empty_classifiers
from ...core.confidence import quality_from_sums
from ...core.sparse import (
    Entries,
    check_observed_sparse_classifiers,
    check_sparse_probabilities,
    is_sparse,
    quality_sums,
    row_means,
    stored_confidence,
)
from ..in_memory import located
from ..numba.sparse import fold_in_block
from ..numba.sparse_steps import by_classifier, solve_sparse_instances, sparse_classifier_sums
from ..shared_gram import project_rows
from .data import on_cluster
from .engine import DaskEngine, _located, _worker_threads, redrawn


def _meta(m, dtype):
    """An empty CSR chunk: the ``meta`` of a dask array of CSR chunks."""
    return scipy.sparse.csr_array((0, m), dtype=dtype)


def row_spans(pointers, entries_per_chunk):
    """(start, stop) of consecutive rows of a CSR matrix (its ``pointers``), each span holding about
    ``entries_per_chunk`` stored entries (at least one row)."""
    n = pointers.size - 1
    cuts = np.searchsorted(pointers, np.arange(entries_per_chunk, pointers[-1], entries_per_chunk), side="right") - 1
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, n), [n]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def sparse_chunks(X, client, dtype, names=None):
    """The checked sparse P of a fit as a dask array of CSR chunks along instances.

    A ``scipy.sparse`` X is checked in memory and split into chunks of about
    ``config.DASK_CHUNK_BYTES`` of stored entries (values and indices), held
    on the cluster; a dask array of sparse chunks keeps its row chunks and
    is checked in one streaming pass (errors name the row in X and the
    column). A classifier with no stored entry is refused, by its name in
    ``names`` if given.
    """
    if is_sparse(X):
        P = check_observed_sparse_classifiers(check_sparse_probabilities(X, "X", dtype), names)
        entry_bytes = P.dtype.itemsize + P.indices.dtype.itemsize
        spans = row_spans(P.indptr, max(1, config.DASK_CHUNK_BYTES // entry_bytes))
        return on_cluster(client, [P[s:e] for s, e in spans], meta=_meta(P.shape[1], P.dtype))
    P = checked_sparse_chunks(X, dtype)
    counts = dask.compute(*[dask.delayed(_column_counts)(chunk) for chunk in P.to_delayed().ravel()])
    refuse_empty_classifiers(np.sum(counts, axis=0) == 0, names, "X")
    return P


def checked_sparse_chunks(X, dtype):
    """A dask array X of sparse chunks with every chunk checked as it is read, lazily: canonical CSR in
    ``dtype``, NaN (unobserved) dropped, stored values finite and in [0, 1] (errors name X's row and column)."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {X.shape}")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    dtype = np.dtype(dtype or (X.dtype if X.dtype in (np.float32, np.float64) else np.float64))
    return X.map_blocks(_checked_chunk, dtype, dtype=dtype, meta=_meta(X.shape[1], dtype))


def _checked_chunk(chunk, dtype, block_info=None):
    return check_sparse_probabilities(chunk, "X", dtype, first_row=block_info[0]["array-location"][0][0])


def _column_counts(P_chunk):
    return np.bincount(P_chunk.indices, minlength=P_chunk.shape[1])


def _spans(P):
    offsets = np.concatenate([[0], np.cumsum(P.chunks[0])]).tolist()
    return list(zip(offsets[:-1], offsets[1:]))


def _each_chunk(function, P, *per_chunk):
    """``function(P_chunk, *values)`` of every chunk of P, computed: ``per_chunk`` are sequences of values,
    one per chunk."""
    chunks = P.to_delayed().ravel()
    return dask.compute(*[dask.delayed(function)(chunk, *values) for chunk, *values in zip(chunks, *per_chunk)])


def calibration_quality(P, labels, names=None):
    """Per classifier quality of the "calibration" strategy from per-chunk sums over the stored entries."""
    if np.isnan(labels).all():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    sums = _each_chunk(quality_sums, P, [labels[s:e] for s, e in _spans(P)])
    return quality_from_sums(np.sum([s for s, _ in sums], axis=0), np.sum([c for _, c in sums], axis=0), names)


def confidence_chunks(C, P, client):
    """A user's confidence matrix (n, m): dense or sparse, in memory or a dask array, chunked like P."""
    if not isinstance(C, da.Array):
        C = scipy.sparse.csr_array(C) if is_sparse(C) else np.asarray(C)
    if C.shape != P.shape:
        raise ValueError(f"confidence has shape {C.shape}, expected {P.shape} (the shape of X)")
    if isinstance(C, da.Array):
        return C.rechunk((P.chunks[0], -1))
    return on_cluster(client, [C[s:e] for s, e in _spans(P)], meta=_meta(0, C.dtype) if is_sparse(C) else None)


def _positive_counts(P_chunk, values):
    """Per instance (rows,) and per classifier (m,) of a chunk: its stored entries of positive confidence."""
    positive = values > 0 if values.size else np.ones(P_chunk.nnz, dtype=bool)
    rows = np.repeat(np.arange(P_chunk.shape[0]), np.diff(P_chunk.indptr))
    m = P_chunk.shape[1]
    return np.bincount(rows[positive], minlength=P_chunk.shape[0]), np.bincount(P_chunk.indices[positive],
                                                                                 minlength=m)


def _entries(P_chunk, values):
    return Entries(P_chunk.indptr, P_chunk.indices, P_chunk.data, values)


def _initial_chunk(bit_generator, state, draw, rows, P_chunk, values):
    """Pass 0: the chunk's rows of Y0 and their classifier Grams over its stored entries."""
    with _worker_threads():
        return sparse_classifier_sums(redrawn(bit_generator, state, draw, rows),
                                      by_classifier(_entries(P_chunk, values), P_chunk.shape[1]))


def _projected_chunk(projection, P_chunk, values):
    """Pass 0 from Y0 = P projection (the closed-form start): the Grams over the chunk's stored entries."""
    Yt = project_rows(P_chunk, projection)
    with _worker_threads():
        return sparse_classifier_sums(Yt, by_classifier(_entries(P_chunk, values), P_chunk.shape[1]))


def _sweep_chunk(X, P_chunk, values, labels, lam, offset):
    """The fused per-chunk pass on the stored entries: Y of the chunk, its Grams, loss partials, labeled rows."""
    entries = _entries(P_chunk, values)
    with _worker_threads():
        with _located(offset):
            Yt, sse = solve_sparse_instances(X, entries, lam, loss=True)
        G, B = sparse_classifier_sums(Yt, by_classifier(entries, P_chunk.shape[1]))
    return Yt, Yt[~np.isnan(labels)], (G, B, sse, squared_norm(Yt))


class SparseDaskEngine(DaskEngine):
    """:class:`~.engine.DaskEngine` on a dask array P of checked CSR chunks (stored entries = observed).

    ``confidence(P_chunk, labels_chunk, confidence=C_chunk, first_row=offset) -> values`` gives the
    confidences of a chunk's stored entries (a partial of
    :func:`~cfe_fast.core.sparse.stored_confidence`); ``user_confidence``
    is a user's confidence matrix chunked like P (:func:`confidence_chunks`), or None.
    """

    initial_task = staticmethod(_initial_chunk)
    projected_task = staticmethod(_projected_chunk)
    sweep_task = staticmethod(_sweep_chunk)

    def __init__(self, client, P, labels, omega, lam, confidence, user_confidence=None):
        self._user_confidence = user_confidence
        super().__init__(client, P, labels, omega, lam, confidence)

    def _chunk_inputs(self, P, labels_shared, confidence, has_missing):
        """The delayed CSR chunks of P and the delayed confidences of their stored entries."""
        self.C = None  # never formed: see check_solvable
        chunks = list(P.to_delayed().ravel())
        given = self._user_confidence
        given = [None] * len(chunks) if given is None else list(given.to_delayed().ravel())
        values = [dask.delayed(confidence)(chunk, labels, confidence=C, first_row=int(offset))
                  for chunk, labels, C, offset in zip(chunks, self._labels, given, self._offsets)]
        return chunks, values

    def check_solvable(self, latent_dim):
        """Refuse, where lam == 0, an instance or a classifier with no stored entry of positive confidence."""
        if self.lam > 0:
            return
        counts = self.client.compute([dask.delayed(_positive_counts)(P, C) for P, C in zip(self._P, self._C)],
                                     sync=True)
        check_solvable_counts(np.concatenate([rows for rows, _ in counts]), self.shape[1], self.lam, latent_dim, 0)
        check_solvable_counts(np.sum([columns for _, columns in counts], axis=0), self.shape[0], self.lam,
                              latent_dim, 1)

    def n_observed(self):
        """The number of stored (observed) entries of P."""
        return int(sum(self.client.compute([dask.delayed(operator.attrgetter("nnz"))(P) for P in self._P],
                                           sync=True)))

    def mean_of_rows(self, index):
        """The mean of the stored entries of each row of P at the sorted positions ``index``."""
        return row_means(scipy.sparse.csr_array(self.P[index].compute()))


def engine_of_fit(client, data, omega):
    """``(engine, quality)`` of a fit on the sparse ``data.P`` (a dask array of checked CSR chunks)."""
    P, labels = data.P, data.labels
    quality = None
    if data.strategy == "calibration":  # rounded to the data's dtype, as the in-memory fits hold it
        quality = calibration_quality(P, labels, data.classifier_names).astype(P.dtype).astype(np.float64)
    rule = functools.partial(stored_confidence, strategy=data.strategy, alpha=data.confidence_alpha, quality=quality)
    given = confidence_chunks(data.confidence, P, client) if data.strategy is None else None
    engine = SparseDaskEngine(client, P, labels, omega, data.lam, rule, given)
    engine.check_solvable(data.latent_dim)
    return engine, quality


def fold_in_chunks(X, P, lam, confidence):
    """Lazy inductive fold-in of a dask array P of checked CSR chunks: Y^T (n_new, d), one task per chunk;
    ``confidence(P_chunk) -> CSR`` is the label-free confidence at the chunk's stored entries."""
    X = np.ascontiguousarray(X, dtype=P.dtype)
    d = X.shape[0]
    return P.map_blocks(_fold_in_chunk, X, float(lam), confidence, chunks=(P.chunks[0], (d,)), dtype=P.dtype,
                        meta=np.empty((0, 0), dtype=P.dtype))


def _fold_in_chunk(P_chunk, X, lam, confidence, block_info=None):
    offset = block_info[0]["array-location"][0][0]
    C = confidence(P_chunk)
    with located(offset):
        check_solvable(C.T, lam, X.shape[0], axis=0)
    with _worker_threads():
        with _located(offset):
            return fold_in_block(X, P_chunk, C, lam).T
