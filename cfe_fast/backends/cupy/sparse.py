"""The CuPy backend on a sparse P: the ALS half-steps and the loss on the observed entries, array-module generic.

The observed entries are held as CSR matrices (n, m) of the instance-major
P's pattern in the array module's sparse module (``cupyx.scipy.sparse`` on
CuPy, ``scipy.sparse`` on NumPy): ``C`` with the confidences and ``CR`` with
confidence x probability (:class:`SparseData`). With P_X (m, T) the packed
lower triangles of x_u x_u^T (T = d (d + 1) / 2), the instance systems of a
block of instances are two sparse-dense products,

    G = C[block] @ P_X,   B = CR[block] @ X^T,

and the classifier systems the transposed products with the packed y_i y_i^T
of a block of instances, summed in float64 over the blocks: nnz (T + d)
multiply-adds for either set of Grams (cuSPARSE SpMM on a GPU) and no (n, m)
array. The systems are solved by the batched packed solves of :mod:`.solve`
in float64. The loss gathers x_u and y_i of every observed entry, a block of
instances at a time. Results are float32 for float32 P, else float64.
"""

from typing import NamedTuple

import numpy as np
import scipy.sparse

from ..._float64 import squared_norm
from ...core.losses import normalised_reconstruction_loss
from ...training.state import State
from ..in_memory import SparseProblem, sparse_confidences, start_state
from .arrays import as_module, chunk_size, compute_module, is_numpy, to_host
from .kernels import _packed_outer
from .solve import packed_spd_solve, raise_if_failed, solve_bytes, tril_indices


class SparseData(NamedTuple):
    """The observed entries of P (n, m) as CSR matrices of the array module ``xp``: ``C`` the confidences,
    ``CR`` confidence x probability, ``R`` the probabilities (for the loss); one sparsity pattern."""

    C: object
    CR: object
    R: object
    xp: object


def sparse_module(xp):
    """The sparse-matrix module of the array module ``xp``: ``cupyx.scipy.sparse`` or ``scipy.sparse``."""
    if is_numpy(xp):
        return scipy.sparse
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse


def sparse_data(P, values, xp=None):
    """:class:`SparseData` of the checked CSR P (host) with confidences ``values`` (nnz,) in CSR order
    (empty: 1 everywhere), on ``xp`` (default: CuPy where a GPU is usable)."""
    xp = xp or compute_module()
    module = sparse_module(xp)
    if not is_numpy(xp) and P.nnz > np.iinfo(np.int32).max:
        raise ValueError(f"a sparse X with {P.nnz} stored entries is too large for cupyx.scipy.sparse (32-bit "
                         "indices): fit it with backend='numba' or 'dask'")
    index_dtype = np.int32 if not is_numpy(xp) else None  # cuSPARSE takes 32-bit indices
    pointers, indices = (xp.asarray(a, dtype=index_dtype or a.dtype) for a in (P.indptr, P.indices))
    probabilities = as_module(xp, P.data)
    confidence = as_module(xp, values) if values.size else xp.ones_like(probabilities)

    def matrix(data):
        return module.csr_matrix((data, indices, pointers), shape=P.shape)

    return SparseData(matrix(confidence), matrix(confidence * probabilities), matrix(probabilities), xp)


def _blocks(n, size):
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _rows_per_block(data, d, chunk):
    """Instances per block: the working memory of a block's systems and its entries' gathered factors."""
    n = data.C.shape[0]
    per_instance = 8 * (d * (d + 1) // 2 + 4 * d) + solve_bytes(d, data.xp) + 16 * d * -(-data.C.nnz // n)
    return chunk_size(data.xp, per_instance, chunk)


def _block_sse(Xt, Y_block, data, s, e):
    """sum c (r - x_u^T y_i)^2 over the observed entries of instances s <= i < e, in float64."""
    xp = data.xp
    C, R = data.C[s:e], data.R[s:e]
    local = xp.searchsorted(C.indptr, xp.arange(C.nnz), side="right") - 1  # the instance of every entry
    r_hat = xp.sum(Xt[C.indices].astype(np.float64) * Y_block[local].astype(np.float64), axis=1)
    return xp.sum(C.data.astype(np.float64) * (R.data.astype(np.float64) - r_hat) ** 2)


def update_instance_factors(X, data, lam, *, chunk=None, with_loss=False):
    """Instance half-step over the observed entries: Y (d, n) in P's dtype on ``data.xp``; with
    ``with_loss`` also ``sum c (r - x_u^T y_i)^2`` at the new factors (float64). An instance with no
    observed entry gets y = 0."""
    xp = data.xp
    dtype = data.R.dtype
    n, m = data.C.shape
    d = X.shape[0]
    X = as_module(xp, X, dtype)
    Xt = xp.ascontiguousarray(X.T)
    PX = xp.ascontiguousarray(_packed_outer(X, tril_indices(d, xp)).T)  # (m, T)
    Yt = xp.empty((n, d), dtype=dtype)
    failures = []
    sse = 0.0
    for s, e in _blocks(n, _rows_per_block(data, d, chunk)):
        G = data.C[s:e] @ PX
        B = (data.CR[s:e] @ Xt).astype(np.float64)
        solution, failed = packed_spd_solve(xp.asarray(G), xp.asarray(B), lam, xp)
        Yt[s:e] = solution
        failures.append(failed)
        if with_loss:
            sse += float(_block_sse(Xt, Yt[s:e], data, s, e))
    raise_if_failed(failures, "instance", xp)
    return (Yt.T, sse) if with_loss else Yt.T


def update_classifier_factors(Y, data, lam, *, chunk=None):
    """Classifier half-step over the observed entries: X (d, m) in P's dtype on ``data.xp``; the Grams are
    summed over blocks of instances in float64. A classifier with no observed entry gets x = 0."""
    xp = data.xp
    dtype = data.R.dtype
    n, m = data.C.shape
    d = Y.shape[0]
    Y = as_module(xp, Y, dtype)
    tril = tril_indices(d, xp)
    G = xp.zeros((m, d * (d + 1) // 2))
    B = xp.zeros((m, d))
    for s, e in _blocks(n, _rows_per_block(data, d, chunk)):
        Y_block = Y[:, s:e]
        G += xp.asarray(data.C[s:e].T @ xp.ascontiguousarray(_packed_outer(Y_block, tril).T)).astype(np.float64)
        B += xp.asarray(data.CR[s:e].T @ xp.ascontiguousarray(Y_block.T)).astype(np.float64)
    solution, failed = packed_spd_solve(G, B, lam, xp)
    raise_if_failed([failed], "classifier", xp)
    return solution.T.astype(dtype)


def squared_residual(X, Y, data, *, chunk=None):
    """``sum c (r - x_u^T y_i)^2`` over the observed entries (float64)."""
    xp = data.xp
    dtype = data.R.dtype
    Xt = xp.ascontiguousarray(as_module(xp, X, dtype).T)
    Yt = as_module(xp, Y, dtype).T
    n = data.C.shape[0]
    return float(sum(_block_sse(Xt, Yt[s:e], data, s, e) for s, e in _blocks(n, _rows_per_block(data, X.shape[0],
                                                                                                    chunk))))


class CupySparseProblem(SparseProblem):
    """:class:`~cfe_fast.backends.in_memory.SparseProblem` with the kernels of this module on ``data``
    (:class:`SparseData`); the factors live on ``data.xp``."""

    def __init__(self, backend, P, data, lam, settings, labeled, y_labeled, omega, classifier_quality=None):
        super().__init__(backend, P, lam, settings, labeled, y_labeled, omega, classifier_quality)
        self.data = data

    def _loss(self, sse, X, Y):
        xp = self.data.xp
        norms = [squared_norm(F) if is_numpy(xp) else float(xp.sum(F.astype(np.float64) ** 2)) for F in (X, Y)]
        return self._normalised(normalised_reconstruction_loss(sse, *norms, self.lam, X.shape[1], Y.shape[1]))

    def classifier_step(self, state, solver="auto"):
        """X from Y, each classifier over its observed instances."""
        state.X = update_classifier_factors(state.Y, self.data, self.lam)

    def instance_step(self, state, solver="auto"):
        """Y from X, each instance over its observed classifiers, and L_rec at (X, Y) in the same pass."""
        state.forget_derived()
        state.Y = None  # the new factors do not depend on the old ones: free them first
        state.Y, sse = update_instance_factors(state.X, self.data, self.lam, with_loss=True)
        state.reconstruction = self._loss(sse, state.X, state.Y)

    def reconstruction_loss(self, X, Y):
        return self._loss(squared_residual(X, Y, self.data), X, Y)


def start_fit(backend, data):
    """``(problem, state, progress)`` of a fit on the checked sparse ``data.P`` (see ``Backend.start_fit``)."""
    P = data.P
    values, quality = sparse_confidences(data)
    entries = sparse_data(P, values)
    del values
    n, m = P.shape
    progress = data.resume or start_state(data, P, complete=P.nnz == n * m)
    labeled = data.labeled
    X, Y, labeled_placed, y_labeled, omega = backend.place(progress.X, progress.Y, labeled, data.labels[labeled],
                                                           data.omega)
    problem = CupySparseProblem(backend, P, entries, data.lam, data.settings, labeled_placed, y_labeled, omega,
                                quality)
    progress.X = progress.Y = None  # the state owns the factors
    return problem, State(X, Y, progress.w, progress.b), progress


def fold_in_block(X, rows, C, lam):
    """Instance factors (d, rows) of a checked CSR block of new instances with confidences C (its pattern)."""
    return to_host(update_instance_factors(X, sparse_data(rows, C.data.astype(rows.dtype)), lam))
