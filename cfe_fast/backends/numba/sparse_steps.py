"""ALS half-steps and the reconstruction loss on a sparse P: cost proportional to the observed entries.

An unobserved entry has confidence 0, so it adds nothing to any Gram or
right-hand side: the instance system of i sums over its observed
classifiers only, A_i = lam I + sum_u c_ui x_u x_u^T, and the classifier
system of u over its observed instances (as in implicit's ALS), nnz d^2
flops for either set of Grams. Each instance system's Gram is one BLAS GEMM
of its gathered factors (``(c * F_obs)^T F_obs``), and the instance systems
of a chunk are factorised together by the batched Cholesky of
:mod:`.linalg`. A classifier's Gram is a sum of such GEMMs over the
instances a cache-sized block at a time (:func:`_sparse_classifier_sums`),
and the classifier systems are solved by
:func:`.classifier_step.solve_classifier_sums`.
Entries come as :class:`cfe_fast.core.sparse.Entries`: by instance (CSR)
for the instance step and the loss, by classifier (CSC) for the classifier
step. Results are float32 for float32 values and float64 otherwise.
"""

import numpy as np
from numba import get_num_threads, prange

from ..._float64 import working_dtype
from ...core.sparse import Entries
from .classifier_step import solve_classifier_sums
from .common import assign, jit, kernel_threads, tri
from .linalg import add_ridge, packed_cholesky_solve, raise_if_failed, systems_per_chunk


@jit
def _confidence(confidence, k):
    """c of entry k; 1 where ``confidence`` is empty (uniform confidence, not stored)."""
    return confidence[k] if confidence.size else confidence.dtype.type(1.0)


@jit
def _gathered(F, indices, values, confidence, lo, k, rows, weighted, rhs):
    """The factor rows F[indices[lo + j]] of the k entries from ``lo`` into ``rows``, times their confidence
    into ``weighted`` (left unwritten for uniform confidence, an empty ``confidence``: the Gram is then
    rows^T rows, see :func:`_gram_factor`), and sum_j c_j r_j F[indices[lo + j]] added to ``rhs``
    (float64: the right-hand side cancels, sums of c f r of both signs)."""
    for j in range(k):
        source = F[indices[lo + j]]
        row = rows[j]
        if confidence.size:
            c = confidence[lo + j]
            scaled = weighted[j]
            for a in range(F.shape[1]):
                scaled[a] = c * source[a]
        else:
            c = confidence.dtype.type(1.0)
        cr = np.float64(c) * np.float64(values[lo + j])
        for a in range(F.shape[1]):
            row[a] = source[a]
            rhs[a] += cr * np.float64(source[a])


@jit
def _gram_factor(confidence, rows, weighted):
    """The left factor W of the Gram W^T rows: the confidence-weighted rows, or the rows themselves
    for uniform confidence."""
    return weighted if confidence.size else rows


@jit
def _add_lower(A, acc):
    """The lower triangle of the d x d A added to the packed acc (row-major, float64)."""
    for a in range(A.shape[0]):
        for c in range(a + 1):
            acc[tri(a) + c] += A[a, c]


@jit
def _pack_lower(A, G, b):
    """The lower triangle of the d x d A into column b of the packed G."""
    for a in range(A.shape[0]):
        for c in range(a + 1):
            G[tri(a) + c, b] = A[a, c]


@jit(parallel=True)
def _sparse_instances(Xt, pointers, indices, values, confidence, lam, chunk, Yt, failed, sse):
    """Primal d x d systems of every instance over its observed classifiers (CSR entries);
    if sse.size, sse[c] = sum c (r - r_hat)^2 over chunk c at the new factors."""
    n = pointers.size - 1
    d = Xt.shape[1]
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        widest = 0
        for i in range(s, e):
            widest = max(widest, pointers[i + 1] - pointers[i])
        rows = np.empty((widest, d), dtype=Xt.dtype)
        weighted = np.empty((widest, d), dtype=Xt.dtype)
        G = np.zeros((tri(d), e - s))
        B = np.zeros((d, e - s))
        rhs = np.zeros(d)
        gram = np.empty((d, d), dtype=Xt.dtype)
        for i in range(s, e):
            k = pointers[i + 1] - pointers[i]
            if k == 0:  # nothing observed: lam y = 0
                continue
            _gathered(Xt, indices, values, confidence, pointers[i], k, rows, weighted, rhs)
            np.dot(_gram_factor(confidence, rows, weighted)[:k].T, rows[:k], gram)
            _pack_lower(gram, G, i - s)
            for a in range(d):
                B[a, i - s] = rhs[a]
                rhs[a] = 0.0
        add_ridge(G, d, lam)
        packed_cholesky_solve(G, B, failed[s:e])
        assign(Yt[s:e], B.T)
        if sse.size:
            sse[c] = _squared_residual(Xt, Yt, pointers, indices, values, confidence, s, e)


@jit(fastmath={"contract", "reassoc"})
def _squared_residual(Xt, Yt, pointers, indices, values, confidence, s, e):
    """sum c (r - x_u^T y_i)^2 over the observed entries of instances s <= i < e, in float64.

    Reassociation lets each x_u^T y_i run as a SIMD sum (in a fixed order:
    the result depends on the data only) instead of a chain of d dependent
    additions.
    """
    acc = 0.0
    d = Xt.shape[1]
    for i in range(s, e):
        y = Yt[i]
        for k in range(pointers[i], pointers[i + 1]):
            x = Xt[indices[k]]
            r_hat = 0.0
            for a in range(d):
                r_hat += np.float64(x[a]) * np.float64(y[a])
            r = np.float64(values[k]) - r_hat
            acc += np.float64(_confidence(confidence, k)) * r * r
    return acc


@jit(parallel=True)
def _sparse_sse(Xt, Yt, pointers, indices, values, confidence, chunk):
    n = pointers.size - 1
    n_chunks = (n + chunk - 1) // chunk
    partial = np.empty(n_chunks)
    for c in prange(n_chunks):
        partial[c] = _squared_residual(Xt, Yt, pointers, indices, values, confidence, c * chunk,
                                       min(n, (c + 1) * chunk))
    total = 0.0
    for c in range(n_chunks):  # fixed order: independent of the thread count
        total += partial[c]
    return total


@jit(parallel=True)
def _sparse_classifier_sums(Yt, pointers, indices, values, confidence, block, group, run, G, B):
    """Packed Grams G (T, m) and right-hand sides B (d, m) of every classifier over its observed
    instances (CSC entries), float64.

    The classifiers are taken ``group`` at a time (the parallel tasks) and
    the instances ``block`` at a time, so that the factor rows a group
    gathers from one block stay in cache while all of its classifiers read
    them (gathers from all of Yt would miss the cache on nearly every row).
    A classifier's entries in a block are summed by GEMMs over runs of at
    most ``run`` entries, added in float64 in the order of the blocks and
    runs: the result does not depend on the number of threads.
    """
    m = pointers.size - 1
    n, d = Yt.shape
    for g in prange((m + group - 1) // group):
        u0 = g * group
        u1 = min(m, u0 + group)
        rows = np.empty((run, d), dtype=Yt.dtype)
        weighted = np.empty((run, d), dtype=Yt.dtype)
        acc = np.zeros((u1 - u0, tri(d)))
        rhs = np.zeros((u1 - u0, d))
        cursor = pointers[u0:u1].copy()
        for s in range(0, n, block):
            for u in range(u0, u1):
                lo = cursor[u - u0]
                hi = lo
                while hi < pointers[u + 1] and indices[hi] < s + block:
                    hi += 1
                for r in range(lo, hi, run):
                    k = min(run, hi - r)
                    _gathered(Yt, indices, values, confidence, r, k, rows, weighted, rhs[u - u0])
                    _add_lower(np.dot(_gram_factor(confidence, rows, weighted)[:k].T, rows[:k]), acc[u - u0])
                cursor[u - u0] = hi
        for u in range(u0, u1):
            assign(G[:, u], acc[u - u0])
            assign(B[:, u], rhs[u - u0])


@jit
def _csc_order(pointers, indices, values, confidence, col_pointers, rows, col_values, col_confidence):
    """CSR entries into CSC order (a counting sort: instances increasing within each classifier)."""
    next_free = col_pointers[:-1].copy()
    for i in range(pointers.size - 1):
        for k in range(pointers[i], pointers[i + 1]):
            u = indices[k]
            p = next_free[u]
            next_free[u] = p + 1
            rows[p] = i
            col_values[p] = values[k]
            if confidence.size:
                col_confidence[p] = confidence[k]


def by_classifier(entries, m):
    """The :class:`~cfe_fast.core.sparse.Entries` by classifier (CSC) of entries by instance (CSR) of m classifiers.

    Allocates only the result: its values, confidences and instance indices (int32 where they fit).
    """
    n = entries.pointers.size - 1
    col_pointers = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(entries.indices, minlength=m), out=col_pointers[1:])
    rows = np.empty(entries.indices.size, dtype=np.int32 if n < 2**31 else np.int64)
    values, confidence = np.empty_like(entries.values), np.empty_like(entries.confidence)
    _csc_order(*entries, col_pointers, rows, values, confidence)
    return Entries(col_pointers, rows, values, confidence)


#: entries per GEMM of the classifier Grams: float32 products are summed in float64 every this many
CLASSIFIER_RUN = 1024
#: bytes of instance factors per block of the classifier step (:func:`_sparse_classifier_sums`): half
#: of a core's L2 cache on the benchmark machine (1 MiB), so that a block stays there while a group's
#: classifiers gather from it (128 KiB to 2 MiB measured within 10 % of each other)
CLASSIFIER_BLOCK_BYTES = 512 * 1024
#: classifiers per task of the classifier step at most, read through each block together (fewer where
#: that would leave a thread without a task; a classifier's sums do not depend on its group)
CLASSIFIER_GROUP = 256


def _flops(entries, d):
    return entries.values.size * d * (d + 1)


def solve_sparse_instances(X, entries, lam, *, loss=False):
    """Instance half-step on the observed entries by instance (CSR :class:`~cfe_fast.core.sparse.Entries`).

    Returns Yt (n, d) C-contiguous in the values' dtype, and with ``loss``
    also ``sum c (r - x_u^T y_i)^2`` over the observed entries at the new
    factors (float64). An instance with no observed entry gets y = 0.
    """
    dtype = working_dtype(entries.values)
    d = X.shape[0]
    n = entries.pointers.size - 1
    chunk = systems_per_chunk(d)
    Yt = np.empty((n, d), dtype=dtype)
    failed = np.zeros(n, dtype=np.bool_)
    sse = np.empty(-(-n // chunk) if loss else 0)
    with kernel_threads(_flops(entries, d) + n * d**3 / 3):
        _sparse_instances(np.ascontiguousarray(X.T, dtype=dtype), *entries, float(lam), chunk, Yt, failed, sse)
    raise_if_failed(failed, "instance")
    return (Yt, float(sse.sum())) if loss else Yt


def sparse_classifier_sums(Yt, entries):
    """Packed Grams G (d (d + 1) / 2, m) and right-hand sides B (d, m), float64, of the classifier systems
    over the observed entries by classifier (CSC :class:`~cfe_fast.core.sparse.Entries`), before the ridge
    (the layout of :func:`.classifier_step.classifier_sums`; sums over disjoint blocks of instances add up)."""
    d = Yt.shape[1]
    m = entries.pointers.size - 1
    G, B = np.empty((tri(d), m)), np.empty((d, m))
    with kernel_threads(_flops(entries, d)):
        Yt = np.ascontiguousarray(Yt, dtype=working_dtype(entries.values))
        block = max(1, CLASSIFIER_BLOCK_BYTES // max(1, Yt.shape[1] * Yt.itemsize))
        group = max(1, min(CLASSIFIER_GROUP, -(-m // get_num_threads())))
        _sparse_classifier_sums(Yt, *entries, block, group, CLASSIFIER_RUN, G, B)
    return G, B


def solve_sparse_classifiers(Yt, entries, lam):
    """Classifier half-step on the observed entries by classifier (CSC :class:`~cfe_fast.core.sparse.Entries`).

    Returns X (d, m) in the values' dtype.
    """
    return solve_classifier_sums(*sparse_classifier_sums(Yt, entries), lam, working_dtype(entries.values))


def sparse_squared_residual(X, Yt, entries):
    """``sum c (r - x_u^T y_i)^2`` over the observed entries by instance (float64)."""
    dtype = working_dtype(entries.values)
    with kernel_threads(2 * entries.values.size * X.shape[0]):
        return _sparse_sse(np.ascontiguousarray(X.T, dtype=dtype), np.ascontiguousarray(Yt, dtype=dtype), *entries,
                           systems_per_chunk(X.shape[0]))
