"""Batched solves of SPD systems from packed lower triangles, on NumPy or CuPy, in float64.

On CuPy, for k <= 64, one CUDA kernel (:data:`_PACKED_SOLVE_SOURCE`, compiled
once per k and input dtype) stages each system in shared memory, keeps two
rows of the factor per thread in registers, and runs Cholesky with the
forward substitution, then the back substitution, in one launch per chunk.
Otherwise (NumPy, or k > 64) the systems are unpacked to (batch, k, k),
factorised by a batched Cholesky (LAPACK on NumPy, cuSOLVER on CuPy) and
solved by one batched solve. A system is singular when a pivot
``A_jj - sum_p L_jp^2`` falls to ``PIVOT_RTOL * A_jj`` or below (the rule of
every backend).
"""

from functools import lru_cache

import numpy as np

from ...errors import PIVOT_RTOL, singular_system_error
from .arrays import c_type, cuda_kernels, gpu_module, is_numpy


def tril_indices(k, xp):
    rows, cols = np.tril_indices(k)
    return xp.asarray(rows), xp.asarray(cols)


def unpack(G, k, lam, xp):
    """(nb, T) packed lower triangles -> (nb, k, k) symmetric float64 systems + lam I."""
    rows, cols = tril_indices(k, xp)
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
        if not is_numpy(xp):
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
    that more systems run side by side (measured at k = 64 on an H100:
    ``benchmarks/results/gpu_breakdown_nvidia-h100-80gb-hbm3.md``).
    """
    cupy = gpu_module()
    per_system = 8 * (k * (k + 1) // 2 + 5 * k) + 4
    threads = (k + 1) // 2
    if k > 32:
        systems, min_blocks = 1, max(1, _REGISTERS_PER_SM // ((2 * k + 40) * threads))
    else:
        systems, min_blocks = max(1, min(128 // threads, _KERNEL_SHARED_BYTES // per_system)), 1
    code = (f"#define K {k}\n#define SYSTEMS {systems}\n#define MIN_BLOCKS {min_blocks}\n"
            f"typedef {c_type(in_dtype)} in_t;\n" + _PACKED_SOLVE_SOURCE)
    return cupy.RawKernel(code, "packed_spd_solve"), systems, systems * threads


def _kernel_solves(k, xp):
    return cuda_kernels(xp) and k <= _KERNEL_MAX_K


def solve_bytes(k, xp):
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
        return spd_solve(unpack(G, k, lam, xp), B, xp)
    kernel, systems, threads = _packed_solve_kernel(k, G.dtype)
    G = xp.ascontiguousarray(G)
    B = xp.ascontiguousarray(B, dtype=np.float64)
    x = xp.empty((nb, k))
    failed = xp.empty(nb, dtype=bool)
    blocks = (nb + systems - 1) // systems
    kernel((blocks,), (threads,), (G, B, np.float64(lam), np.float64(PIVOT_RTOL), np.int64(nb), x, failed))
    return x, failed


def raise_if_failed(failures, what, xp):
    """Raise :class:`~cfe_fast.errors.SingularSystemError` naming the first failed system of a list of blocks."""
    failed = xp.concatenate(failures) if failures else xp.zeros(0, dtype=bool)
    if bool(failed.any()):
        raise singular_system_error(what, int(xp.flatnonzero(failed)[0]))
