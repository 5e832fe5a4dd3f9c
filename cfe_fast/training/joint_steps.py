"""The gradients of the joint trainer.

L = rho L_rec + (1 - rho) (L_sup + penalty(w)). The backend's fused kernel
gives dL_rec/dX and dL_rec/dY; the supervised part adds a_i g_i v to the
column of each labeled instance i (z_i = v^T y_i + b, v = X w, g_i =
dloss/dz), (sum a_i g_i y_i) w^T to dX, and X^T sum a_i g_i y_i, sum a_i g_i
to (dw, db). The instance part is local to each instance: one compiled pass
over the rows of dL_rec/dY scales them by rho, adds it and accumulates the sums
(no gather or scatter of the labeled factors).
"""

import numpy as np
from numba import prange

from .. import config
from ..backends.numba.common import jit, kernel_threads, ordered_sum
from ..backends.numba.losses import sample_terms
from ..core.losses import sample_loss_terms

#: the work per instance of the pass over dL/dY (the supervised term of a labeled one), in flops,
#: for the thread gate of :func:`~cfe_fast.backends.numba.common.kernel_threads`
_ROW_PASS_FLOPS = 80


def joint_gradients(problem, X, Y, w, b, with_loss=True):
    """L and its gradients with respect to X (d, m), Y (d, n), w (m,) and b.

    Without ``with_loss`` the returned L is None (L_rec would be a second pass over R and C).
    """
    p, rho = problem, problem.settings.rho
    gX, gY = p.reconstruction_gradient(X, Y)
    gYt = _instance_major(p.to_host(gY))  # a fresh array of the problem: completed in place
    sums = _row_pass(problem, _instance_major(p.to_host(Y)), gYt, X, w, b)
    gX, gw, gb = _small_gradients(problem, X, w, gX, sums)
    if not with_loss:
        return None, gX, gYt.T, gw, gb
    sup = 0.0
    if p.has_labels:
        y_labeled, omega, _ = p.host_labels
        z = np.asarray(p.to_host(p.labeled_factors(Y)), dtype=np.float64).T @ _v(p, X, w) + b
        loss, _, _ = sample_loss_terms(z, y_labeled, p.settings.focal_gamma, p.settings.focal_variant)
        sup = float(omega @ loss / omega.sum()) + p.settings.penalty.value(w)
    return rho * p.reconstruction_loss(X, Y) + (1 - rho) * sup, gX, gYt.T, gw, gb


def _instance_major(F):
    """Factors F (d, k) on the host as C-contiguous float64 (k, d) (no copy when F is the transposed view of such)."""
    return np.ascontiguousarray(np.asarray(F, dtype=np.float64).T)


def _v(problem, X, w):
    return np.asarray(problem.to_host(X), dtype=np.float64) @ w


def _row_pass(problem, Yt, gYt, X, w, b):
    """:func:`_rows` on the problem's labels, gYt completed in place: (sum a_i g_i y_i, sum a_i g_i)."""
    p = problem
    position = np.full(Yt.shape[0], -1, dtype=np.int64)  # among the labeled instances, -1 where unlabeled
    position[np.flatnonzero(p.to_host(p.labeled))] = np.arange(p.y_labeled.size)
    y_labeled, _, a = p.host_labels
    with kernel_threads(_ROW_PASS_FLOPS * Yt.shape[0]):
        sums = _rows(Yt, gYt, position, y_labeled, a, _v(p, X, w), float(b), float(p.settings.rho),
                     float(p.settings.focal_gamma), p.settings.focal_variant == "exact", config.REDUCE_CHUNK)
    return sums[:-1], float(sums[-1])


@jit(parallel=True)
def _rows(Yt, gYt, position, y, a, v, b, rho, gamma, exact_focal, chunk):
    """gYt[i] becomes rho gYt[i] (+ e_i v for a labeled instance, e_i = a_k g_k at
    z_i = v^T y_i + b, k = position[i] >= 0); returns [sum e_i y_i, sum e_i], summed over
    fixed chunks in order (the same for any number of threads)."""
    n, d = Yt.shape
    n_chunks = (n + chunk - 1) // chunk
    parts = np.empty((n_chunks, d + 1))
    for c in prange(n_chunks):
        part = parts[c]
        part[:] = 0.0
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            k = position[i]
            for j in range(d):
                gYt[i, j] *= rho
            if k < 0:
                continue
            t = 0.0
            for j in range(d):
                t += v[j] * Yt[i, j]
            _, g, _ = sample_terms(t + b, y[k], gamma, exact_focal)
            e = a[k] * g
            for j in range(d):
                part[j] += e * Yt[i, j]
                gYt[i, j] += e * v[j]
            part[d] += e
    return ordered_sum(parts)


def _small_gradients(problem, X, w, gX, sums):
    """(dL/dX, dL/dw, dL/db) from the reconstruction's dL_rec/dX and the pass's labeled sums."""
    p, rho = problem, problem.settings.rho
    gX = rho * np.asarray(p.to_host(gX), dtype=np.float64)
    if not p.has_labels:
        return gX, np.zeros_like(w), 0.0
    q, e_sum = sums
    gX += np.outer(q, w)
    return gX, np.asarray(p.to_host(X), dtype=np.float64).T @ q + (1 - rho) * p.settings.penalty.gradient(w), e_sum
