"""The CuPy backend's kernels: array-module generic, over column blocks (chunks) of instances.

Every kernel computes with an array module ``xp`` -- CuPy when an argument
is a CuPy array or a GPU is usable, NumPy otherwise -- so the same code runs
(and is tested) on a machine without a GPU. Work proceeds over chunks of
instances, so n d^2 never has to fit at once.

* Instance step: the packed Grams of a chunk are one GEMM,
  ``G = C_chunk^T @ P_X^T`` with ``P_X[t(a, b), i] = x_i[a] x_i[b]`` (lower
  triangle, instance-major so that each system's entries are contiguous);
  in the dual form (:func:`choose_solver`) the m x m systems
  ``lam I + D X^T X D``, ``D = diag(sqrt(c))``, are built elementwise.
* Classifier step: per-chunk partial Grams ``P_Y @ C_chunk^T`` accumulated
  in float64; on CuPy, P_Y comes from one small kernel (no gathered copies).
* Systems are solved by :mod:`.solve`, in float64.
* The exact trainer's kernels (:func:`instance_solves`,
  :func:`classifier_gram_terms`) reuse the half-steps' Grams; the joint
  trainer's :func:`reconstruction_gradient` forms the weighted residual one
  block at a time, like :func:`reconstruction_loss`.
* The aggregator pass is z = v^T y + b with v = X w, elementwise loss terms
  and the gradient by one GEMV per chunk: O(n_L d), R_hat never formed.
* TF32: cfe_fast never enables it. CuPy runs float32 GEMMs in TF32 only when
  the environment variable ``CUPY_TF32`` is set to a positive integer; then
  float32 Grams carry ~1e-3 relative error and a :class:`RuntimeWarning`
  says so.
"""

from functools import lru_cache

import numpy as np

from ..._float64 import working_dtype
from .. import shared_gram
from ...core.losses import aggregator_terms_from_sums, normalised_reconstruction_loss, sample_loss_terms
from .arrays import (
    Output,
    array_module,
    as_module,
    c_type,
    chunk_size,
    compute_module,
    cuda_kernels,
    gpu_module,
    is_numpy,
    stream_columns,
    to_host,
    warn_if_tf32,
)
from .solve import packed_spd_solve, raise_if_failed, solve_bytes, tril_indices, unpack


def choose_solver(m, d, lam=1.0):
    """The instance-step form of this backend: the dual m x m systems when m < d, else the primal d x d.

    The dual systems are built elementwise and solved by the batched solver,
    which runs at a few per cent of the GPU's rate; the primal Grams are one
    GEMM per chunk. The dual form therefore pays only when its systems are
    the smaller ones.
    """
    return "dual" if m < d else "primal"


def _packed_outer(F, tril):
    """(k, nb) columns f -> (k (k + 1) / 2, nb) packed lower f f^T per column.

    ``tril`` is ``tril_indices(k, xp)``. On CuPy one kernel writes the result,
    without the two gathered (T, nb) copies of ``F``.
    """
    rows, cols = tril
    xp = array_module(F)
    if not cuda_kernels(xp):
        return F[rows] * F[cols]
    F = xp.ascontiguousarray(F)
    k, width = F.shape
    out = xp.empty((rows.shape[0], width), dtype=F.dtype)
    threads = 256
    _packed_outer_kernel(F.dtype)(((width + threads - 1) // threads, k), (threads,), (F, np.int64(width), out))
    return out


_PACKED_OUTER_SOURCE = r"""
// out[a (a + 1) / 2 + b, u] = F[a, u] F[b, u] for b <= a; one row a per blockIdx.y
extern "C" __global__ void packed_outer(const F_t* __restrict__ F, const long long width, F_t* __restrict__ out)
{
    const long long u = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int a = blockIdx.y;
    if (u >= width) return;
    const F_t f_a = F[a * width + u];
    F_t* row = out + (long long)(a * (a + 1) / 2) * width + u;
    for (int b = 0; b <= a; ++b) row[b * width] = f_a * F[b * width + u];
}
"""


@lru_cache(maxsize=None)
def _packed_outer_kernel(dtype):
    return gpu_module().RawKernel(f"typedef {c_type(dtype)} F_t;\n" + _PACKED_OUTER_SOURCE, "packed_outer")


def _primal_grams(PXt, C_c):
    """(nc, T) packed Grams of a chunk of instances, instance-major: one GEMM."""
    return C_c.T @ PXt


def _classifier_grams(Y_c, C_c, tril):
    """(T, m) packed partial Grams of the classifiers over a chunk of instances: one GEMM."""
    return _packed_outer(Y_c, tril) @ C_c.T


def _instance_bytes(m, d, dtype, xp):
    """Working memory of the instance step per instance (bytes): its system, right-hand side and solve."""
    if choose_solver(m, d) == "dual":  # m x m systems, built in float64
        return 8 * (m * (m + 1) // 2 + 4 * m + d) + solve_bytes(m, xp)
    return _primal_bytes(m, d, dtype, xp)


def _primal_bytes(m, d, dtype, xp):
    """Working memory per instance of the primal (d x d) instance systems (bytes)."""
    return d * (d + 1) // 2 * np.dtype(dtype).itemsize + 8 * (2 * m + 4 * d) + solve_bytes(d, xp)


def _classifier_bytes(m, d, dtype):
    """Working memory of the classifier step per instance (bytes)."""
    return np.dtype(dtype).itemsize * (d * (d + 1) // 2 + 2 * d + 3 * m)


def _primal_systems(X, PXt, R_c, C_c):
    """Packed Grams (nc, T) and right-hand sides (nc, d) float64 of a chunk's primal instance systems."""
    return _primal_grams(PXt, C_c), (X @ (C_c * R_c)).T.astype(np.float64)


def _instance_block_primal(X, PXt, R_c, C_c, lam, xp):
    G, B = _primal_systems(X, PXt, R_c, C_c)
    return packed_spd_solve(G, B, lam, xp)


def _instance_block_dual(X64, XtX_packed, tril, R_c, C_c, lam, xp):
    rows, cols = tril
    S = xp.sqrt(C_c.astype(np.float64))  # (m, nc): D per instance
    St = S.T
    G = St[:, rows] * St[:, cols] * XtX_packed  # (nc, T): packed D X^T X D
    Z, failed = packed_spd_solve(G, (S * R_c).T, lam, xp)
    return (X64 @ (S * Z.T)).T, failed


def update_instance_factors(X, R, C, lam, *, xp=None, chunk=None, with_loss=False):
    """Instance half-step (see :func:`cfe_fast.reference.update_instance_factors`).

    Parameters
    ----------
    X : array (d, m)
    R, C : array (m, n)
        NumPy arrays are streamed to the GPU when computing there.
    lam : float
    xp : module, optional
        NumPy or CuPy; default :func:`compute_module` of the arguments.
    chunk : int, optional
        Instances per block; default from the working-memory budget.
    with_loss : bool
        Also return the normalised L_rec at (X, Y), summed block by block while
        the block of R and C is on the device.

    Returns
    -------
    Y : array (d, n), float32 for float32 R else float64; a CuPy array when R is one;
    and the loss if ``with_loss``.
    """
    xp = xp or compute_module(X, R, C)
    if C is None:  # confidence 1 everywhere: one shared Gram
        Yt, *loss = shared_gram.instance_factors(X, R, lam, xp, with_loss=with_loss)
        return (_placed_like(R, Yt.T), *loss) if with_loss else _placed_like(R, Yt.T)
    dtype = working_dtype(R)
    if not is_numpy(xp):
        warn_if_tf32(dtype)
    d, m = X.shape
    X64 = as_module(xp, X, np.float64)
    Xw = X64.astype(dtype)
    if choose_solver(m, d) == "dual":
        tril = tril_indices(m, xp)
        XtX_packed = (X64.T @ X64)[tril]

        def solve(R_c, C_c):
            return _instance_block_dual(X64, XtX_packed, tril, R_c, C_c, lam, xp)
    else:
        PXt = xp.ascontiguousarray(_packed_outer(Xw, tril_indices(d, xp)).T)

        def solve(R_c, C_c):
            return _instance_block_primal(Xw, PXt, R_c, C_c, lam, xp)

    per_instance = _instance_bytes(m, d, dtype, xp)
    if with_loss:
        per_instance += 16 * m  # the float64 residual of a block
    out = Output(xp, R, d, dtype)
    failures = []
    sse = y_norm = xp.zeros(())
    for s, e, (R_c, C_c) in stream_columns((R, C), chunk_size(xp, per_instance, chunk), xp):
        Y_c, failed = solve(R_c.astype(dtype, copy=False), C_c.astype(dtype, copy=False))
        Y_c = Y_c.T.astype(dtype)
        out.put(s, e, Y_c)
        failures.append(failed)
        if with_loss:
            sse = sse + _squared_residual(Xw, Y_c, R_c, C_c, xp)
            y_norm = y_norm + xp.sum(Y_c.astype(np.float64) ** 2)
    raise_if_failed(failures, "instance", xp)
    if not with_loss:
        return out.array
    return out.array, _normalised_loss(sse, y_norm, Xw, lam, R.shape)


def update_classifier_factors(Y, R, C, lam, *, xp=None, chunk=None):
    """Classifier half-step (see :func:`cfe_fast.reference.update_classifier_factors`).

    Grams are accumulated over instance blocks in float64. Parameters are as in
    :func:`update_instance_factors`, with Y (d, n) in place of X (streamed too).
    Returns X (d, m), a CuPy array when R is one.
    """
    xp = xp or compute_module(Y, R, C)
    if C is None:
        return _placed_like(R, shared_gram.classifier_factors(Y, R, lam, xp))
    G, B = _classifier_sums(Y, R, C, xp, chunk)
    solution, failed = packed_spd_solve(G.T, B.T, lam, xp)
    raise_if_failed([failed], "classifier", xp)
    return _placed_like(R, solution.T.astype(working_dtype(R)))


def _classifier_sums(Y, R, C, xp, chunk):
    """Packed Grams G (T, m) and right-hand sides B (d, m) of the classifier step, summed in float64 over blocks."""
    dtype = working_dtype(R)
    if not is_numpy(xp):
        warn_if_tf32(dtype)
    d, m = Y.shape[0], R.shape[0]
    G = xp.zeros((d * (d + 1) // 2, m))
    B = xp.zeros((d, m))
    tril = tril_indices(d, xp)
    size = chunk_size(xp, _classifier_bytes(m, d, dtype), chunk)
    for _, _, (Y_c, R_c, C_c) in stream_columns((Y, R, C), size, xp):
        Y_c, C_c = Y_c.astype(dtype, copy=False), C_c.astype(dtype, copy=False)
        G += _classifier_grams(Y_c, C_c, tril).astype(np.float64)
        B += (Y_c @ (C_c * R_c.astype(dtype, copy=False)).T).astype(np.float64)
    return G, B


def _placed_like(R, a):
    """A result where R lives: on the host for NumPy R, else as it is."""
    return to_host(a) if array_module(R) is np else a


def instance_solves(X, R, C, lam, w, *, xp=None, chunk=None, with_loss=False):
    """The instance half-step and Z[:, i] = A_i^-1 X w from the same systems (see
    :func:`cfe_fast.reference.instance_solves`).

    Always the primal d x d systems A_i = X C_i X^T + lam I, whatever
    :func:`choose_solver` says (the dual m x m form reaches A_i^-1 X w only
    through a Woodbury correction). Each chunk's packed Grams are one GEMM;
    both right-hand sides are solved against them in float64. Parameters as in :func:`update_instance_factors`,
    plus w (m,).

    Returns
    -------
    (Y, Z) : arrays (d, n); Y float32 for float32 R else float64, Z float64;
    CuPy arrays when R is one; then the loss if ``with_loss``.
    """
    xp = xp or compute_module(X, R, C)
    if C is None:
        Yt, Zt, *loss = shared_gram.instance_factors(X, R, lam, xp, w=to_host(w), with_loss=with_loss)
        return (_placed_like(R, Yt.T), _placed_like(R, Zt.T), *loss)
    dtype = working_dtype(R)
    if not is_numpy(xp):
        warn_if_tf32(dtype)
    d, m = X.shape
    X64 = np.asarray(to_host(X), dtype=np.float64)
    Xw = as_module(xp, X64, dtype)
    PXt = xp.ascontiguousarray(_packed_outer(Xw, tril_indices(d, xp)).T)
    v = xp.asarray(X64 @ np.asarray(to_host(w), dtype=np.float64))
    Y, Z = Output(xp, R, d, dtype), Output(xp, R, d, np.float64)
    failures = []
    sse = y_norm = xp.zeros(())
    size = chunk_size(xp, _primal_bytes(m, d, dtype, xp) + 8 * 3 * d + (16 * m if with_loss else 0), chunk)
    for s, e, (R_c, C_c) in stream_columns((R, C), size, xp):
        G, B = _primal_systems(Xw, PXt, R_c.astype(dtype, copy=False), C_c.astype(dtype, copy=False))
        Y_c, failed = packed_spd_solve(G, B, lam, xp)
        Z_c, _ = packed_spd_solve(G, xp.broadcast_to(v, B.shape), lam, xp)  # the same systems fail
        Y_c = Y_c.T.astype(dtype)
        Y.put(s, e, Y_c)
        Z.put(s, e, Z_c.T)
        failures.append(failed)
        if with_loss:
            sse = sse + _squared_residual(Xw, Y_c, R_c, C_c, xp)
            y_norm = y_norm + xp.sum(Y_c.astype(np.float64) ** 2)
    raise_if_failed(failures, "instance", xp)
    if not with_loss:
        return Y.array, Z.array
    return Y.array, Z.array, _normalised_loss(sse, y_norm, Xw, lam, R.shape)


def classifier_gram_terms(Y, R, C, *, xp=None, chunk=None):
    """Per-classifier Grams (m, d, d) and right-hand sides (m, d), float64, before the ridge and the solve
    (see :func:`cfe_fast.reference.classifier_gram_terms`): the sums of :func:`update_classifier_factors`.

    CuPy arrays when R is one.
    """
    xp = xp or compute_module(Y, R, C)
    if C is None:
        return tuple(_placed_like(R, t) for t in shared_gram.gram_terms(Y, R, xp))
    G, B = _classifier_sums(Y, R, C, xp, chunk)
    return _placed_like(R, unpack(G.T, Y.shape[0], 0.0, xp)), _placed_like(R, B.T)


def reconstruction_loss(X, Y, R, C, lam, *, xp=None, chunk=None):
    """Normalised reconstruction term (see :func:`cfe_fast.reference.reconstruction_loss`).

    R_hat is formed one block at a time only; sums run in float64.
    """
    xp = xp or compute_module(X, Y, R, C)
    if C is None:
        return shared_gram.reconstruction_loss(X, Y, R, lam, xp)
    dtype = working_dtype(R)
    Xw = as_module(xp, X, dtype)
    sse = y_norm = xp.zeros(())
    per_instance = np.dtype(dtype).itemsize * (4 * R.shape[0] + Y.shape[0])
    for _, _, (Y_c, R_c, C_c) in stream_columns((Y, R, C), chunk_size(xp, per_instance, chunk), xp):
        Y_c = Y_c.astype(dtype, copy=False)
        sse = sse + _squared_residual(Xw, Y_c, R_c, C_c, xp)
        y_norm = y_norm + xp.sum(Y_c.astype(np.float64) ** 2)
    return _normalised_loss(sse, y_norm, Xw, lam, R.shape)


def reconstruction_gradient(X, Y, R, C, lam, *, xp=None, chunk=None):
    """Gradients of the normalised reconstruction term (see :func:`cfe_fast.reference.reconstruction_gradient`).

    Per block of instances E = C (R - X^T Y) in float64, R_hat formed for
    that block only: dL/dX accumulates -2 Y E^T, the block's dL/dY is
    -2 X E + 2 lam Y; both normalised by m n.

    Returns
    -------
    (dX (d, m), dY (d, n)) : float64 arrays, CuPy arrays when R is one.
    """
    xp = xp or compute_module(X, Y, R, C)
    if C is None:
        return tuple(_placed_like(R, g) for g in shared_gram.reconstruction_gradient(X, Y, R, lam, xp))
    dtype = working_dtype(R)
    m, n = R.shape
    X64 = as_module(xp, X, np.float64)
    Xw = X64.astype(dtype)
    d = X64.shape[0]
    gX = xp.zeros((d, m))
    gY = Output(xp, R, d, np.float64)
    per_instance = 8 * (4 * m + 3 * d)
    for s, e, (Y_c, R_c, C_c) in stream_columns((Y, R, C), chunk_size(xp, per_instance, chunk), xp):
        Y_c = Y_c.astype(dtype, copy=False)
        E = C_c.astype(np.float64) * _residual(Xw, Y_c, R_c)
        Y64 = Y_c.astype(np.float64)
        gX -= 2 * (Y64 @ E.T)
        gY.put(s, e, (2 * lam * Y64 - 2 * (X64 @ E)) / (m * n))
    return _placed_like(R, (gX + 2 * lam * X64) / (m * n)), gY.array


def _residual(Xw, Y_c, R_c):
    """r - r_hat over a block of instances, in float64."""
    return R_c.astype(np.float64) - (Xw.T @ Y_c).astype(np.float64)


def _squared_residual(Xw, Y_c, R_c, C_c, xp):
    """sum c (r - r_hat)^2 over a block of instances, in float64."""
    return xp.sum(C_c.astype(np.float64) * _residual(Xw, Y_c, R_c) ** 2)


def _normalised_loss(sse, y_norm, Xw, lam, shape):
    """L_rec from the weighted residual and ||Y||^2 (device scalars) as a float."""
    m, n = shape
    return normalised_reconstruction_loss(sse, (Xw.astype(np.float64) ** 2).sum(), y_norm, lam, m, n)


def aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact",
                     hessian=False, *, xp=None, chunk=None):
    """Fused aggregator kernel (see :func:`cfe_fast.reference.aggregator_terms`).

    One pass over blocks of labeled instances: z = v^T y + b with v = X w, the
    elementwise loss terms, g = sum e_i [y_i; 1] by one GEMV per block and, if
    asked, H = sum h_i [y_i; 1][y_i; 1]^T; all in float64, R_hat never formed.
    Returns :class:`cfe_fast.core.losses.AggregatorTerms` of host values.
    """
    xp = xp or compute_module(X, Y_labeled)
    X64 = np.asarray(to_host(X), dtype=np.float64)
    d = X64.shape[0]
    v = xp.asarray(X64 @ np.asarray(w, dtype=np.float64))
    y_labeled, omega = (a if array_module(a) is not np else np.asarray(a, dtype=np.float64) for a in (y_labeled, omega))
    loss_sum = xp.zeros(())
    g = xp.zeros(d + 1)
    H = xp.zeros((d + 1, d + 1)) if hessian else None
    per_instance = 8 * (3 * d + 12)
    for _, _, (Y_c, y_c, om_c) in stream_columns((Y_labeled, y_labeled, omega), chunk_size(xp, per_instance, chunk), xp):
        Y_c = Y_c.astype(np.float64)
        y_c, om_c = y_c.astype(np.float64, copy=False), om_c.astype(np.float64, copy=False)
        loss, grad, curv = sample_loss_terms(v @ Y_c + b, y_c, focal_gamma, focal_variant, xp)
        e = om_c * grad
        loss_sum += om_c @ loss
        g[:d] += Y_c @ e
        g[d] += xp.sum(e)
        if hessian:
            h = om_c * curv
            Yh = Y_c * h
            H[:d, :d] += Yh @ Y_c.T
            H[:d, d] += xp.sum(Yh, axis=1)
            H[d, d] += xp.sum(h)
    total = float(omega.sum())  # where omega lives: no copy of it to the host
    if hessian:
        H = to_host(H)
        H[d, :d] = H[:d, d]
    return aggregator_terms_from_sums(X64, loss_sum, to_host(g), H, total, hessian)
