"""Classifier half-step: the m d x d Grams summed over all instances, then m ridge solves.

The Grams are built by BLAS GEMMs over packed lower triangles (symmetry
halves the work), ``G[:, u] += packed(Y_chunk Y_chunk^T) @ C[chunk, u]``, a
block of latent rows at a time so the packed outer products stay in cache;
``"cg"`` runs a few conjugate-gradient steps without forming them. Sums over
instances add float64 partials of fixed chunks in a fixed order, so results
do not depend on the number of threads.
"""

import numpy as np
from numba import prange

from ... import config
from ..._float64 import working_dtype
from .common import as_float64, assign, block_range, jit, kernel_threads, ordered_sum, run_tasks, tri
from .confidence import chunk_confidence, kernel_confidence
from .linalg import add_ridge, cg_start, cg_step, packed_cholesky_solve, packed_outer_rows, raise_if_failed


@jit
def _chunk_grams(Yc, Cc, RCc, rows, Gc, Bc):
    """Packed Grams (T, m) and right-hand sides (d, m) of one chunk of instances.

    Yc (d, nc) instance factors, Cc (nc, m) confidences, RCc = Cc * Rc. The
    packed outer products are formed ``rows`` latent rows at a time, so the
    block that the GEMM reads stays in cache; each block fills its own rows of Gc.
    """
    d = Yc.shape[0]
    for a0 in range(0, d, rows):
        a1 = min(d, a0 + rows)
        assign(Gc[tri(a0):tri(a1)], np.dot(packed_outer_rows(Yc, a0, a1), Cc))
    # the right-hand side cancels (sums of c y r of both signs): float64 always
    assign(Bc, np.dot(as_float64(Yc), as_float64(RCc)))


@jit(nogil=True)
def _classifier_gram_blocks(Yt, Rt, conf, chunk, n_blocks, rows, part_G, part_B, first, stop):
    """Blocks first <= blk < stop of G (T, m) = sum_i c_ui packed(y_i y_i^T) and B (d, m) = sum_i y_i c_ui r_ui.

    Instances are cut into fixed chunks, the chunks into ``n_blocks``
    contiguous blocks (the tasks of :func:`~.common.run_tasks`); block blk
    sums its chunks in order into part_G[blk] (T, m) and part_B[blk] (d, m),
    float64, and :func:`classifier_sums` adds the blocks in order, so the
    result depends on n and n_blocks only, not on the number of threads.
    """
    n, d = Yt.shape
    m = Rt.shape[1]
    n_chunks = (n + chunk - 1) // chunk
    for blk in range(first, stop):
        c0, c1 = block_range(blk, n_blocks, n_chunks)
        G_blk, B_blk = part_G[blk], part_B[blk]
        G_blk[:] = 0.0
        B_blk[:] = 0.0
        Gc = np.empty((tri(d), m))
        Bc = np.empty((d, m))
        for c in range(c0, c1):
            s = c * chunk
            e = min(n, s + chunk)
            Cc = chunk_confidence(conf, Rt, s, e)
            _chunk_grams(np.ascontiguousarray(Yt[s:e].T), Cc, Cc * Rt[s:e], rows, Gc, Bc)
            G_blk += Gc
            B_blk += Bc


def _gram_rows(d, chunk):
    """Latent rows per packed-outer block of :func:`_chunk_grams`: ~``config.GRAM_BLOCK_BYTES`` per block."""
    return int(np.clip(config.GRAM_BLOCK_BYTES // (8 * chunk * d), 1, d))


def classifier_sums(Yt, Rt, Ct):
    """Per-classifier packed Grams and right-hand sides, before the ridge and the solve.

    Sums over disjoint blocks of instances add up to the sums over their union
    (the Dask backend reduces them across chunks).

    Parameters
    ----------
    Yt : (n, d) instance factors; Rt : (n, m), instance-major; Ct : (n, m), instance-major, or a
    :class:`~cfe_fast.core.confidence.ConfidenceRule` (each chunk's block computed from Rt).

    Returns
    -------
    G : (d (d + 1) / 2, m) float64
        Column u is the packed lower triangle (row-major, entry (a, b) at
        a (a + 1) / 2 + b) of Y C_u Y^T = sum_i c_ui y_i y_i^T.
    B : (d, m) float64
        Column u is Y C_u r_u.
    """
    dtype = working_dtype(Rt)
    n, d = Yt.shape
    m = Rt.shape[1]
    chunk = config.GRAM_CHUNK
    n_blocks = max(1, min(config.REDUCE_BLOCKS, -(-n // chunk)))
    part_G = np.empty((n_blocks, d * (d + 1) // 2, m))
    part_B = np.empty((n_blocks, d, m))
    with kernel_threads(n * m * d * d):
        run_tasks(_classifier_gram_blocks, n_blocks, np.ascontiguousarray(Yt, dtype=dtype), Rt,
                  kernel_confidence(Ct, dtype), chunk, n_blocks, _gram_rows(d, chunk), part_G, part_B)
    return ordered_sum(part_G), ordered_sum(part_B)  # fixed order: independent of the thread count


@jit(parallel=True)
def _classifier_products(Yt, Rt, conf, P, first, chunk, n_blocks):
    """One pass over the instances for the classifier CG, without forming the systems.

    Returns out (3 if ``first`` else 1, d, m): out[0] = sum_i y_i c_ui (y_i^T p_u)
    for every u (the systems times P); if ``first``, also out[1] = Y C_u r_u
    (right-hand sides) and out[2] = sum_i c_ui y_i**2 (the Jacobi diagonals).
    Fixed chunks in fixed blocks, added in order (see :func:`_classifier_gram_blocks`).
    """
    n = Yt.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    n_blocks = max(1, min(n_blocks, n_chunks))
    part = np.empty((n_blocks, 3 if first else 1, P.shape[0], P.shape[1]))
    for blk in prange(n_blocks):
        c0, c1 = block_range(blk, n_blocks, n_chunks)
        sums = part[blk]
        sums[:] = 0.0
        for c in range(c0, c1):
            s = c * chunk
            e = min(n, s + chunk)
            Yc = as_float64(Yt[s:e])
            Cc = as_float64(chunk_confidence(conf, Rt, s, e))
            products = sums[0]
            products += np.dot(Yc.T, Cc * np.dot(Yc, P))
            if first:
                rhs, diagonal = sums[1], sums[2]
                rhs += np.dot(Yc.T, Cc * Rt[s:e])
                diagonal += np.dot((Yc * Yc).T, Cc)
    return ordered_sum(part)


def _solve_classifiers_cg(Yt, Rt, Ct, lam, init, steps):
    """Warm-started Jacobi-preconditioned CG for the m classifier systems (approximate).

    Each step is one pass over the instances (:func:`_classifier_products`).
    """
    d = Yt.shape[1]
    m = Rt.shape[1]
    X = np.zeros((d, m)) if init is None else np.array(init, dtype=np.float64)
    conf = kernel_confidence(Ct, working_dtype(Rt))
    with kernel_threads(4 * Yt.shape[0] * m * d):
        sums = _classifier_products(Yt, Rt, conf, X, True, config.REDUCE_CHUNK, config.REDUCE_BLOCKS)
        diag = np.maximum(sums[2] + lam, 1e-300)
        R = sums[1] - sums[0] - lam * X
        P, rz = cg_start(R, diag)
        for _ in range(steps):
            AP = _classifier_products(Yt, Rt, conf, P, False, config.REDUCE_CHUNK, config.REDUCE_BLOCKS)[0]
            cg_step(AP + lam * P, P, R, X, diag, rz)
    return X


def solve_classifiers(Yt, Rt, Ct, lam, *, solver="auto", init=None, cg_steps=None):
    """Classifier half-step on instance-major data. Returns X (d, m).

    ``solver``: any exact choice builds the m packed Grams
    (:func:`classifier_sums`) and factorises them; ``"cg"`` runs
    ``cg_steps`` (default ``config.CG_STEPS``) preconditioned CG steps from
    ``init`` (d, m) (zeros if None) without forming the Grams -- approximate.
    """
    dtype = working_dtype(Rt)
    Yt = np.ascontiguousarray(Yt, dtype=dtype)
    if solver == "cg":
        steps = config.CG_STEPS if cg_steps is None else cg_steps
        return _solve_classifiers_cg(Yt, Rt, Ct, float(lam), init, int(steps)).astype(dtype)
    G, B = classifier_sums(Yt, Rt, Ct)
    return solve_classifier_sums(G, B, lam, dtype)


def solve_classifier_sums(G, B, lam, dtype=np.float64):
    """X (d, m) from the summed classifier-step sums of :func:`classifier_sums`.

    Adds the ridge and solves the m packed systems; G and B are overwritten.
    """
    add_ridge(G, B.shape[0], float(lam))
    failed = np.zeros(B.shape[1], dtype=np.bool_)
    packed_cholesky_solve(G, B, failed)
    raise_if_failed(failed, "classifier")
    return B.astype(dtype)
