"""float64 reductions of (possibly float32) factors, in bounded blocks.

Converting a float32 (d, n) factor to float64 as a whole doubles its bytes
(a fit's monitors and final probabilities would do so every iteration).
These helpers convert at most ``config.FLOAT64_BLOCK_BYTES`` at a time (:func:`blocks`
also serves other producers of float64 values, e.g. the initial factors); float64 arrays are
used as they are (no copy, no blocking), and non-NumPy arrays (dask) are
handed to their own ``astype``, which stays lazy.
"""

import numpy as np

from . import config


def blocks(count, width):
    """(start, stop) ranges over ``count`` items of ``width`` float64 values each, ~config.FLOAT64_BLOCK_BYTES per range."""
    step = max(1, config.FLOAT64_BLOCK_BYTES // (8 * max(width, 1)))
    return ((s, min(count, s + step)) for s in range(0, count, step))


def _blocked(F):
    """True where F is a NumPy array that is not float64 (it must be converted in blocks)."""
    return isinstance(F, np.ndarray) and F.dtype != np.float64


def matvec64(v, F):
    """``v @ F`` in float64 for v (d,) and F (d, n): (n,) float64."""
    v = np.asarray(v, dtype=np.float64)
    if not _blocked(F):
        return v @ F.astype(np.float64, copy=False)
    out = np.empty(F.shape[1])
    for s, e in blocks(F.shape[1], F.shape[0]):
        out[s:e] = v @ F[:, s:e].astype(np.float64)
    return out


def gram64(F):
    """``F @ F.T`` in float64 for F (d, n): (d, d), summed over column blocks in order."""
    if not _blocked(F):
        F = np.asarray(F, dtype=np.float64)
        return F @ F.T
    G = np.zeros((F.shape[0], F.shape[0]))
    for s, e in blocks(F.shape[1], F.shape[0]):
        block = F[:, s:e].astype(np.float64)
        G += block @ block.T
    return G


def moments64(F):
    """Mean (d,) and second moment ``F @ F.T / n`` (d, d) of the columns of F (d, n), accumulated in float64.

    NumPy arrays through :func:`gram64` (and a sum that accumulates in
    float64 without a copy); other arrays (CuPy, dask) by their own
    ``astype`` (a dask result stays lazy).
    """
    n = F.shape[1]
    if isinstance(F, np.ndarray):
        return F.sum(axis=1, dtype=np.float64) / n, gram64(F) / n
    F = F.astype(np.float64)
    return F.sum(axis=1) / n, (F @ F.T) / n


def squared_norm(A):
    """``sum(A**2)`` accumulated in float64, for an array of any shape."""
    flat = np.asarray(A).reshape(1, -1)
    return float(gram64(flat)[0, 0])


def working_dtype(a):
    """The dtype kernels compute in for data ``a``: float32 for float32 data, else float64."""
    return np.float32 if a.dtype == np.float32 else np.float64
