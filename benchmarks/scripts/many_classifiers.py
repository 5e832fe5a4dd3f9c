"""Fit time with many classifiers: two versions of cfe_fast interleaved in one process.

With m classifiers the aggregator has m + 1 parameters, and its
cross-validated Newton fit can outweigh the ALS half-steps. This script times
the default ``CFEnsembleClassifier`` (its latent_dim unless ``--latent-dim``)
on ``make_ensemble`` data for each m, the working tree's ``cfe_fast`` against
another commit's (imported side by side as in ``ab_compare.py``), in
alternation, and prints a markdown table: fit seconds, the seconds spent in
the aggregator's fits and cross-validation (the rest is the same half-steps in
both), the speed-up and the largest difference of the fitted probabilities.

Usage::

    python benchmarks/scripts/many_classifiers.py BASE_COMMIT [--m 200 1000] [--n 10000] [--max-iter 3] [--rounds 1]
"""

import argparse
import importlib
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from ab_compare import ROOT, import_base  # noqa: E402


def timed_aggregator(package):
    """Wrap the package's aggregator fit and cross-validation to add their seconds to the returned list."""
    loop = importlib.import_module(f"{package.__name__}.training.loop")
    spent = []

    def timing(function):
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - start)
        return wrapped

    for name in ("fit_aggregator", "cross_validate"):
        setattr(loop, name, timing(getattr(loop, name)))
    return spent


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit to compare the working tree against")
    parser.add_argument("--m", type=int, nargs="+", default=[200, 1000], help="numbers of classifiers")
    parser.add_argument("--n", type=int, default=10_000, help="instances (5 %% of them labeled)")
    parser.add_argument("--max-iter", type=int, default=3, help="outer iterations of each fit")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median over them)")
    parser.add_argument("--latent-dim", type=int, default=None, help="of the fit (default: the estimator's)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import cfe_fast

    versions = {args.base: import_base(args.base), "working tree": cfe_fast}
    spent = {name: timed_aggregator(package) for name, package in versions.items()}
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Interleaved A/B: {args.base} against the working tree, load average {load} at the start; "
          f"n = {args.n:,} (5 % labeled), {args.max_iter} iterations, median of {args.rounds} round(s)\n")
    print("| m, d | before: fit s (aggregator s) | after: fit s (aggregator s) | speed-up | probabilities differ by |")
    print("|---|---|---|---|---|")
    for m in args.m:
        times = {name: [] for name in versions}
        aggregator = {name: [] for name in versions}
        proba = {}
        for _ in range(args.rounds):
            for name, package in versions.items():
                data = package.make_ensemble(n_classifiers=m, n_instances=args.n, labeled_fraction=0.05,
                                             random_state=0)
                model = package.CFEnsembleClassifier(max_iter=1, tol=0.0, random_state=0, latent_dim=args.latent_dim)
                model.fit(data.P[:500], data.labels[:500])  # JIT warm-up
                model.set_params(max_iter=args.max_iter)
                spent[name].clear()
                start = time.perf_counter()
                model.fit(data.P, data.labels)
                times[name].append(time.perf_counter() - start)
                aggregator[name].append(sum(spent[name]))
                proba[name] = model.transductive_proba_
                d = model.latent_dim_
        (t0, a0), (t1, a1) = ((float(np.median(times[k])), float(np.median(aggregator[k]))) for k in versions)
        gap = np.abs(np.subtract(*proba.values())).max()
        print(f"| {m}, {d} | {t0:.2f} ({a0:.2f}) | {t1:.2f} ({a1:.2f}) | {t0 / t1:.2f}x | {gap:.1e} |", flush=True)


if __name__ == "__main__":
    main()
