"""The measurements behind ``choose_solver``: dual against primal instance step per (m, d).

Per instance the dual form factorises an m x m system (m^3 / 3 flops, all in
the batched Cholesky); the primal form builds a d x d Gram with a GEMM
(m d (d + 1) flops, about three times faster per flop than the Cholesky here)
and factorises it (d^3 / 3). With that speed ratio the two break even near
m = 1.3 d. This script times both exact forms on the same random problem
(seconds scaled to 1e6 instances, median of 5) and prints the ratio and the
form that ``solver="auto"`` picks.

Usage::

    PYTHONPATH=. python benchmarks/scripts/solver_rule.py [--n 20000]

Current results: ``benchmarks/results/solver_rule_cpu2.md``.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from cfe_fast.backends.numba.instance_step import choose_solver, solve_instances

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "suite"))  # for _common
from _common import median_seconds  # noqa: E402

SHAPES = ((10, 20), (20, 20), (24, 20), (30, 20), (32, 32), (40, 32), (48, 32), (64, 64), (80, 64), (100, 64),
          (100, 100), (120, 100), (150, 100))


def seconds_per_million(solver, X, Rt, Ct, repeat=5):
    solve_instances(X, Rt[:200], Ct[:200], 0.1, solver=solver)  # JIT warm-up
    return median_seconds(lambda: solve_instances(X, Rt, Ct, 0.1, solver=solver), repeat) * 1e6 / Rt.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="instances per problem")
    args = parser.parse_args()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Instance step, float64, n = {args.n:,} (seconds scaled to 1e6, median of 5), load average {load}\n")
    print("| m | d | m / d | primal s | dual s | dual / primal | auto |")
    print("|---|---|---|---|---|---|---|")
    for m, d in SHAPES:
        rng = np.random.default_rng(0)
        Rt = rng.random((args.n, m))
        Ct = rng.random((args.n, m)) + 0.5
        X = 0.3 * rng.standard_normal((d, m))
        primal, dual = (seconds_per_million(solver, X, Rt, Ct) for solver in ("primal", "dual"))
        print(f"| {m} | {d} | {m / d:.2f} | {primal:.3g} | {dual:.3g} | {dual / primal:.2f} | "
              f"{choose_solver(m, d)} |")


if __name__ == "__main__":
    main()
