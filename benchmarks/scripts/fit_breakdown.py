"""Where the time of a default fit goes, part by part.

Fits :class:`cfe_fast.CFEnsembleClassifier` with its default parameters
(``tol=0`` so every fit runs ``--iters`` iterations; ``--latent-dim`` sets d) on ``make_ensemble``
data, with a clock around each part of the outer loop: the two half-steps,
the aggregator's Newton fits, the objective, the collapse monitors, the
final cross-validation of the aggregator prior and its refit, the held-out
check; the rest (data checks, initialisation, publishing, the loop's own
Python) is what remains of the whole fit. Then the half-steps against the
roofline: their model flops per fit and the seconds they would take at the
float64 GEMM peak on all threads, measured in the same run (a floor no
kernel of this formulation goes below; wall clock only). Prints the median over
``--repeat`` fits of each part, in seconds and per iteration, after a JIT
warm-up, with the load average. On a shared machine wall-clock times swing
with the other processes; ``--clock cpu`` times the CPU seconds of this
process instead (all its threads summed: a part on two threads counts
twice its wall time), which stays put under load.

    python benchmarks/scripts/fit_breakdown.py --m 18 --n 60000 --iters 50

Current results: ``benchmarks/results/fit_breakdown_cpu2.md``.
"""

import argparse
import os
import time
from collections import defaultdict

import numpy as np


def _timed(owner, name, key, clock, stack, now):
    """Replace ``owner.name`` by a wrapper that adds its own seconds to ``clock[key]``; returns the undo.

    Own seconds: those of the timed parts that it calls (``stack`` holds the
    running ones) go to them, not to it, so the parts add up to the fit.
    """
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        stack.append(0.0)  # seconds of the timed parts called from this one
        start = now()
        try:
            return original(*args, **kwargs)
        finally:
            inclusive = now() - start
            clock[key] += inclusive - stack.pop()
            if stack:
                stack[-1] += inclusive

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


#: (label, the "module:Class" or "module" and attribute names through which the part is called)
PARTS = (
    ("classifier half-step", (("cfe_fast.training.problem:InMemoryProblem", "classifier_step"),)),
    ("instance half-step (with L_rec)", (("cfe_fast.training.problem:InMemoryProblem", "instance_step"),)),
    ("aggregator fits (Newton)", (("cfe_fast.training.aggregator", "fit"), ("cfe_fast.training.loop", "fit_aggregator"),
                                  ("cfe_fast.training.loop", "fit_scale"))),
    ("objective (L_sup after the fit)", (("cfe_fast.training.problem:ProblemLosses", "objective"),)),
    ("collapse monitors", (("cfe_fast.training.loop", "monitor_values"),)),
    ("prior cross-validation", (("cfe_fast.training.loop", "cross_validate"),)),
    ("refit with the chosen prior", (("cfe_fast.training.loop", "_refit_with_prior"),)),
    ("held-out check", (("cfe_fast.training.loop", "_held_out_check"),)),
)


def _owner(path):
    import importlib

    module, _, cls = path.partition(":")
    owner = importlib.import_module(module)
    return getattr(owner, cls) if cls else owner


def breakdown(model, P, labels, repeat, now=time.perf_counter):
    """Median seconds of the whole fit and of each part of :data:`PARTS` over ``repeat`` fits."""
    runs = []
    for _ in range(repeat):
        clock = defaultdict(float)
        stack = []
        undo = [_timed(_owner(path), name, label, clock, stack, now) for label, targets in PARTS
                for path, name in targets]
        try:
            start = now()
            model.fit(P, labels)
            clock["total"] = now() - start
        finally:
            for u in reversed(undo):
                u()
        runs.append(clock)
    return {key: float(np.median([run[key] for run in runs])) for key in runs[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=18)
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--latent-dim", type=int, default=None, help="default: the estimator's")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock seconds, or CPU seconds of the process (all threads)")
    args = parser.parse_args(argv)

    import numba

    from cfe_fast import CFEnsembleClassifier, make_ensemble

    data = make_ensemble(n_classifiers=args.m, n_instances=args.n, random_state=0)
    model = CFEnsembleClassifier(max_iter=2, tol=0.0, random_state=0, dtype=args.dtype)
    if args.latent_dim is not None:
        model.set_params(latent_dim=args.latent_dim)
    model.fit(data.P[:500], data.labels[:500])  # JIT warm-up
    model.set_params(max_iter=args.iters)
    model.fit(data.P, data.labels)
    load = os.getloadavg()[0]
    times = breakdown(model, data.P, data.labels, args.repeat,
                      time.perf_counter if args.clock == "wall" else time.process_time)
    total, iters = times.pop("total"), model.n_iter_
    print(f"m = {args.m}, n = {args.n}, latent_dim = {model.latent_dim_}, {iters} iterations, {args.dtype}, "
          f"{numba.get_num_threads()} Numba threads; {args.clock} clock, median of {args.repeat} fits; load average "
          f"{load:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    unit = "s" if args.clock == "wall" else "CPU s"
    print(f"| part | {unit} per fit | ms per iteration | share |\n|---|---|---|---|")
    accounted = 0.0
    for label, _ in PARTS:
        seconds = times.get(label, 0.0)
        accounted += seconds
        print(f"| {label} | {seconds:.3f} | {1e3 * seconds / iters:.2f} | {100 * seconds / total:.0f} % |")
    rest = total - accounted
    print(f"| the rest (checks, initialisation, publishing, loop) | {rest:.3f} | {1e3 * rest / iters:.2f} | "
          f"{100 * rest / total:.0f} % |")
    print(f"| **whole fit** | **{total:.3f}** | {1e3 * total / iters:.2f} | 100 % |")
    if args.clock == "wall":  # GFLOP/s against a wall-clock peak: not for CPU seconds
        roofline(model, args.m, args.n, iters, times)


def half_step_flops(m, n, d, solver):
    """Model flops of one classifier and one exact instance half-step (Gram builds, factorisations, solves).

    ``solver="shared"``: every confidence 1, one Gram per half-step (``backends/shared_gram.py``): the
    Gram, the right-hand sides and, in the instance step, the three products of its L_rec.
    """
    if solver == "shared":
        return n * d * d + 2 * n * m * d, 2 * n * m * d + 2 * n * m * d + 2 * n * d * d
    classifier = n * m * d * (d + 1) + 2 * n * m * d + m * (d**3 / 3 + 2 * d * d)
    if solver == "dual":  # scaled m x m system, its factorisation and solve, y = X D z
        instance = n * (m * (m + 1) + m**3 / 3 + 2 * m * m + 2 * m * d)
    else:  # packed Gram by GEMM, right-hand side, factorisation and solve
        instance = n * (m * d * (d + 1) + 2 * m * d + d**3 / 3 + 2 * d * d)
    return classifier, instance


def roofline(model, m, n, iters, times):
    """Print the half-steps' GFLOP/s and their time at the all-thread float64 GEMM peak."""
    import numba

    from cfe_fast.backends.numba.instance_step import choose_solver
    from compare import gemm_peak

    d = model.latent_dim_
    solver = choose_solver(m, d, model.lam) if model.solver == "auto" else model.solver
    if model.confidence == "uniform":  # the data of make_ensemble have no missing entries
        solver = "shared"
    peak = gemm_peak(np.float64, numba.get_num_threads())
    print(f"\nHalf-steps against the float64 GEMM peak on {numba.get_num_threads()} threads, {peak:.1f} GFLOP/s "
          f"(measured now); instance step {solver}"
          f"{' (Gram)' if solver == 'shared' else ''}\n")
    print("| half-step | GFLOP per fit | GFLOP/s | % of peak | s at peak |\n|---|---|---|---|---|")
    floor = 0.0
    for (label, _), flops in zip(PARTS[:2], half_step_flops(m, n, d, solver)):
        gflop = flops * iters / 1e9
        rate = gflop / times[label]
        floor += gflop / peak
        print(f"| {label} | {gflop:.1f} | {rate:.1f} | {100 * rate / peak:.0f} % | {gflop / peak:.3f} |")
    print(f"\nBoth half-steps at the GEMM peak: {floor:.3f} s per fit")


if __name__ == "__main__":
    main()
