"""What the "exact" and "joint" trainers need of a sparse P beyond the ALS half-steps, on the observed entries.

* :func:`sparse_labeled_solves`: z_i = A_i^-1 v for the labeled instances,
  A_i = lam I + sum_{u observed for i} c_ui x_u x_u^T (the systems of the
  instance half-step), for the exact trainer's rank-one corrections.
* :func:`sparse_reconstruction_gradient`: the gradients of
  sum_O c (r - x_u^T y_i)^2 + lam (||X||^2 + ||Y||^2) with respect to X and
  Y, -2 sum_i e_ui y_i + 2 lam x_u and -2 sum_u e_ui x_u + 2 lam y_i
  (e = c (r - x_u^T y_i) at the observed entries), for the joint trainer.

Each costs O(nnz d) (the gradient) or O(nnz_L d^2 + n_L d^3) (the labeled
solves, nnz_L the labeled instances' entries), in float64; the sums of a
system or of a row run in a fixed order, so results do not depend on the
number of threads.
"""

import numpy as np
from numba import prange

from .common import assign, jit, kernel_threads, tri
from .linalg import add_ridge, packed_cholesky_solve, raise_if_failed, systems_per_chunk
from .sparse_steps import _confidence


@jit(parallel=True)
def _labeled_solves(Xt, pointers, indices, confidence, lam, rows, v, chunk, Zt, failed):
    """Zt[j] = A_i^-1 v of instance i = rows[j], its packed Gram over its observed classifiers in float64."""
    n = rows.size
    d = Xt.shape[1]
    for c in prange((n + chunk - 1) // chunk):
        s = c * chunk
        e = min(n, s + chunk)
        G = np.zeros((tri(d), e - s))
        B = np.empty((d, e - s))
        for j in range(s, e):
            i = rows[j]
            for k in range(pointers[i], pointers[i + 1]):
                x = Xt[indices[k]]
                weight = np.float64(_confidence(confidence, k))
                for a in range(d):
                    xa = weight * x[a]
                    for b in range(a + 1):
                        G[tri(a) + b, j - s] += xa * x[b]
            for a in range(d):
                B[a, j - s] = v[a]
        add_ridge(G, d, lam)
        packed_cholesky_solve(G, B, failed[s:e])
        assign(Zt[s:e], B.T)


def sparse_labeled_solves(X, entries, lam, v, rows):
    """(n_rows, d) float64: A_i^-1 v for the instances ``rows`` of the CSR
    :class:`~cfe_fast.core.sparse.Entries` (X (d, m), v (d,)); a singular system is an error naming its instance."""
    d = X.shape[0]
    rows = np.asarray(rows, dtype=np.int64)
    Zt = np.empty((rows.size, d))
    failed = np.zeros(rows.size, dtype=np.bool_)
    with kernel_threads(rows.size * d**3 + d * d * int(np.diff(entries.pointers)[rows].sum())):
        _labeled_solves(np.ascontiguousarray(X.T, dtype=np.float64), entries.pointers, entries.indices,
                        entries.confidence, float(lam), rows, np.asarray(v, dtype=np.float64),
                        systems_per_chunk(d), Zt, failed)
    if failed.any():
        raise_if_failed(np.isin(np.arange(entries.pointers.size - 1), rows[failed]), "instance")
    return Zt


@jit(parallel=True)
def _residual_sums(Fmajor, Fminor, pointers, indices, values, confidence, out):
    """out[j] = sum_k e_k Fminor[indices[k]] over the entries k of major line j, e_k = c_k (r_k - Fmajor[j] .
    Fminor[indices[k]])."""
    d = Fmajor.shape[1]
    for j in prange(pointers.size - 1):
        f = Fmajor[j]
        for a in range(d):
            out[j, a] = 0.0
        for k in range(pointers[j], pointers[j + 1]):
            g = Fminor[indices[k]]
            r_hat = 0.0
            for a in range(d):
                r_hat += f[a] * g[a]
            e = np.float64(_confidence(confidence, k)) * (np.float64(values[k]) - r_hat)
            for a in range(d):
                out[j, a] += e * g[a]


def sparse_reconstruction_gradient(X, Yt, by_instance, by_classifier, lam):
    """(dX (d, m), dYt (n, d)), float64: the gradients of sum_O c (r - x_u^T y_i)^2 + lam (||X||^2 + ||Y||^2)
    (not normalised) from the entries by instance (CSR) and by classifier (CSC)."""
    Xt = np.ascontiguousarray(X.T, dtype=np.float64)
    Yt = np.ascontiguousarray(Yt, dtype=np.float64)
    gXt, gYt = np.empty_like(Xt), np.empty_like(Yt)
    with kernel_threads(4 * by_instance.values.size * X.shape[0]):
        _residual_sums(Yt, Xt, *by_instance, gYt)
        _residual_sums(Xt, Yt, *by_classifier, gXt)
    return (-2 * gXt + 2 * lam * Xt).T, -2 * gYt + 2 * lam * Yt
