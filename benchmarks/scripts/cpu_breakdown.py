"""Where the time of the Numba primal instance step goes, part by part, on one core.

Times (median) the parts of ``backends.numba.instance_step._instance_primal`` on one chunk of
systems repeated over n instances, with BLAS on one thread: the packed Gram
GEMM ``P_X C_chunk^T``, the right-hand sides, the batched Cholesky, the packed
solve; then the whole instance step on 1 and 2 Numba threads. Prints seconds
per 1,000,000 instances and GFLOP/s against the one-core GEMM peak measured in
the same run, which says how far each part is from the roofline.

    python benchmarks/scripts/cpu_breakdown.py --m 100 --d 64 --n 20000

Current results: ``benchmarks/results/cpu_breakdown_cpu2.md``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "suite"))  # for _common
from _common import median_seconds  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--n", type=int, default=20_000, help="instances (a multiple of the chunk is timed)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from numba import get_num_threads, set_num_threads

    from cfe_fast.backends.numba.instance_step import _instance_primal
    from cfe_fast.backends.numba.linalg import add_ridge, packed_cholesky, packed_solve, systems_per_chunk
    from compare import gemm_peak

    m, d, n, lam = args.m, args.d, args.n, 0.1
    rng = np.random.default_rng(0)
    X = rng.standard_normal((d, m)) / np.sqrt(d)
    Rt, Ct = rng.random((n, m)), rng.random((n, m)) + 0.1
    chunk = systems_per_chunk(d)
    blocks = max(1, n // chunk)
    rows, cols = np.tril_indices(d)
    PX = np.ascontiguousarray(X[rows] * X[cols])
    Cc, RCc = Ct[:chunk], Ct[:chunk] * Rt[:chunk]
    G0 = PX @ Cc.T
    add_ridge(G0, d, lam)
    B0 = X @ RCc.T
    failed = np.zeros(chunk, dtype=np.bool_)
    L = G0.copy()
    packed_cholesky(L, failed)  # JIT warm-up of both parts
    packed_solve(L, B0.copy())

    def repeated(part):
        def run():
            for _ in range(blocks):
                part()
        return run

    parts = [  # name, function, flops per instance
        ("Gram GEMM P_X C^T", lambda: PX @ Cc.T, m * d * (d + 1)),
        ("right-hand sides X (C R)^T", lambda: X @ (Cc * Rt[:chunk]).T, 2 * m * d),
        ("copy of the packed systems", lambda: G0.copy(), 0),
        ("batched Cholesky (with the copy)", lambda: packed_cholesky(G0.copy(), failed), d**3 / 3),
        ("packed solve (with a copy of B)", lambda: packed_solve(L, B0.copy()), 2 * d * d),
    ]
    timed = blocks * chunk
    peak = gemm_peak(np.float64, 1)
    print(f"m = {m}, d = {d}: {blocks} chunks of {chunk} systems; one-core float64 GEMM peak {peak:.1f} GFLOP/s\n")
    print("| part | s per 1e6 instances, 1 core | GFLOP/s | % of one core |\n|---|---|---|---|")
    with threadpool_limits(1, user_api="blas"):
        for name, fn, flops in parts:
            seconds = median_seconds(repeated(fn), args.repeat) * 1e6 / timed
            rate = flops * 1e6 / seconds / 1e9
            print(f"| {name} | {seconds:.3f} | {rate:.1f} | {100 * rate / peak:.0f} % |" if flops else
                  f"| {name} | {seconds:.3f} | | |")
        before = get_num_threads()
        Yt = np.empty((n, d))
        args_step = (X, PX, Rt, Ct, lam, chunk, Yt, np.zeros(n, dtype=np.bool_), np.empty(0), np.empty((0, d)),
                     np.empty(0))
        for threads in (1, 2):
            set_num_threads(min(threads, before))
            _instance_primal(*args_step)
            seconds = median_seconds(lambda: _instance_primal(*args_step), args.repeat) * 1e6 / n
            print(f"| whole instance step, {get_num_threads()} Numba thread(s) | {seconds:.3f} | | |")
        set_num_threads(before)


if __name__ == "__main__":
    main()
