"""Per-iteration seconds of the exact and joint trainers against the ALS trainer.

One iteration: "als" = two ALS half-steps + Newton on the aggregator; "exact" =
the majorised X block (Grams + m sequential d x d solves), the Y block
(instance solves with a second right-hand side + Sherman-Morrison), Newton;
"joint" = ``joint_steps_per_iter`` Adam steps, each a fused gradient pass.
Measured in one run, after a JIT warm-up: the trainers' fits alternate for
``--rounds`` rounds (a shared machine's load drifts within minutes), and each
figure is the median over all iterations of all rounds.

    python benchmarks/scripts/trainer_speed.py [--n 100000] [--m 10] [--d 5] [--iters 5] [--rounds 3]

Current results: ``benchmarks/results/trainer_speed_cpu2.md``.
"""

import argparse
import os

import numpy as np

from cfe_fast import CFEnsembleClassifier, make_ensemble


def iteration_seconds(data, iters, **params):
    """Seconds of each iteration of one fit."""
    model = CFEnsembleClassifier(max_iter=iters, tol=0.0, random_state=0, **params).fit(data.P, data.labels)
    return list(np.diff([0.0] + model.history_["time"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = make_ensemble(n_classifiers=args.m, n_instances=args.n, random_state=0)
    small = make_ensemble(n_classifiers=args.m, n_instances=300, random_state=0)
    configs = {"als": dict(trainer="als"), "exact": dict(trainer="exact"), "joint (20 Adam steps)": dict(trainer="joint")}
    for params in configs.values():  # JIT warm-up
        iteration_seconds(small, 2, latent_dim=args.d, **params)
    seconds = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, params in configs.items():
            seconds[name] += iteration_seconds(data, args.iters, latent_dim=args.d, **params)
    print(f"n = {args.n}, m = {args.m}, d = {args.d}; median seconds per iteration over {args.rounds} alternating "
          f"rounds of {args.iters}; load average {os.getloadavg()[0]:.1f} at the end")
    print("| trainer | s / iteration | ratio to als |")
    print("|---|---|---|")
    base = float(np.median(seconds["als"]))
    for name, values in seconds.items():
        median = float(np.median(values))
        print(f"| {name} | {median:.3f} | {median / base:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
