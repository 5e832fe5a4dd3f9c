"""Data of the Dask backend: the client, instance-chunked arrays, lazy ``.npy`` input, checks."""

from contextlib import contextmanager

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, default_client

from ... import config
from ..._validation import FLOAT_DTYPES, check_observed_classifiers
from ...core.confidence import classifier_quality


@contextmanager
def client_scope(client=None):
    """Yield ``client``; with None the current default client, if there is one (the convention of
    dask-ml and xgboost.dask), else a client of a new ``LocalCluster`` that is closed on exit."""
    if client is not None:
        if not isinstance(client, Client):
            raise TypeError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}")
        yield client
        return
    try:
        yield default_client()
        return
    except ValueError:  # no client is active
        pass
    with LocalCluster(dashboard_address=":0") as cluster, Client(cluster) as own:
        yield own


def as_instance_chunks(A, name, client, dtype=None, chunks=None):
    """``A`` (n, m) as a float dask array chunked along axis 0 only, lazily.

    A NumPy array (or anything ``np.asarray`` accepts) is split into chunks of
    ``chunks`` rows (default: about ``config.DASK_CHUNK_BYTES`` each) and sent to the
    cluster once, as tasks (see :func:`on_cluster`); a dask array keeps its row
    chunks and stays lazy.
    """
    if not isinstance(A, da.Array):
        A = np.asarray(A)
    if A.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {A.dtype}")
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got shape {A.shape}")
    if A.size == 0:
        raise ValueError(f"{name} is empty (shape {A.shape})")
    dtype = dtype or (A.dtype if A.dtype in FLOAT_DTYPES else np.float64)
    if isinstance(A, da.Array):
        return A.astype(dtype).rechunk({1: -1})
    rows = chunks or max(1, config.DASK_CHUNK_BYTES // (A.shape[1] * np.dtype(dtype).itemsize))
    return on_cluster(client, [np.ascontiguousarray(A[s:s + rows], dtype=dtype) for s in range(0, A.shape[0], rows)])


def on_cluster(client, blocks, meta=None):
    """The concatenation of ``blocks`` as a dask array held on the cluster, each block sent once
    (``meta``: an empty block of their type where they are not NumPy arrays, e.g. ``scipy.sparse``).

    Each block is a task whose value is the block (not scattered data): the
    scheduler keeps the task, so a block lost with a worker is recomputed, as
    is everything computed from it, and a fit survives the loss of a worker.
    """
    parts = [da.from_delayed(as_task(block), shape=block.shape, dtype=block.dtype, meta=meta) for block in blocks]
    return client.persist(da.concatenate(parts))


def as_task(value):
    """``value`` as a dask task that returns it: unlike scattered data (or a bare literal, which dask
    also ships as data), a task's result lost with a worker is recomputed by the scheduler."""
    return dask.delayed(_value, pure=True)(value)


def _value(value):
    return value


def from_npy(path, chunk_rows):
    """A ``.npy`` file (n, m) as a lazy dask array of ``chunk_rows`` rows per chunk.

    Every chunk task memory-maps the file on its worker and copies only its
    rows, so the file is never loaded whole (nor shipped through the graph).
    """
    shape, dtype = _npy_layout(path)
    if len(shape) != 2:
        raise ValueError(f"{path} must hold a 2-dimensional array, got shape {shape}")
    spans = [(s, min(s + chunk_rows, shape[0])) for s in range(0, shape[0], chunk_rows)]
    return da.concatenate([
        da.from_delayed(dask.delayed(_npy_rows)(path, s, e), shape=(e - s, shape[1]), dtype=dtype) for s, e in spans
    ])


def _npy_layout(path):
    array = np.load(path, mmap_mode="r")
    return array.shape, array.dtype


def _npy_rows(path, start, stop):
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def check_probabilities(P, name, missing=False, names=None):
    """Check a dask array of probabilities (in [0, 1], NaN = unobserved with ``missing``) in one streaming pass.

    With ``missing`` a classifier (column) with no observed entry is
    refused, by its name in ``names`` if given.
    """
    infinite, nan, lo, hi, observed = dask.compute(da.isinf(P).any(), da.isnan(P).any(), da.nanmin(P), da.nanmax(P),
                                                   (~da.isnan(P)).sum(axis=0))
    if infinite or (nan and not missing):
        raise ValueError(f"{name} contains NaN or infinite values")
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} must hold probabilities in [0, 1]; found values in [{lo:g}, {hi:g}]")
    if nan:
        check_observed_classifiers(np.where(observed > 0, 0.0, np.nan)[None, :], names, name)
    return P


def check_confidence(C, P, name, has_missing=False):
    """Check a dask confidence array against P (shape, finite, >= 0); rechunk it like P.

    With ``has_missing`` C is read as 0 where P is NaN (unobserved), whatever it holds there.
    """
    if C.shape != P.shape:
        raise ValueError(f"{name} has shape {C.shape}, expected {P.shape} (the shape of X)")
    C = C.rechunk(P.chunks)
    if has_missing:
        C = da.where(da.isnan(P), 0, C).astype(C.dtype)
    finite, lo = dask.compute(da.isfinite(C).all(), C.min())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values at observed entries")
    if lo < 0:
        raise ValueError(f"{name} must be non-negative; found minimum {lo:g}")
    return C


def count_missing(P):
    """The number of NaN (unobserved) entries of P (one streaming pass)."""
    return int(da.isnan(P).sum().compute())


def calibration_quality(P, labels, names=None):
    """Per-classifier quality of the "calibration" strategy; gathers the labeled rows (n_L, m)."""
    labeled = ~np.isnan(labels)
    if not labeled.any():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    P_labeled = np.asarray(P[np.flatnonzero(labeled)].compute(), dtype=np.float64)
    return classifier_quality(P_labeled.T, labels[labeled], names=names)
