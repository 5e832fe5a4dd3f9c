"""Where the time of a CuPy ALS sweep goes, part by part, on the current CUDA device.

Times (median, device synchronised around every call) the parts of both
half-steps at one shape: the Gram GEMMs, the right-hand sides, the packed outer
products, the packed SPD solve by cfe_fast's CUDA kernel and by the library
path (batched cuSOLVER Cholesky + batched LU solve) on the same systems, and
the whole steps. Also prints the largest difference between the two solvers.

    python benchmarks/scripts/gpu_breakdown.py --m 100 --d 64 --n 1e6 --dtype float32

Current results: ``benchmarks/results/gpu_breakdown_<device>.md``.
"""

import argparse
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("_cfe_gpu_sweep", Path(__file__).with_name("gpu_sweep.py"))
gpu_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_sweep)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--n", type=lambda s: int(float(s)), default=10**6)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--block", type=int, default=2**16, help="instances of the block the parts are timed on")
    parser.add_argument("--chunk", type=int, default=None, help="instances per block of the whole instance step")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from cfe_fast.backends.cupy import arrays, kernels, solve

    xp = arrays.gpu_module()
    if xp is None:
        parser.exit(2, "gpu_breakdown.py: CuPy with a CUDA device is needed\n")
    m, d, n, lam = args.m, args.d, args.n, 0.1
    X, Y, R, C = gpu_sweep.problem(xp, m, d, n, args.dtype)
    tril = solve.tril_indices(d, xp)
    PXt = xp.ascontiguousarray(kernels._packed_outer(X, tril).T)
    nc = min(n, args.block)
    C_c, R_c, Y_c = C[:, :nc], R[:, :nc], Y[:, :nc]
    G = kernels._primal_grams(PXt, C_c)
    B = (X @ (C_c * R_c)).T.astype(np.float64)
    PY = kernels._packed_outer(Y_c, tril)
    parts = {
        "instance Gram GEMM C^T P_X^T": lambda: kernels._primal_grams(PXt, C_c),
        "instance right-hand sides": lambda: (X @ (C_c * R_c)).T.astype(np.float64),
        "packed solve, CUDA kernel": lambda: solve.packed_spd_solve(G, B, lam, xp),
        "packed solve, library path": lambda: solve.spd_solve(solve.unpack(G, d, lam, xp), B, xp),
        "classifier packed outer P_Y": lambda: kernels._packed_outer(Y_c, tril),
        "classifier Gram GEMM P_Y C^T": lambda: PY @ C_c.T,
        "instance step (all n)": lambda: kernels.update_instance_factors(X, R, C, lam, xp=xp, chunk=args.chunk),
        "classifier step (all n)": lambda: kernels.update_classifier_factors(Y, R, C, lam, xp=xp),
    }
    print(f"m={m} d={d} n={n} {args.dtype}; parts on one block of {nc} instances; device {gpu_sweep.device_name(xp)}")
    flops = {"instance Gram GEMM C^T P_X^T": 2.0 * nc * m * PXt.shape[1],
             "classifier Gram GEMM P_Y C^T": 2.0 * nc * m * PXt.shape[1]}
    for name, fn in parts.items():
        fn()
        seconds = gpu_sweep._median_seconds(xp, fn, args.repeat)
        rate = f"  {flops[name] / seconds / 1e12:6.1f} TFLOP/s" if name in flops else ""
        print(f"{name:34s} {1e3 * seconds:9.2f} ms{rate}")
    if d <= solve._KERNEL_MAX_K:
        kernel, systems, _ = solve._packed_solve_kernel(d, G.dtype)
        print(f"solve kernel: {systems} systems per block, {kernel.num_regs} registers per thread, "
              f"{kernel.local_size_bytes} bytes of local memory, {kernel.shared_size_bytes} bytes of shared memory")
    x_kernel, failed_kernel = solve.packed_spd_solve(G, B, lam, xp)
    x_library, failed_library = solve.spd_solve(solve.unpack(G, d, lam, xp), B, xp)
    difference = float(xp.abs(x_kernel - x_library).max() / xp.abs(x_library).max())
    print(f"kernel vs library: max |difference| / max |x| = {difference:.1e}; "
          f"failed systems {int(failed_kernel.sum())} vs {int(failed_library.sum())}")


if __name__ == "__main__":
    main()
