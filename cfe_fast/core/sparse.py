"""Sparse P (``scipy.sparse``): the stored entries are the observed ones, every other entry is unobserved.

A sparse P means what the dense P with NaN at its unstored entries means
(docs/method.md, "Missing entries"): an unstored entry, and a stored NaN,
has confidence 0 and drops out of every sum. The kernels read the observed
entries in two compressed layouts, by instance (CSR of the instance-major
P, for the instance step) and by classifier (CSC, for the classifier step),
each with its probabilities and confidences (:class:`Entries`), so a fit
holds O(nnz) values and never an (n, m) array.
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse

from .._float64 import blocks
from .._validation import refuse_empty_classifiers
from .confidence import entry_confidence, quality_from_sums
from .missing import FILL_VALUE


class Entries(NamedTuple):
    """The observed entries of P in one compressed layout.

    Entry k belongs to major line ``j`` (an instance for the CSR layout, a
    classifier for CSC) with ``pointers[j] <= k < pointers[j + 1]`` and to
    the minor line ``indices[k]``; ``values[k]`` is its probability and
    ``confidence[k]`` its confidence; an empty ``confidence`` means
    confidence 1 at every entry (the "uniform" strategy, not stored).
    """

    pointers: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    confidence: np.ndarray


def is_sparse(X):
    """Whether X is a ``scipy.sparse`` matrix or array."""
    return scipy.sparse.issparse(X)


def has_sparse_chunks(X):
    """Whether X is a dask array whose chunks are ``scipy.sparse`` matrices (dask is not imported)."""
    return hasattr(X, "chunks") and scipy.sparse.issparse(getattr(X, "_meta", None))


def majors(pointers):
    """The major line (row of CSR, column of CSC) of every entry."""
    return np.repeat(np.arange(pointers.size - 1), np.diff(pointers))


def major_of(pointers, k):
    """The major line of entry k."""
    return int(np.searchsorted(pointers, k, side="right")) - 1


def check_sparse_probabilities(X, name="X", dtype=None, first_row=0):
    """Checked sparse probabilities: a canonical ``csr_array`` (n, m) whose stored entries are the observed ones.

    Duplicate entries are summed (scipy's meaning of them) and the column
    indices sorted, on a copy where X is not already so; stored NaN values
    (unobserved) are dropped. Stored values must be finite and in [0, 1]:
    errors name the first offending row (counted from ``first_row``, the
    position of X's first row in the data it is a block of) and column.
    X is never modified.
    """
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    P = scipy.sparse.csr_array(X)
    if dtype is None:
        dtype = P.dtype if P.dtype in (np.float32, np.float64) else np.float64
    P = P.astype(dtype, copy=False)
    if not P.has_canonical_format:
        P = P.copy()  # canonicalising works in place, and P may share X's arrays
        P.sum_duplicates()
    if 0 in P.shape:
        raise ValueError(f"{name} is empty: {P.shape[0]} sample(s), {P.shape[1]} feature(s) (shape={P.shape}) "
                         "while a minimum of 1 is required.")
    if P.nnz and np.isnan(P.data.min()):  # NaN propagates: a mask only where some value is NaN
        P = keep_entries(P, ~np.isnan(P.data))
    if P.nnz and not (P.data.min() >= 0 and P.data.max() <= 1):
        bad = ~np.isfinite(P.data) | (P.data < 0) | (P.data > 1)
        k = int(np.argmax(bad))
        row, value = first_row + major_of(P.indptr, k), P.data[k]
        why = "is infinite (an unobserved entry is NaN or not stored)" if np.isinf(value) else \
            "is outside [0, 1]: it must hold probabilities"
        raise ValueError(f"{name} at row {row}, column {P.indices[k]} holds {value:g}, which {why}; "
                         f"{int(np.count_nonzero(bad))} such entries")
    return P


def keep_entries(P, keep):
    """The canonical CSR P with only the stored entries where the mask ``keep`` (nnz,) holds (a copy)."""
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept entries before each entry
    pointers = kept_before[P.indptr].astype(P.indptr.dtype)
    return scipy.sparse.csr_array((P.data[keep], P.indices[keep], pointers), shape=P.shape)


def dense_with_nan(P):
    """The checked CSR P as a dense float64 array (n, m), NaN at its unstored entries (for a few rows)."""
    out = np.full(P.shape, np.nan)
    out[majors(P.indptr), P.indices] = P.data
    return out


def check_observed_sparse_classifiers(P, names=None, name="X"):
    """Refuse a classifier (column of the checked CSR P) with no stored entry, naming it."""
    refuse_empty_classifiers(np.bincount(P.indices, minlength=P.shape[1]) == 0, names, name)
    return P


def row_means(P):
    """The mean of each row's stored entries of the checked CSR P, :data:`FILL_VALUE` where a row stores none
    (lazily, chunk by chunk, for a dask array of checked CSR chunks)."""
    if has_sparse_chunks(P):
        return P.map_blocks(row_means, drop_axis=1, dtype=np.float64, meta=np.empty(0))
    counts = np.diff(P.indptr)
    stored = counts > 0
    sums = np.zeros(P.shape[0])
    # the rows that store entries are consecutive runs of P.data: one reduction each, in float64 a block
    # of rows at a time (a cast of the whole P.data would be a temporary of its size)
    for s, e in blocks(P.shape[0], -(-P.nnz // P.shape[0])):
        lo, hi = P.indptr[s], P.indptr[e]
        if hi > lo:
            starts = P.indptr[s:e][stored[s:e]] - lo
            sums[s:e][stored[s:e]] = np.add.reduceat(P.data[lo:hi].astype(np.float64), starts)
    return np.where(stored, sums / np.maximum(counts, 1), FILL_VALUE)


def confidence_at(C, P, name="confidence", dtype=None, first_row=0):
    """The values (nnz,) of a user's confidence matrix (n, m) at the stored entries of the checked CSR P.

    C may be dense or sparse; an entry a sparse C does not store has
    confidence 0. Its values at the observed entries must be finite and
    non-negative (errors name the row, counted from ``first_row``, and the
    column); elsewhere they are ignored.
    """
    C = C if is_sparse(C) else np.asarray(C)
    if C.shape != P.shape:
        raise ValueError(f"{name} has shape {C.shape}, expected {P.shape} (the shape of X)")
    if C.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {C.dtype}")
    rows = majors(P.indptr)
    if is_sparse(C):
        C = scipy.sparse.csr_array(C).copy()
        C.sum_duplicates()
        n_columns = np.int64(P.shape[1])
        keys = majors(C.indptr) * n_columns + C.indices  # increasing: canonical CSR is sorted by row, then column
        wanted = rows * n_columns + P.indices
        at = np.minimum(np.searchsorted(keys, wanted), max(keys.size - 1, 0))
        stored = (keys[at] == wanted) if keys.size else np.zeros(wanted.size, bool)
        values = np.where(stored, C.data[at] if keys.size else 0.0, 0.0)
    else:
        values = np.asarray(C)[rows, P.indices]
    values = np.asarray(values, dtype=dtype or P.dtype)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{name} at row {first_row + rows[k]}, column {P.indices[k]} holds {values[k]:g}; it must be "
                         "finite and non-negative at every observed entry")
    return values


def sparse_classifier_quality(P, labels, names=None):
    """Per classifier of the checked CSR P: 1 - Brier score over its stored entries on labeled instances, floored."""
    if np.isnan(labels).all():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    return quality_from_sums(*quality_sums(P, labels), names)


def quality_sums(P, labels):
    """Per classifier of the checked CSR P (a block of rows, ``labels`` theirs): the sums of squared errors
    over its stored entries on labeled instances, and their counts (m,) each; sums over blocks of rows add up."""
    y = labels[majors(P.indptr)]
    scored = ~np.isnan(y)
    squared = (P.data[scored].astype(np.float64) - y[scored]) ** 2
    m = P.shape[1]
    return (np.bincount(P.indices[scored], weights=squared, minlength=m),
            np.bincount(P.indices[scored], minlength=m))


def stored_confidence(P, labels, strategy, alpha=1.0, quality=None, confidence=None, first_row=0):
    """The confidence (nnz,) in P's dtype of the stored entries of the checked CSR P (a fit's, or a block of
    its rows, counted from ``first_row``): a user's ``confidence`` matrix read there (``strategy`` None,
    :func:`confidence_at`), empty for "uniform" (1 everywhere, not stored), else the named strategy's
    (:func:`confidence_values`; ``labels`` (n,) NaN where unlabeled)."""
    if strategy is None:
        return confidence_at(confidence, P, "confidence", P.dtype, first_row)
    if strategy == "uniform":
        return np.empty(0, dtype=P.dtype)
    return confidence_values(P, labels, strategy, alpha, quality)


def confidence_values(P, labels, strategy, alpha=1.0, quality=None, dtype=None):
    """The confidence (nnz,) in ``dtype`` (P's by default) of each stored entry of the checked CSR P for a
    named strategy (:func:`~.confidence.entry_confidence`); ``labels`` (n,) NaN where unlabeled, or None.

    Computed in blocks of entries, so its float64 temporaries stay small.
    """
    out = np.empty(P.nnz, dtype=dtype or P.dtype)
    for s, e in blocks(P.nnz, 4):  # a few float64 temporaries per entry
        rows = np.searchsorted(P.indptr, np.arange(s, e), side="right") - 1 if labels is not None else None
        out[s:e] = entry_confidence(P.data[s:e], None if labels is None else labels[rows], strategy, alpha,
                                    None if quality is None else quality[P.indices[s:e]])
    return out


def sparse_confidence_block(P_block, labels, strategy, alpha=1.0, quality=None):
    """The confidence of a CSR block of rows: a CSR block with its pattern (the fold-in's blocks)."""
    values = confidence_values(P_block, labels, strategy, alpha, quality)
    return scipy.sparse.csr_array((values, P_block.indices, P_block.indptr), shape=P_block.shape)
