"""Each ALS half-step against a bare GEMM of its Gram's shapes, interleaved in one process.

On a shared machine the GEMM peak measured at one moment says little about a
half-step timed minutes later; timed in alternation, the ratio of a half-step
to the bare GEMM that builds its Grams holds. For m classifiers, d = 32,
float32: a 2-thread bare GEMM ``P_X @ C[chunk].T`` over the instance step's
chunks (P_X the packed x_u x_u^T, BLAS single-threaded per thread, as in the
kernels), then both half-steps with C as a rule (label_aware, computed per
chunk from R, as a fit holds it) and stored, ``--rounds`` times in turn.
Prints a markdown table of medians: seconds per 1e6 instances, GFLOP/s of the
Gram flops m n d (d + 1), and the fraction of the bare GEMM's speed.

    python benchmarks/scripts/gemm_fraction.py [--m 1000] [--n 200000] [--rounds 3]

Results: ``benchmarks/results/thousands_of_classifiers_cpu2.md``.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, prange
from threadpoolctl import threadpool_limits

from cfe_fast.backends.numba.linalg import systems_per_chunk
from cfe_fast.core.confidence import confidence_rule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "suite"))  # for _common
from _common import LAM, numba_kernels, problem  # noqa: E402

D = 32


@njit(parallel=True)
def _gram_gemms(PX, Ct, chunk):
    """The instance step's Gram GEMMs alone: P_X @ C[chunk].T for every chunk, on two threads."""
    n = Ct.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    for t in prange(2):
        for c in range(t * n_chunks // 2, (t + 1) * n_chunks // 2):
            s = c * chunk
            np.dot(PX, Ct[s:min(n, s + chunk)].T)


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    m, n = args.m, args.n
    Rt, Ct, X, Yt = problem(m, D, n, np.float32)
    rng = np.random.default_rng(1)
    labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
    rule = confidence_rule(Rt, labels, "label_aware", 1.0, np.float32)
    rows, cols = np.tril_indices(D)
    PX = np.ascontiguousarray(X[rows] * X[cols])
    nb = numba_kernels()
    chunk = systems_per_chunk(D)
    methods = {
        "bare GEMM, the instance step's Gram products only": lambda: _gram_gemms(PX, Ct, chunk),
        "instance step, C by rule": lambda: nb.solve_instances(X, Rt, rule, LAM),
        "instance step, C stored": lambda: nb.solve_instances(X, Rt, Ct, LAM),
        "classifier step, C by rule": lambda: nb.solve_classifiers(Yt, Rt, rule, LAM),
        "classifier step, C stored": lambda: nb.solve_classifiers(Yt, Rt, Ct, LAM),
    }
    small = confidence_rule(Rt[:300], labels[:300], "label_aware", 1.0, np.float32)
    with threadpool_limits(1, user_api="blas"):
        _gram_gemms(PX, Ct[:500], chunk)  # JIT warm-up
        nb.solve_instances(X, Rt[:300], small, LAM)
        nb.solve_classifiers(Yt[:300], Rt[:300], small, LAM)
        start_load = os.getloadavg()[0]
        times = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, fn in methods.items():
                times[name].append(_seconds(fn))
    print(f"m = {m}, d = {D}, n = {n:,}, float32, median of {args.rounds} interleaved rounds, load average "
          f"{start_load:.1f} at the start and {os.getloadavg()[0]:.1f} at the end\n")
    print("| what | seconds per 1e6 instances | GFLOP/s (Gram flops) | vs bare GEMM |\n|---|---|---|---|")
    gram_flop = m * n * D * (D + 1) / 1e9
    bare = float(np.median(next(iter(times.values()))))
    for name, values in times.items():
        seconds = float(np.median(values))
        print(f"| {name} | {seconds * 1e6 / n:.3g} | {gram_flop / seconds:.1f} | {bare / seconds:.2f} |")


if __name__ == "__main__":
    main()
