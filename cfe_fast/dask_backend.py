"""Dask backend: CF-Ensemble on data chunked along instances, in memory or out of core.

Data placement
--------------
P (= R^T) and C are instance-major dask arrays (n, m) chunked along instances
only (one chunk spans every classifier). They may live in worker memory
(persisted) or be lazy, e.g. read from a Zarr store or a ``.npy`` memmap: a
sweep then streams them from disk one chunk per task, so R and C never have
to fit in the cluster's memory. A confidence *strategy* is evaluated inside
the chunk task from the chunk of R (C is never materialised).

One sweep
---------
The estimator drives a :class:`DaskEngine`::

    engine.init_instance_factors(rng, draw)  # pass 0: Y0 per chunk, Grams of the first X-step
    for each iteration:
        X = engine.classifier_step()         # m small ridge systems, solved on the client
        engine.instance_step(X)              # the fused pass below
        engine.aggregator_terms(...)         # Newton steps of the aggregator
        engine.reconstruction_loss()

``instance_step`` broadcasts X to the workers and runs one task per chunk that
reads the chunk of R and C once and, with the same Numba kernels as the
in-memory path,

1. solves the chunk's instance factors (no communication);
2. forms the chunk's partial classifier Grams and right-hand sides for the
   next X-step, and its partial reconstruction loss;
3. keeps its labeled rows for the aggregator.

Partial sums meet in a tree reduction. Y and its labeled rows stay persisted
on the workers between iterations; the aggregator's loss, gradient and
Hessian are per-chunk partial sums over the labeled rows.

Results equal the in-memory Numba path up to the order of the partial sums
(relative differences ~1e-13 in float64) for any chunking.

Threads: a task runs the Numba kernels on as many threads as its worker has
(Numba kernels hold the GIL, so a worker runs one kernel at a time). Workers
with one thread each (``LocalCluster(threads_per_worker=1)``) use the cores best.
"""

import functools
import operator
from contextlib import contextmanager

import dask
import dask.array as da
import numba
import numpy as np
from distributed import Client, LocalCluster, get_worker

from . import numba_backend as nb
from . import reference
from ._errors import SingularSystemError
from ._float64 import squared_norm
from ._validation import FLOAT_DTYPES
from .numba_backend import (  # noqa: F401  (the kernel protocol on in-memory arrays, as in backends.py)
    aggregator_terms,
    fold_in,
    reconstruction_loss,
    update_classifier_factors,
    update_instance_factors,
)
from .trainers import Problem

#: partial sums added per task of the tree reduction
SPLIT_EVERY = 8
#: bytes of one chunk of P when a NumPy array is split for the cluster
CHUNK_BYTES = 64 * 2**20


# ------------------------------------------------------------------ client
@contextmanager
def client_scope(client=None):
    """Yield ``client``, or a client of a new ``LocalCluster`` that is closed on exit."""
    if client is not None:
        if not isinstance(client, Client):
            raise TypeError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}")
        yield client
        return
    with LocalCluster(dashboard_address=":0") as cluster, Client(cluster) as own:
        yield own


# -------------------------------------------------------------- validation
def as_instance_chunks(A, name, client, dtype=None, chunks=None):
    """``A`` (n, m) as a float dask array chunked along axis 0 only, lazily.

    A NumPy array (or anything ``np.asarray`` accepts) is split into chunks of
    ``chunks`` rows (default: about ``CHUNK_BYTES`` each) and scattered to the
    cluster once; a dask array keeps its row chunks and stays lazy.
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
    rows = chunks or max(1, CHUNK_BYTES // (A.shape[1] * np.dtype(dtype).itemsize))
    return _scattered(client, [np.ascontiguousarray(A[s:s + rows], dtype=dtype) for s in range(0, A.shape[0], rows)])


def _scattered(client, blocks):
    """The concatenation of ``blocks`` as a dask array, each block sent to the cluster once."""
    futures = client.scatter(blocks, hash=False)
    return da.concatenate([da.from_delayed(f, shape=b.shape, dtype=b.dtype) for f, b in zip(futures, blocks)])


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


def check_probabilities(P, name):
    """Check a dask array of probabilities (finite, in [0, 1]) in one streaming pass."""
    finite, lo, hi = dask.compute(da.isfinite(P).all(), P.min(), P.max())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values")
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} must hold probabilities in [0, 1]; found values in [{lo:g}, {hi:g}]")
    return P


def check_confidence(C, P, name):
    """Check a dask confidence array against P (shape, finite, >= 0); rechunk it like P."""
    if C.shape != P.shape:
        raise ValueError(f"{name} has shape {C.shape}, expected {P.shape} (the shape of X)")
    C = C.rechunk(P.chunks)
    finite, lo = dask.compute(da.isfinite(C).all(), C.min())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values")
    if lo < 0:
        raise ValueError(f"{name} must be non-negative; found minimum {lo:g}")
    return C


# ------------------------------------------------------------ chunk tasks
@contextmanager
def _worker_threads():
    """Run Numba kernels on the task's worker's thread count (unchanged outside a worker)."""
    try:
        threads = get_worker().state.nthreads
    except ValueError:  # not in a distributed worker
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def calibration_quality(P, labels):
    """Per-classifier quality of the "calibration" strategy; gathers the labeled rows (n_L, m)."""
    labeled = ~np.isnan(labels)
    if not labeled.any():
        raise ValueError("the 'calibration' confidence needs labeled instances")
    P_labeled = np.asarray(P[np.flatnonzero(labeled)].compute(), dtype=np.float64)
    return reference.calibration_confidence(P_labeled.T, labels[labeled])[:, 0]


def _confidence_of_chunk(P_chunk, labels_column, confidence):
    return np.ascontiguousarray(confidence(P_chunk, labels_column[:, 0]), dtype=P_chunk.dtype)


@contextmanager
def _located(offset):
    """Re-raise a SingularSystemError of a chunk with the chunk's position in the data."""
    try:
        yield
    except SingularSystemError as error:
        raise SingularSystemError(f"{error} (index within the chunk of instances starting at {offset})") from None


def _initial_chunk(bit_generator, state, draw, rows, P_chunk, C_chunk):
    """Pass 0: the chunk's rows of Y0 (re-drawn from the recorded RNG state) and their Grams."""
    rng = np.random.Generator(bit_generator())
    rng.bit_generator.state = state
    with _worker_threads():
        return nb.classifier_sums(draw(rng, rows), np.ascontiguousarray(P_chunk), np.ascontiguousarray(C_chunk))


def _sweep_chunk(X, P_chunk, C_chunk, labels, lam, offset):
    """The fused per-chunk pass: Y of the chunk, its Grams, loss partials and labeled rows."""
    Rt, Ct = np.ascontiguousarray(P_chunk), np.ascontiguousarray(C_chunk)
    with _worker_threads():
        with _located(offset):
            Yt = nb.solve_instances(X, Rt, Ct, lam)
        G, B = nb.classifier_sums(Yt, Rt, Ct)
        sse = nb.weighted_squared_residual_t(X, Yt, Rt, Ct)
    return Yt, Yt[~np.isnan(labels)], (G, B, sse, squared_norm(Yt))


def _aggregator_chunk(v, b, YtL, y, omega, focal_gamma, focal_variant, hessian):
    with _worker_threads():
        return nb.aggregator_sums_t(v, b, YtL, y, omega, focal_gamma, focal_variant, hessian)


def _fold_in_chunk(P_chunk, X, lam, confidence, block_info=None):
    offset = block_info[0]["array-location"][0][0]
    with _worker_threads():
        Rt = np.ascontiguousarray(P_chunk)
        with _located(offset):
            return nb.solve_instances(X, Rt, np.ascontiguousarray(confidence(Rt), dtype=Rt.dtype), lam)


def _add(*parts):
    """Element-wise sum of tuples of partial sums, in the given order."""
    return tuple(functools.reduce(operator.add, terms) for terms in zip(*parts))


def _tree_sum(parts):
    """Delayed tree reduction (``SPLIT_EVERY`` parts per task) of tuples of partial sums."""
    while len(parts) > 1:
        parts = [dask.delayed(_add)(*parts[i:i + SPLIT_EVERY]) for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


# ------------------------------------------------------------------ engine
class DaskEngine:
    """ALS on a dask cluster: owns the data placement and the fused per-chunk sweep.

    Parameters
    ----------
    client : distributed.Client
    P : dask array (n, m)
        Instance-major probabilities (R^T), chunked along instances only
        (see :func:`as_instance_chunks`), validated.
    labels : ndarray (n,)
        0/1 for labeled instances, NaN for unlabeled ones.
    omega : ndarray (n_L,)
        Weights of the labeled instances, in instance order.
    lam : float
        Ridge penalty.
    confidence : dask array (n, m) or callable
        C chunked like P, or ``confidence(P_chunk, labels_chunk) -> C_chunk``
        (e.g. a partial of :func:`confidence_chunk`), evaluated lazily chunk
        by chunk in the sweeps: C is then never stored.

    Attributes
    ----------
    C : dask array (m, n)
        The confidence in the SPEC layout, lazy unless given persisted.
    """

    def __init__(self, client, P, labels, omega, lam, confidence):
        self.client = client
        self.lam = float(lam)
        self.shape = P.shape
        self.dtype = P.dtype
        self._rows = P.chunks[0]
        self._offsets = np.concatenate([[0], np.cumsum(self._rows)])
        spans = list(zip(self._offsets[:-1], self._offsets[1:]))
        labels_shared = _scattered(client, [labels[s:e] for s, e in spans])
        # held here: graphs derived from arrays backed by futures do not keep the futures alive
        self._sources = (P, labels_shared, confidence)
        if not isinstance(confidence, da.Array):
            confidence = da.map_blocks(_confidence_of_chunk, P, labels_shared[:, None], confidence, dtype=P.dtype)
        self.C = confidence.T  # SPEC layout (m, n), lazy
        self._P = list(P.to_delayed().ravel())
        self._C = list(confidence.to_delayed().ravel())
        self._labels = list(labels_shared.to_delayed().ravel())
        labeled = ~np.isnan(labels)
        self._labeled_chunks = [k for k, (s, e) in enumerate(spans) if labeled[s:e].any()]
        starts = np.concatenate([[0], np.cumsum(labeled)])
        self._aggregator_data = []
        for k in self._labeled_chunks:
            s, e = spans[k]
            y = labels[s:e][labeled[s:e]]
            w = omega[starts[s]:starts[e]]
            self._aggregator_data.append(tuple(client.scatter([y, w], hash=False)))
        self._omega_total = float(np.sum(omega))
        self.X = None
        self._Yt = None
        self._YtL = []
        self._sums = None


    def _run_pass(self, outputs, sums):
        """Persist ``outputs`` (kept on the workers) and the reduced ``sums`` in one graph."""
        *kept, total = self.client.persist([*outputs, _tree_sum(sums)])
        self._sums = self.client.compute(total, sync=True)
        return kept

    def init_instance_factors(self, rng, draw):
        """Pass 0: Y0 = ``draw(rng, n)`` drawn chunk by chunk, and its classifier Grams.

        ``draw(rng, rows)`` must consume ``rng`` sequentially (as
        ``rng.standard_normal``), so that drawing the chunks in order gives
        the rows of one draw of all n rows: the RNG state at the start of
        every chunk is recorded here and the chunk is re-drawn on its worker.
        """
        tasks = []
        for k, rows in enumerate(self._rows):
            state = rng.bit_generator.state
            draw(rng, rows)  # advance the stream past this chunk
            tasks.append(dask.delayed(_initial_chunk)(type(rng.bit_generator), state, draw, rows, self._P[k], self._C[k]))
        self._run_pass([], tasks)

    def classifier_step(self):
        """X (d, m) from the Grams of the latest pass (Y0 or the latest instance step)."""
        G, B = (np.array(a) for a in self._sums[:2])
        return nb.solve_classifier_sums(G, B, self.lam, self.dtype)

    def instance_step(self, X):
        """The fused pass with classifier factors X; blocks until it is done."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        X_shared = self.client.scatter(X, broadcast=True, hash=False)
        Yt, YtL, sums = [], [], []
        for k in range(len(self._rows)):
            chunk_Yt, chunk_YtL, partial = dask.delayed(_sweep_chunk, nout=3)(
                X_shared, self._P[k], self._C[k], self._labels[k], self.lam, int(self._offsets[k])
            )
            Yt.append(chunk_Yt)
            sums.append(partial)
            if k in self._labeled_chunks:
                YtL.append(chunk_YtL)
        kept = self._run_pass(Yt + YtL, sums)
        self._Yt, self._YtL = kept[:len(Yt)], kept[len(Yt):]
        self.X = X

    def reconstruction_loss(self):
        """Normalised reconstruction term of (X, Y) after the latest instance step."""
        sse, y_squared = self._sums[2:]
        m, n = self.shape[1], self.shape[0]
        return (sse + self.lam * (squared_norm(self.X) + y_squared)) / (m * n)

    def aggregator_terms(self, w, b, focal_gamma=0.0, focal_variant="exact", hessian=False):
        """Supervised loss and derivatives from per-chunk sums over the persisted labeled rows."""
        v = np.asarray(self.X, dtype=np.float64) @ np.asarray(w, dtype=np.float64)
        parts = [
            dask.delayed(_aggregator_chunk)(v, float(b), YtL, y, omega, focal_gamma, focal_variant, hessian)
            for YtL, (y, omega) in zip(self._YtL, self._aggregator_data)
        ]
        sums = self.client.compute(_tree_sum(parts), sync=True)
        return nb.aggregator_terms_from_sums(self.X, sums, self._omega_total, hessian)

    def labeled_factors(self):
        """Y of the labeled instances, (d, n_L) NumPy, gathered from the workers."""
        d = self.X.shape[0]
        if not self._YtL:
            return np.empty((d, 0), dtype=self.dtype)
        return np.concatenate(self.client.compute(self._YtL, sync=True)).T

    def instance_factors(self):
        """Y (d, n) as a dask array backed by the persisted chunks."""
        d = self.X.shape[0]
        chunks = [da.from_delayed(Yt, shape=(rows, d), dtype=self.dtype) for Yt, rows in zip(self._Yt, self._rows)]
        return da.concatenate(chunks).T


def fold_in_chunks(X, P, lam, confidence):
    """Chunked inductive fold-in, lazily: Y^T (n_new, d) as a dask array.

    ``P`` is an instance-major dask array chunked along instances only and
    ``confidence(Rt_chunk) -> Ct_chunk`` the label-free confidence.
    """
    X = np.ascontiguousarray(X, dtype=P.dtype)
    return P.map_blocks(_fold_in_chunk, X, float(lam), confidence, chunks=(P.chunks[0], (X.shape[0],)), dtype=P.dtype)


# --------------------------------------------------------------- problem
#: instances the collapse monitors look at under Dask (a fixed sample, gathered each iteration)
MONITOR_SAMPLE = 100_000


class DaskProblem(Problem):
    """The trainers' :class:`~cfe_fast.trainers.Problem` over a :class:`DaskEngine`.

    The ALS trainer's half-steps, the reconstruction loss and the aggregator
    terms run as per-chunk passes on the cluster (each chunk of R and C read
    once per sweep); Y stays on the workers. The collapse monitors look at a
    fixed sample of at most ``MONITOR_SAMPLE`` instances, so Y is never
    gathered whole.
    """

    def __init__(self, engine, rho, labeled, y_labeled, omega, focal_gamma=0.0, focal_variant="exact", l2=0.0,
                 weighted_aggregator=True, seed=0):
        super().__init__(nb, None, engine.C, engine.lam, rho, labeled, y_labeled, omega, focal_gamma,
                         focal_variant, l2, weighted_aggregator)
        self.engine = engine
        n = engine.shape[0]
        size = min(n, MONITOR_SAMPLE)
        self._sample = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))

    def classifier_step(self, Y, solver="auto", init=None):
        """X from the Grams of the latest fused pass (Y is already on the workers; exact solves only)."""
        return self.engine.classifier_step()

    def instance_step(self, X, solver="auto", init=None):
        self.engine.instance_step(X)
        return self.engine.instance_factors()

    def reconstruction_loss(self, X, Y):
        """From the sums of the latest fused pass, which ran with these (X, Y)."""
        return self.engine.reconstruction_loss()

    def labeled_factors(self, Y):
        return self.engine.labeled_factors()

    def aggregator_evaluator(self, X, Y):
        def evaluate(w, b, hessian=False, omega=None, gamma=None):
            if omega is not None:
                raise NotImplementedError("per-call instance weights are not supported by the Dask backend")
            return self.engine.aggregator_terms(w, b, self.focal_gamma if gamma is None else gamma,
                                                self.focal_variant, hessian)

        return evaluate

    def monitor_factors(self, Y):
        """Y of the fixed monitoring sample, gathered to the client."""
        return np.asarray(Y[:, self._sample].compute())
