"""CuPy backend: the kernels of :mod:`cfe_fast.reference` on an NVIDIA GPU.

The code is array-module generic: every kernel computes with an array module
``xp`` — CuPy when an argument is a CuPy array or a GPU is usable, NumPy
otherwise — so the same code runs (and is tested) on a machine without a GPU.
CuPy is never imported unless it is installed and asked for.

Design
------
* Layout of SPEC.md: R, C are (m, n), X is (d, m), Y is (d, n). Work proceeds
  over column blocks (chunks) of instances, so n d^2 never has to fit at once.
* Where the data live decides where results go: CuPy R gives CuPy results
  (device-resident across iterations); NumPy R on a GPU is *streamed*: chunks
  go host -> device through pinned, double-buffered memory on a side stream,
  overlapped with the compute of the previous chunk, and results come back to
  the host, so n is bounded by host memory, not by the GPU.
* Instance step (m >= d): the packed Grams of a chunk are one GEMM,
  ``G = C_chunk^T @ P_X^T`` with ``P_X[t(a, b), i] = x_i[a] x_i[b]`` (lower
  triangle, T = d (d + 1) / 2 rows), instance-major so that each system's
  T entries are contiguous; when m < d the dual m x m form
  ``y = X D (lam I + D X^T X D)^-1 D r``, ``D = diag(sqrt(c))``, whose packed
  systems are built elementwise.
* Classifier step: per-chunk partial Grams ``P_Y @ C_chunk^T`` accumulated in
  float64; on CuPy, P_Y comes from one small kernel (no gathered copies).
* Systems are solved from their packed triangles, in float64 (as the Numba
  backend factorises float32 data in float64). On CuPy, for k <= 64, one CUDA
  kernel (:data:`_PACKED_SOLVE_SOURCE`, compiled once per k and input dtype)
  stages each system in shared memory, keeps two rows of the factor per thread
  in registers, and runs Cholesky with the forward substitution, then the
  back substitution, in one launch per chunk. Otherwise (NumPy, or k > 64)
  they are unpacked to (batch, k, k), factorised by a batched Cholesky
  (LAPACK on NumPy, cuSOLVER potrfBatched on CuPy) and solved by one batched
  solve. A system is singular when a pivot ``A_jj - sum_p L_jp^2`` falls to
  ``PIVOT_RTOL * A_jj`` or below (the rule of every backend); the kernel tests
  it as it factorises, the library path recomputes it from the factor so that
  it holds whatever a failed factorisation left behind.
* The aggregator pass is z = v^T y + b with v = X w, elementwise loss terms and
  the gradient by one GEMV per chunk: O(n_L d), R_hat never formed.
* TF32: cfe_fast never enables it. CuPy runs float32 GEMMs in TF32 only when
  the environment variable ``CUPY_TF32`` is set to a positive integer; then
  float32 Grams carry ~1e-3 relative error and a :class:`RuntimeWarning`
  says so.
"""

import os
import sys
import warnings
from functools import lru_cache

import numpy as np

from ._errors import PIVOT_RTOL, SingularSystemError
from .reference import AggregatorTerms

#: working memory of one chunk, by array module (bytes); the GPU value keeps a
#: chunk of (m=100, d=64) systems around 29k instances so per-chunk launch
#: overheads stay small against the GEMM
_CHUNK_BYTES = {"numpy": 64 * 2**20, "cupy": 2 * 2**30}
#: share of free device memory that ``to_device`` may fill with the data
_DEVICE_FRACTION = 0.5


# ------------------------------------------------------------ array modules
def array_module(*arrays):
    """CuPy if any argument is a CuPy array, NumPy otherwise (never imports CuPy)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and any(isinstance(a, cupy.ndarray) for a in arrays):
        return cupy
    return np


@lru_cache(maxsize=1)
def gpu_module():
    """The ``cupy`` module when it imports and sees a CUDA device, else None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except (ImportError, RuntimeError):  # not installed, or no driver / device
        return None
    return cupy


def compute_module(*arrays):
    """The module the kernels compute with: CuPy for CuPy input or when a GPU is usable."""
    xp = array_module(*arrays)
    if xp is np:
        xp = gpu_module() or np
    return xp


def _is_numpy(xp):
    return xp is np


def _c_type(dtype):
    """The CUDA C name of a float32 or float64 dtype, for the kernels' typedefs."""
    return {"float32": "float", "float64": "double"}[np.dtype(dtype).name]


def _cuda_kernels(xp):
    """Whether ``xp`` is CuPy on a usable device, where cfe_fast's own CUDA kernels run."""
    return not _is_numpy(xp) and xp is gpu_module()


def _as(xp, a, dtype=None):
    """``a`` as an ``xp`` array (moved to the host when xp is NumPy)."""
    return xp.asarray(to_host(a) if _is_numpy(xp) else a, dtype=dtype)


def to_host(a):
    """A NumPy array for a CuPy array; anything else is returned unchanged."""
    return a.get() if array_module(a) is not np else a


def to_device(*arrays):
    """Place host arrays on the GPU for device-resident iterations.

    Returns the arrays as CuPy arrays when a GPU is usable and together they fit
    in ``_DEVICE_FRACTION`` of its free memory; otherwise unchanged, and the
    kernels then stream them from the host chunk by chunk. ``None`` entries
    (e.g. factors not computed yet) stay ``None``.
    """
    cupy = gpu_module()
    if cupy is None:
        return arrays
    free = cupy.cuda.Device().mem_info[0] + cupy.get_default_memory_pool().free_bytes()
    if sum(a.nbytes for a in arrays if a is not None) > _DEVICE_FRACTION * free:
        return arrays
    return tuple(None if a is None else cupy.asarray(a) for a in arrays)


def _warn_if_tf32(dtype):
    """Warn when CuPy would run float32 GEMMs in TF32 (``CUPY_TF32`` set)."""
    try:
        tf32 = int(os.environ.get("CUPY_TF32", "0")) > 0
    except ValueError:
        tf32 = False
    if tf32 and np.dtype(dtype) == np.float32:
        warnings.warn(
            "CUPY_TF32 is set: CuPy computes float32 Gram matrices in TF32 (10-bit mantissa, "
            "~1e-3 relative error); unset CUPY_TF32 for full float32 accuracy, or use float64",
            RuntimeWarning,
            stacklevel=3,
        )


def _working_dtype(R):
    return np.float32 if R.dtype == np.float32 else np.float64


def _module_name(xp):
    return "numpy" if _is_numpy(xp) else "cupy"


def _chunk_size(xp, bytes_per_instance, chunk):
    """Instances per chunk: ``chunk`` if given, else what fits the working-memory budget."""
    if chunk is not None:
        return max(1, int(chunk))
    return max(1, _CHUNK_BYTES[_module_name(xp)] // max(int(bytes_per_instance), 1))


def _bounds(n, size):
    return [(s, min(n, s + size)) for s in range(0, n, size)]


# ------------------------------------------------------------- streaming
def stream_columns(arrays, size, xp):
    """Iterate over blocks of ``size`` columns (last axis) of several arrays.

    Yields ``(start, stop, blocks)`` with the blocks as ``xp`` arrays: slices of
    arrays already in ``xp``; host arrays moved to the GPU when ``xp`` is CuPy
    (double-buffered through pinned memory on a side stream, the copy of block
    k + 1 overlapping the compute of block k). A yielded block is valid until
    the next iteration.
    """
    n = arrays[0].shape[-1]
    bounds = _bounds(n, size)
    host = [i for i, a in enumerate(arrays) if array_module(a) is not xp]
    if not host or _is_numpy(xp):
        for s, e in bounds:
            yield s, e, [_as(xp, a[..., s:e]) for a in arrays]
        return
    yield from _staged_columns(xp, arrays, host, bounds)


def _order(a):
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _staged_columns(cupy, arrays, host, bounds):
    """Host -> device double buffering for :func:`stream_columns` (CuPy only)."""
    import cupyx

    width = max(e - s for s, e in bounds)
    copy_stream = cupy.cuda.Stream(non_blocking=True)
    compute_stream = cupy.cuda.get_current_stream()
    sizes = {i: arrays[i].size // arrays[i].shape[-1] * width for i in host}
    slots = [
        {i: (cupyx.empty_pinned(sizes[i], arrays[i].dtype), cupy.empty(sizes[i], arrays[i].dtype)) for i in host}
        for _ in range(2)
    ]
    # The pool hands out memory freed on the compute stream at once, ordered for that stream
    # only: kernels still queued there may read it. The side stream copies after them.
    copy_stream.wait_event(compute_stream.record())
    copied, released = [None, None], [None, None]

    def issue(k):
        s, e = bounds[k]
        slot = k % 2
        if copied[slot] is not None:
            copied[slot].synchronize()  # the pinned buffer's previous copy is done
        if released[slot] is not None:
            copy_stream.wait_event(released[slot])  # the device buffer's previous block is consumed
        blocks = []
        for i, a in enumerate(arrays):
            if i not in slots[slot]:
                blocks.append(a[..., s:e])
                continue
            shape, order = a[..., s:e].shape, _order(a[..., s:e])
            count = a.size // a.shape[-1] * (e - s)
            pinned, device = slots[slot][i]
            staged = pinned[:count].reshape(shape, order=order)
            staged[...] = a[..., s:e]
            block = device[:count].reshape(shape, order=order)
            block.set(staged, stream=copy_stream)
            blocks.append(block)
        copied[slot] = copy_stream.record()
        return blocks

    pending = issue(0)
    for k, (s, e) in enumerate(bounds):
        blocks, event = pending, copied[k % 2]
        if k + 1 < len(bounds):
            pending = issue(k + 1)
        compute_stream.wait_event(event)
        yield s, e, blocks
        released[k % 2] = compute_stream.record()


class _Output:
    """A (k, n) result filled block by block: on the host when R is, else in ``xp``."""

    def __init__(self, xp, R, k, dtype):
        self.host = array_module(R) is np
        self.array = (np if self.host else xp).empty((k, R.shape[1]), dtype=dtype)

    def put(self, s, e, block):
        self.array[:, s:e] = to_host(block) if self.host else block


# ------------------------------------------------------- batched SPD solves
def _tril_indices(k, xp):
    rows, cols = np.tril_indices(k)
    return xp.asarray(rows), xp.asarray(cols)


def _unpack(G, k, lam, xp):
    """(nb, T) packed lower triangles -> (nb, k, k) symmetric float64 systems + lam I."""
    rows, cols = _tril_indices(k, xp)
    G = G.astype(np.float64, copy=False)
    A = xp.empty((G.shape[0], k, k))
    A[:, rows, cols] = G
    A[:, cols, rows] = G
    diag = xp.arange(k)
    A[:, diag, diag] += lam
    return A


def _cholesky(A, xp):
    """Batched lower Cholesky factor; NaN factors for systems NumPy refuses.

    CuPy does not raise (its default ``linalg`` error state is "ignore"): what
    it leaves in a failed factor is caught by :func:`pivot_failures`.
    """
    try:
        return xp.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        if not _is_numpy(xp):
            raise
        L = np.full_like(A, np.nan)  # NumPy fails the whole batch: factorise one at a time
        for b, a in enumerate(A):
            try:
                L[b] = np.linalg.cholesky(a)
            except np.linalg.LinAlgError:
                pass
        return L


def pivot_failures(A, L, xp):
    """Systems whose Cholesky factorisation failed or met a tiny pivot.

    The pivots ``A_jj - sum_{p<j} L_jp^2`` are recomputed from the factor: for
    the first failing column j the entries L_jp (p < j) are valid whatever the
    factorisation left in column j and beyond, so the rule does not depend on
    how a library reports failure.

    Returns a (nb,) boolean array.
    """
    k = A.shape[-1]
    strictly_lower = xp.asarray(np.tri(k, k, -1, dtype=bool))
    diag_A = xp.diagonal(A, axis1=1, axis2=2)
    pivots = diag_A - xp.sum(xp.where(strictly_lower, L, 0.0) ** 2, axis=2)
    good = xp.all(pivots > PIVOT_RTOL * diag_A, axis=1) & xp.all(xp.isfinite(L), axis=(1, 2))
    return ~good


def spd_solve(A, B, xp):
    """Solve nb SPD systems A x = b (float64).

    A : (nb, k, k); B : (nb, k). The batched Cholesky factor decides which
    systems are singular (:func:`pivot_failures`); the solutions come from one
    batched solve (LAPACK gesv on NumPy, cuBLAS getrfBatched/getrsBatched on
    CuPy): a constant number of launches per chunk, where substitution loops
    would launch O(k) small kernels. Returns (solutions (nb, k), failed (nb,));
    failed systems are replaced by the identity, so their placeholder solution
    is finite.
    """
    failed = pivot_failures(A, _cholesky(A, xp), xp)
    A = xp.where(failed[:, None, None], xp.eye(A.shape[-1]), A)
    return xp.linalg.solve(A, B[..., None])[..., 0], failed


#: largest system the CUDA kernel solves (two rows of the factor per thread, in registers)
_KERNEL_MAX_K = 64
#: shared memory a block of the kernel may use (bytes); under the 48 KiB static limit
_KERNEL_SHARED_BYTES = 40 * 1024
#: 32-bit registers per streaming multiprocessor (every NVIDIA GPU since Kepler)
_REGISTERS_PER_SM = 65536

_PACKED_SOLVE_SOURCE = r"""
// Solve (A_u + lam I) x_u = b_u, SYSTEMS systems per block, W = (K + 1) / 2
// threads per system. Thread t owns rows i1 = t and i2 = K - 1 - t of the
// system, then of its Cholesky factor, in registers: a[l] holds entry (i1, l)
// for l <= i1 and entry (i2, K - 1 - l) for l > i1, d2 the diagonal of i2, so
// the two triangular rows fill K + 1 registers without waste and every index
// into a[] is a compile-time constant (all loops over j and l are unrolled).
// A_u is the packed lower triangle G[u, i (i + 1) / 2 + l].
#define T (K * (K + 1) / 2)
#define W ((K + 1) / 2)
extern "C" __global__ void __launch_bounds__(W * SYSTEMS, MIN_BLOCKS) packed_spd_solve(
    const in_t* __restrict__ G, const double* __restrict__ B, const double lam,
    const double rtol, const long long nb, double* __restrict__ x, bool* __restrict__ failed)
{
    __shared__ double packed[SYSTEMS * T];         // the systems, then the factors' rows
    __shared__ double column[SYSTEMS * 2 * K];     // column j below the pivot, unscaled;
                                                   // two buffers, alternating with j
    __shared__ double inverse_pivot[SYSTEMS * K];  // 1 / p_j
    __shared__ double inverse_root[SYSTEMS * K];   // 1 / sqrt(p_j) = 1 / L_jj
    __shared__ double value[SYSTEMS * K];          // b_j when row j pivots, later x_j
    __shared__ int bad[SYSTEMS];
    const int s = threadIdx.x / W, t = threadIdx.x - s * W;
    const int i1 = t, i2 = K - 1 - t;
    const bool two = i2 > i1;  // false for the middle row of an odd K
    const long long first = (long long)blockIdx.x * SYSTEMS, u = first + s;
    const long long count = min((long long)SYSTEMS, nb - first) * T;
    for (int e = threadIdx.x; e < SYSTEMS * T; e += blockDim.x)  // coalesced staging
        packed[e] = e < count ? (double)G[first * T + e] : 0.0;
    if (t == 0) bad[s] = 0;
    __syncthreads();
    double* own = packed + s * T;
    double* ip = inverse_pivot + s * K;
    double* ir = inverse_root + s * K;
    double* v = value + s * K;
    const bool real = u < nb;  // else a padding system of the last block: the identity
    double a[K], diag1 = 1.0, d2 = 1.0, root1 = 1.0, root2 = 1.0;
    #pragma unroll
    for (int l = 0; l < K; ++l) {
        a[l] = !real ? 0.0 : l <= i1 ? own[i1 * (i1 + 1) / 2 + l] : own[i2 * (i2 + 1) / 2 + K - 1 - l];
        if (l == i1) { a[l] = real ? a[l] + lam : 1.0; diag1 = a[l]; }
    }
    if (two && real) d2 = own[i2 * (i2 + 1) / 2 + i2] + lam;
    const double diag2 = d2;
    double r1 = real ? B[u * K + i1] : 0.0, r2 = real && two ? B[u * K + i2] : 0.0;
    // Cholesky, right-looking, with the forward substitution L z = b riding along:
    // row i > j takes a_il -= a_ij a_lj / p_j and b_i -= a_ij b_j / p_j
    #pragma unroll
    for (int j = 0; j < K; ++j) {
        double* c = column + (s * 2 + (j & 1)) * K;
        if (i1 == j || (two && i2 == j)) {
            const bool row1 = i1 == j;
            double p = row1 ? a[j] : d2;
            if (!(p > rtol * (row1 ? diag1 : diag2)) || !isfinite(p)) { bad[s] = 1; p = 1.0; }
            const double inverse = 1.0 / p, root = sqrt(inverse);
            ip[j] = inverse;
            ir[j] = root;
            if (row1) { v[j] = r1; r1 *= root; root1 = root; }
            else { v[j] = r2; r2 *= root; root2 = root; }
        }
        if (i1 > j) c[i1] = a[j];
        if (two && i2 > j) c[i2] = a[K - 1 - j];
        __syncthreads();
        if (i1 > j) {
            const double f = a[j] * ip[j];
            #pragma unroll
            for (int l = j + 1; l < K; ++l)
                if (l <= i1) a[l] -= f * c[l];
            r1 -= f * v[j];
            a[j] *= ir[j];
        }
        if (two && i2 > j) {
            const double f = a[K - 1 - j] * ip[j];
            #pragma unroll
            for (int l = j + 1; l < K; ++l)
                if (l < i2) a[K - 1 - l] -= f * c[l];
            d2 -= f * c[i2];
            r2 -= f * v[j];
            a[K - 1 - j] *= ir[j];
        }
    }
    // the strictly lower rows of L to shared memory, for the back substitution L^T x = z
    #pragma unroll
    for (int l = 0; l < K; ++l) {
        if (l < i1) own[i1 * (i1 + 1) / 2 + l] = a[l];
        if (two && l < i2) own[i2 * (i2 + 1) / 2 + l] = a[K - 1 - l];
    }
    __syncthreads();
    #pragma unroll
    for (int j = K - 1; j >= 0; --j) {
        if (i1 == j) { r1 *= root1; v[j] = r1; }
        if (two && i2 == j) { r2 *= root2; v[j] = r2; }
        __syncthreads();
        if (i1 < j) r1 -= own[j * (j + 1) / 2 + i1] * v[j];
        if (two && i2 < j) r2 -= own[j * (j + 1) / 2 + i2] * v[j];
    }
    if (real) {  // a finite placeholder (0) for a failed system
        x[u * K + i1] = bad[s] ? 0.0 : r1;
        if (two) x[u * K + i2] = bad[s] ? 0.0 : r2;
        if (t == 0) failed[u] = bad[s] != 0;
    }
}
"""


@lru_cache(maxsize=None)
def _packed_solve_kernel(k, in_dtype):
    """The compiled CUDA solver for k x k systems with ``in_dtype`` input.

    Returns (kernel, systems per block, threads per block). Up to k = 32 a
    block holds several systems. Past that, registers bound how many systems
    an SM runs at once: a block holds one system, and the register budget per
    thread is capped at 2 k + 40 (a[] plus working registers; a few spill) so
    that more systems run side by side. On an H100 at k = 64 this took the
    solve of 65536 systems from 5.4 ms (247 registers) to 3.7-3.85 ms (168);
    other k in 33..63 were not timed
    (``benchmarks/results/gpu_breakdown_nvidia-h100-80gb-hbm3.md``).
    """
    cupy = gpu_module()
    per_system = 8 * (k * (k + 1) // 2 + 5 * k) + 4
    threads = (k + 1) // 2
    if k > 32:
        systems, min_blocks = 1, max(1, _REGISTERS_PER_SM // ((2 * k + 40) * threads))
    else:
        systems, min_blocks = max(1, min(128 // threads, _KERNEL_SHARED_BYTES // per_system)), 1
    code = (f"#define K {k}\n#define SYSTEMS {systems}\n#define MIN_BLOCKS {min_blocks}\n"
            f"typedef {_c_type(in_dtype)} in_t;\n" + _PACKED_SOLVE_SOURCE)
    return cupy.RawKernel(code, "packed_spd_solve"), systems, systems * threads


def _kernel_solves(k, xp):
    return _cuda_kernels(xp) and k <= _KERNEL_MAX_K


def _solve_bytes(k, xp):
    """Working memory of :func:`packed_spd_solve` per k x k system (bytes)."""
    return 8 * 2 * k if _kernel_solves(k, xp) else 8 * (3 * k * k + 2 * k)


def packed_spd_solve(G, B, lam, xp):
    """Solve nb SPD systems (A_u + lam I) x = b_u from packed lower triangles.

    Parameters
    ----------
    G : (nb, k (k + 1) / 2) array
        Row u holds the lower triangle of A_u, row by row (the order of
        ``np.tril_indices(k)``).
    B : (nb, k) array
    lam : float
        Added to every diagonal.
    xp : module

    Returns
    -------
    (solutions (nb, k) float64, failed (nb,) bool), as :func:`spd_solve`.
    On CuPy with k <= 64 one kernel launch solves them all, in float64.
    """
    nb, k = B.shape
    if not _kernel_solves(k, xp) or nb == 0:
        return spd_solve(_unpack(G, k, lam, xp), B, xp)
    kernel, systems, threads = _packed_solve_kernel(k, G.dtype)
    G = xp.ascontiguousarray(G)
    B = xp.ascontiguousarray(B, dtype=np.float64)
    x = xp.empty((nb, k))
    failed = xp.empty(nb, dtype=bool)
    blocks = (nb + systems - 1) // systems
    kernel((blocks,), (threads,), (G, B, np.float64(lam), np.float64(PIVOT_RTOL), np.int64(nb), x, failed))
    return x, failed


def _raise_if_failed(failures, what, xp):
    failed = xp.concatenate(failures) if failures else xp.zeros(0, dtype=bool)
    if bool(failed.any()):
        idx = int(xp.flatnonzero(failed)[0])
        raise SingularSystemError(
            f"the ridge system of {what} {idx} is singular (or numerically so); increase lam"
        )


# ------------------------------------------------------------ instance step
def _packed_outer(F, tril):
    """(k, nb) columns f -> (k (k + 1) / 2, nb) packed lower f f^T per column.

    ``tril`` is ``_tril_indices(k, xp)``. On CuPy one kernel writes the result,
    without the two gathered (T, nb) copies of ``F``.
    """
    rows, cols = tril
    xp = array_module(F)
    if not _cuda_kernels(xp):
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
    return gpu_module().RawKernel(f"typedef {_c_type(dtype)} F_t;\n" + _PACKED_OUTER_SOURCE, "packed_outer")


def _primal_grams(PXt, C_c):
    """(nc, T) packed Grams of a chunk of instances, instance-major: one GEMM."""
    return C_c.T @ PXt


def _classifier_grams(Y_c, C_c, tril):
    """(T, m) packed partial Grams of the classifiers over a chunk of instances: one GEMM."""
    return _packed_outer(Y_c, tril) @ C_c.T


def _instance_bytes(m, d, dtype, xp):
    """Working memory of the instance step per instance (bytes): its system, right-hand side and solve."""
    if m < d:  # dual m x m form, built in float64
        return 8 * (m * (m + 1) // 2 + 4 * m + d) + _solve_bytes(m, xp)
    return d * (d + 1) // 2 * np.dtype(dtype).itemsize + 8 * (2 * m + 4 * d) + _solve_bytes(d, xp)


def _classifier_bytes(m, d, dtype):
    """Working memory of the classifier step per instance (bytes)."""
    return np.dtype(dtype).itemsize * (d * (d + 1) // 2 + 2 * d + 3 * m)


def _instance_block_primal(X, PXt, R_c, C_c, lam, xp):
    G = _primal_grams(PXt, C_c)
    B = (X @ (C_c * R_c)).T.astype(np.float64)
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
    dtype = _working_dtype(R)
    if not _is_numpy(xp):
        _warn_if_tf32(dtype)
    d, m = X.shape
    X64 = _as(xp, X, np.float64)
    Xw = X64.astype(dtype)
    if m < d:
        tril = _tril_indices(m, xp)
        XtX_packed = (X64.T @ X64)[tril]

        def solve(R_c, C_c):
            return _instance_block_dual(X64, XtX_packed, tril, R_c, C_c, lam, xp)
    else:
        PXt = xp.ascontiguousarray(_packed_outer(Xw, _tril_indices(d, xp)).T)

        def solve(R_c, C_c):
            return _instance_block_primal(Xw, PXt, R_c, C_c, lam, xp)

    per_instance = _instance_bytes(m, d, dtype, xp)
    if with_loss:
        per_instance += 16 * m  # the float64 residual of a block
    out = _Output(xp, R, d, dtype)
    failures = []
    sse = y_norm = xp.zeros(())
    for s, e, (R_c, C_c) in stream_columns((R, C), _chunk_size(xp, per_instance, chunk), xp):
        Y_c, failed = solve(R_c.astype(dtype, copy=False), C_c.astype(dtype, copy=False))
        Y_c = Y_c.T.astype(dtype)
        out.put(s, e, Y_c)
        failures.append(failed)
        if with_loss:
            sse = sse + _squared_residual(Xw, Y_c, R_c, C_c, xp)
            y_norm = y_norm + xp.sum(Y_c.astype(np.float64) ** 2)
    _raise_if_failed(failures, "instance", xp)
    if not with_loss:
        return out.array
    return out.array, _normalised_loss(sse, y_norm, Xw, lam, R.shape)


def fold_in(X, R_new, C_new, lam, *, xp=None, chunk=None):
    """Inductive fold-in of new instances: the instance half-step with X fixed."""
    return update_instance_factors(X, R_new, C_new, lam, xp=xp, chunk=chunk)


# ---------------------------------------------------------- classifier step
def update_classifier_factors(Y, R, C, lam, *, xp=None, chunk=None):
    """Classifier half-step (see :func:`cfe_fast.reference.update_classifier_factors`).

    Grams are accumulated over instance blocks in float64. Parameters are as in
    :func:`update_instance_factors`, with Y (d, n) in place of X (streamed too).
    Returns X (d, m), a CuPy array when R is one.
    """
    xp = xp or compute_module(Y, R, C)
    dtype = _working_dtype(R)
    if not _is_numpy(xp):
        _warn_if_tf32(dtype)
    d, m = Y.shape[0], R.shape[0]
    T = d * (d + 1) // 2
    G = xp.zeros((T, m))
    B = xp.zeros((d, m))
    tril = _tril_indices(d, xp)
    size = _chunk_size(xp, _classifier_bytes(m, d, dtype), chunk)
    for _, _, (Y_c, R_c, C_c) in stream_columns((Y, R, C), size, xp):
        Y_c, C_c = Y_c.astype(dtype, copy=False), C_c.astype(dtype, copy=False)
        G += _classifier_grams(Y_c, C_c, tril).astype(np.float64)
        B += (Y_c @ (C_c * R_c.astype(dtype, copy=False)).T).astype(np.float64)
    solution, failed = packed_spd_solve(G.T, B.T, lam, xp)
    _raise_if_failed([failed], "classifier", xp)
    X = solution.T.astype(dtype)
    return to_host(X) if array_module(R) is np else X


# ------------------------------------------------------------------ losses
def reconstruction_loss(X, Y, R, C, lam, *, xp=None, chunk=None):
    """Normalised reconstruction term (see :func:`cfe_fast.reference.reconstruction_loss`).

    R_hat is formed one block at a time only; sums run in float64.
    """
    xp = xp or compute_module(X, Y, R, C)
    dtype = _working_dtype(R)
    Xw = _as(xp, X, dtype)
    sse = y_norm = xp.zeros(())
    per_instance = np.dtype(dtype).itemsize * (4 * R.shape[0] + Y.shape[0])
    for _, _, (Y_c, R_c, C_c) in stream_columns((Y, R, C), _chunk_size(xp, per_instance, chunk), xp):
        Y_c = Y_c.astype(dtype, copy=False)
        sse = sse + _squared_residual(Xw, Y_c, R_c, C_c, xp)
        y_norm = y_norm + xp.sum(Y_c.astype(np.float64) ** 2)
    return _normalised_loss(sse, y_norm, Xw, lam, R.shape)


def _squared_residual(Xw, Y_c, R_c, C_c, xp):
    """sum c (r - r_hat)^2 over a block of instances, in float64."""
    residual = R_c.astype(np.float64) - (Xw.T @ Y_c).astype(np.float64)
    return xp.sum(C_c.astype(np.float64) * residual**2)


def _normalised_loss(sse, y_norm, Xw, lam, shape):
    """L_rec from the weighted residual and ||Y||^2 (device scalars) as a float."""
    m, n = shape
    return float((sse + lam * (y_norm + (Xw.astype(np.float64) ** 2).sum())) / (m * n))


def sample_terms(z, y, focal_gamma, focal_variant, xp):
    """Per-instance loss, dloss/dz and curvature in module ``xp``.

    The formulas of :func:`cfe_fast.reference.sample_loss_terms`, with the
    sigmoid written through ``logaddexp`` so that NumPy and CuPy share them,
    and ``p - y = -sign (1 - p_t)`` without cancellation.
    """
    sign = 2.0 * y - 1.0
    a = sign * z  # logit of p_t
    log_pt = -xp.logaddexp(0.0, -a)
    pt = xp.exp(log_pt)
    q = xp.exp(-xp.logaddexp(0.0, a))  # 1 - p_t
    bce_grad = -sign * q
    bce_curv = pt * q
    g = focal_gamma
    if g == 0.0:
        return -log_pt, bce_grad, bce_curv
    qg = q**g
    loss = -qg * log_pt
    if focal_variant == "weighted_bce":
        return loss, qg * bce_grad, qg * bce_curv
    grad = sign * (g * qg * pt * log_pt - qg * q)
    curv = g * qg * q * pt * (log_pt + 1.0) - g * g * qg * pt * pt * log_pt + (g + 1.0) * qg * q * pt
    return loss, grad, curv


def aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma=0.0, focal_variant="exact",
                     hessian=False, *, xp=None, chunk=None):
    """Fused aggregator kernel (see :func:`cfe_fast.reference.aggregator_terms`).

    One pass over blocks of labeled instances: z = v^T y + b with v = X w, the
    elementwise loss terms, g = sum e_i [y_i; 1] by one GEMV per block and, if
    asked, H = sum h_i [y_i; 1][y_i; 1]^T; all in float64, R_hat never formed.
    Returns :class:`cfe_fast.reference.AggregatorTerms` of host values.
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
    for _, _, (Y_c, y_c, om_c) in stream_columns((Y_labeled, y_labeled, omega), _chunk_size(xp, per_instance, chunk), xp):
        Y_c = Y_c.astype(np.float64)
        y_c, om_c = y_c.astype(np.float64, copy=False), om_c.astype(np.float64, copy=False)
        loss, grad, curv = sample_terms(v @ Y_c + b, y_c, focal_gamma, focal_variant, xp)
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
    g = to_host(g)
    full_hessian = None
    if hessian:
        H = to_host(H)
        H[d, :d] = H[:d, d]
        lift = np.zeros((d + 1, X64.shape[1] + 1))  # [y; 1] -> [r_hat; 1]
        lift[:-1, :-1] = X64
        lift[-1, -1] = 1.0
        full_hessian = lift.T @ H @ lift / total
    return AggregatorTerms(float(loss_sum) / total, X64.T @ g[:-1] / total, float(g[-1]) / total, full_hessian)
