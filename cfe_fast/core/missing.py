"""Unobserved entries of P (NaN): where they are, and the values the kernels read there instead.

An unobserved entry has confidence 0 (docs/method.md, "Missing entries"):
the kernels weight every entry by its confidence, so its value never reaches
a result. It is replaced by :data:`FILL_VALUE` only so that no NaN reaches
the kernels (0 x NaN is NaN). The functions work on instance-major blocks
(rows are instances) and on whole matrices alike; a mask exists only where
something is missing, so complete data cost one reduction and no copy.
"""

import numpy as np

#: the value an unobserved entry of P holds in the kernels (any value gives the same results)
FILL_VALUE = 0.5


def has_missing(P):
    """Whether the NumPy array P holds a NaN (one reduction: NaN propagates through ``min``)."""
    return bool(P.size) and bool(np.isnan(P.min()))


def missing_entries(P):
    """The mask of P's NaN entries, or None when there is none."""
    return np.isnan(P) if has_missing(P) else None


def fill_missing(P, missing):
    """P with :data:`FILL_VALUE` at the ``missing`` entries (a copy); P itself when ``missing`` is None."""
    return P if missing is None else np.where(missing, np.asarray(FILL_VALUE, dtype=P.dtype), P)


def zero_missing(C, missing):
    """C with 0 at the ``missing`` entries (a copy); C itself when ``missing`` is None."""
    return C if missing is None else np.where(missing, np.zeros((), dtype=C.dtype), C)


def filled_chunk(P_chunk):
    """A block of P with :data:`FILL_VALUE` where it is NaN (the block itself when complete)."""
    return fill_missing(P_chunk, missing_entries(P_chunk))


def mean_of_observed(P, axis=1):
    """Mean of P's observed entries along ``axis`` (default: over the classifiers of instance-major P).

    A row with no observed entry has the mean :data:`FILL_VALUE` (no
    information). Complete NumPy input gives ``P.mean(axis)`` exactly; a dask
    array stays lazy.
    """
    if isinstance(P, np.ndarray) and not has_missing(P):
        return P.mean(axis=axis)
    observed = ~np.isnan(P)
    counts = observed.sum(axis=axis)
    sums = np.where(observed, P, 0).sum(axis=axis, dtype=np.float64)
    return np.where(counts > 0, sums / np.maximum(counts, 1), FILL_VALUE)
