"""The Dask backend's engine: CF-Ensemble passes over data chunked along instances.

Data placement
--------------
P (= R^T) and C are instance-major dask arrays (n, m) chunked along instances
only (one chunk spans every classifier). They may live in worker memory
(persisted) or be lazy, e.g. read from a Zarr store or a ``.npy`` memmap: a
sweep then streams them from disk one chunk per task, so R and C never have
to fit in the cluster's memory. A confidence *strategy* is evaluated inside
the chunk task from the chunk of R (C is never materialised). Everything
enters the cluster as tasks, never as scattered data (NumPy input, labels,
each iteration's X): the scheduler can recompute whatever a lost worker
held, so a fit survives the loss of a worker with the same result.

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
from distributed import get_worker

from ... import config
from ..._float64 import squared_norm
from ...core.losses import aggregator_terms_from_sums
from ...core.missing import filled_chunk, mean_of_observed
from ...errors import SingularSystemError
from ..numba.classifier_step import classifier_sums, solve_classifier_sums
from ..numba.instance_step import solve_instances
from ..numba.losses import aggregator_sums_t, weighted_squared_residual_t
from ..shared_gram import gram_of_rows, optimal_projection, project_rows
from .data import as_task, on_cluster


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


def _confidence_of_chunk(P_chunk, labels_column, confidence):
    return np.ascontiguousarray(confidence(P_chunk, labels_column[:, 0]), dtype=P_chunk.dtype)


@contextmanager
def _located(offset):
    """Re-raise a SingularSystemError of a chunk with the chunk's position in the data."""
    try:
        yield
    except SingularSystemError as error:
        raise SingularSystemError(f"{error} (index within the chunk of instances starting at {offset})") from None


def redrawn(bit_generator, state, draw, rows):
    """The chunk's rows of Y0, re-drawn from the RNG state recorded at its start."""
    rng = np.random.Generator(bit_generator())
    rng.bit_generator.state = state
    return draw(rng, rows)


def _initial_chunk(bit_generator, state, draw, rows, P_chunk, C_chunk):
    """Pass 0: the chunk's rows of Y0 and their Grams."""
    with _worker_threads():
        return classifier_sums(redrawn(bit_generator, state, draw, rows), np.ascontiguousarray(P_chunk),
                               np.ascontiguousarray(C_chunk))


def _projected_chunk(projection, P_chunk, C_chunk):
    """Pass 0 from Y0 = P projection (the closed-form start): the chunk's Grams."""
    Yt = project_rows(P_chunk, projection)
    with _worker_threads():
        return classifier_sums(Yt, np.ascontiguousarray(P_chunk), np.ascontiguousarray(C_chunk))


def _sweep_chunk(X, P_chunk, C_chunk, labels, lam, offset):
    """The fused per-chunk pass: Y of the chunk, its Grams, loss partials and labeled rows."""
    Rt, Ct = np.ascontiguousarray(P_chunk), np.ascontiguousarray(C_chunk)
    with _worker_threads():
        with _located(offset):
            Yt = solve_instances(X, Rt, Ct, lam)
        G, B = classifier_sums(Yt, Rt, Ct)
        sse = weighted_squared_residual_t(X, Yt, Rt, Ct)
    return Yt, Yt[~np.isnan(labels)], (G, B, sse, squared_norm(Yt))


def _aggregator_chunk(v, b, YtL, y, omega, focal_gamma, focal_variant, hessian):
    with _worker_threads():
        return aggregator_sums_t(v, b, YtL, y, omega, focal_gamma, focal_variant, hessian)


def _fold_in_chunk(P_chunk, X, lam, confidence, block_info=None):
    """The chunk's instance factors; its unobserved entries (NaN) have confidence 0 and a neutral value."""
    offset = block_info[0]["array-location"][0][0]
    with _worker_threads():
        Ct = np.ascontiguousarray(confidence(P_chunk), dtype=P_chunk.dtype)
        with _located(offset):
            return solve_instances(X, np.ascontiguousarray(filled_chunk(P_chunk)), Ct, lam)


def _add(*parts):
    """Element-wise sum of tuples of partial sums, in the given order."""
    return tuple(functools.reduce(operator.add, terms) for terms in zip(*parts))


def _tree_sum(parts):
    """Delayed tree reduction (``config.DASK_SPLIT_EVERY`` parts per task) of tuples of partial sums."""
    while len(parts) > 1:
        step = config.DASK_SPLIT_EVERY
        parts = [dask.delayed(_add)(*parts[i:i + step]) for i in range(0, len(parts), step)]
    return parts[0]


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
        (e.g. a partial of :func:`cfe_fast.core.confidence.confidence_chunk`), evaluated lazily chunk
        by chunk in the sweeps: C is then never stored. Either is 0 where P is NaN.
    has_missing : bool
        Whether P holds NaN (unobserved entries): the sweeps then read each
        chunk of P with a neutral value there.

    Attributes
    ----------
    P : dask array (n, m)
        The probabilities as given, NaN where unobserved (the held-out check reads its labeled rows).
    C : dask array (m, n)
        The confidence in the layout of docs/method.md, lazy unless given persisted.
    """

    #: the tasks of pass 0 (from a random or the closed-form Y0) and of the fused sweep on one chunk (the
    #: sparse engine has its own)
    initial_task = staticmethod(_initial_chunk)
    projected_task = staticmethod(_projected_chunk)
    sweep_task = staticmethod(_sweep_chunk)

    def __init__(self, client, P, labels, omega, lam, confidence, has_missing=False):
        self.client = client
        self.lam = float(lam)
        self.shape = P.shape
        self.dtype = P.dtype
        self._rows = P.chunks[0]
        self._offsets = np.concatenate([[0], np.cumsum(self._rows)])
        spans = list(zip(self._offsets[:-1], self._offsets[1:]))
        labels_shared = on_cluster(client, [labels[s:e] for s, e in spans])
        # held here: graphs derived from arrays backed by futures do not keep the futures alive
        self.P = P
        self._sources = (labels_shared, confidence)
        self._labels = list(labels_shared.to_delayed().ravel())
        self._P, self._C = self._chunk_inputs(P, labels_shared, confidence, has_missing)
        labeled = ~np.isnan(labels)
        self._labeled_chunks = [k for k, (s, e) in enumerate(spans) if labeled[s:e].any()]
        starts = np.concatenate([[0], np.cumsum(labeled)])
        self._aggregator_data = []
        for k in self._labeled_chunks:
            s, e = spans[k]
            y = labels[s:e][labeled[s:e]]
            w = omega[starts[s]:starts[e]]
            self._aggregator_data.append(tuple(client.persist([as_task(y), as_task(w)])))
        self._omega_total = float(np.sum(omega))
        self.X = None
        self._Yt = None
        self._YtL = []
        self._sums = None

    def _chunk_inputs(self, P, labels_shared, confidence, has_missing):
        """The delayed chunks of R (instance-major, neutral where unobserved) and of C that the tasks read;
        sets ``self.C``."""
        if not isinstance(confidence, da.Array):
            confidence = da.map_blocks(_confidence_of_chunk, P, labels_shared[:, None], confidence, dtype=P.dtype)
        self.C = confidence.T  # (m, n), the layout of docs/method.md; lazy
        return (list((P.map_blocks(filled_chunk) if has_missing else P).to_delayed().ravel()),
                list(confidence.to_delayed().ravel()))

    def mean_of_rows(self, index):
        """The mean of the observed entries of each row of P at the sorted positions ``index``."""
        return mean_of_observed(np.asarray(self.P[index].compute(), dtype=np.float64))

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
            tasks.append(dask.delayed(self.initial_task)(type(rng.bit_generator), state, draw, rows, self._P[k],
                                                         self._C[k]))
        self._run_pass([], tasks)

    def init_optimal_factors(self, d):
        """Pass 0 from ALS's fixed point, Y0 = P projection (:func:`~cfe_fast.backends.shared_gram.optimal_projection`;
        for confidence 1 everywhere, complete data and lam > 0): one pass for P's Gram, one for the Grams of Y0."""
        gram = self.client.compute(_tree_sum([dask.delayed(gram_of_rows)(chunk) for chunk in self._P]), sync=True)
        projection = as_task(optimal_projection(gram, d, self.lam))
        self._run_pass([], [dask.delayed(self.projected_task)(projection, self._P[k], self._C[k])
                            for k in range(len(self._rows))])

    def classifier_step(self):
        """X (d, m) from the Grams of the latest pass (Y0 or the latest instance step)."""
        G, B = (np.array(a) for a in self._sums[:2])
        return solve_classifier_sums(G, B, self.lam, self.dtype)

    def instance_step(self, X):
        """The fused pass with classifier factors X; blocks until it is done."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        X_shared = as_task(X)  # like the data: recomputed if its worker is lost
        Yt, YtL, sums = [], [], []
        for k in range(len(self._rows)):
            chunk_Yt, chunk_YtL, partial = dask.delayed(self.sweep_task, nout=3)(
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
        loss, g, H = sums
        return aggregator_terms_from_sums(self.X, loss, g, H if hessian else None, self._omega_total, hessian)

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
