"""Whether each trainer converges within max_iter on the quality benchmark's tasks.

For every task (the cached out-of-fold pools of ``benchmarks/quality``), one
stratified labeled draw at ``--fraction`` (seed 0, as the quality run's first
repeat), a default fit of each trainer: n_iter_, converged_, the relative change
of the objective |dL| / |L| that the stop test compared with tol at the last
iteration (the last history entry is recomputed after the final aggregator refit,
so the one before it), that of L_rec at the end, the fit's seconds and the PR-AUC
on the unlabeled rows.

    python benchmarks/scripts/trainer_convergence.py [--fraction 0.05] [--trainers als exact joint]
        [--tasks ...] [key=value estimator parameters ...]

Current results: ``benchmarks/results/trainer_speed_cpu2.md``.
"""

import argparse
import os
import time
import warnings

import numpy as np
from sklearn.metrics import average_precision_score

from benchmarks.quality import pools, tasks
from benchmarks.quality.methods import parse_value
from benchmarks.quality.run import draw_labeled
from cfe_fast import CFEnsembleClassifier


def _relative_changes(values):
    """|v[k] - v[k - 1]| / |v[k]| for k >= 1 (NaN-padded to at least two entries)."""
    values = np.asarray(values, dtype=np.float64)
    changes = np.abs(np.diff(values)) / np.abs(values[1:])
    return np.concatenate([np.full(max(0, 2 - changes.size), np.nan), changes])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--trainers", nargs="+", default=["als", "exact", "joint"])
    parser.add_argument("--tasks", nargs="+", default=tasks.task_names())
    parser.add_argument("params", nargs="*", help="estimator parameters, e.g. max_iter=100")
    args = parser.parse_args()
    params = {key: parse_value(value) for key, value in (p.split("=", 1) for p in args.params)}
    print(f"labeled fraction {args.fraction}, seed 0; parameters {params or 'default'}")
    print("| task | n | trainer | n_iter_ | converged_ | abs(dL)/abs(L) | abs(dL_rec)/L_rec | fit s | PR-AUC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.tasks:
        pool = pools.load_or_build(tasks.load_task(name), "full", verbose=False)
        P, y = pool["P"], pool["y"]
        labeled = draw_labeled(y, args.fraction, 0)
        for trainer in args.trainers:
            model = CFEnsembleClassifier(trainer=trainer, random_state=0, **params)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(P, np.where(labeled, y.astype(float), np.nan))
            seconds = time.perf_counter() - start
            changes = [_relative_changes(model.history_[key]) for key in ("loss", "reconstruction")]
            score = np.asarray(model.transductive_proba_)[~labeled]
            print(f"| {name} | {y.size} | {trainer} | {model.n_iter_} | {model.converged_} | {changes[0][-2]:.1e} | "
                  f"{changes[1][-1]:.1e} | {seconds:.2f} | {average_precision_score(y[~labeled], score):.4f} |",
                  flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
