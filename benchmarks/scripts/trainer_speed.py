"""Per-iteration seconds of the exact and joint trainers against the ALS trainer.

One iteration: "als" = two ALS half-steps + Newton on the aggregator; "exact" =
the majorised X block (Grams + m sequential d x d solves), the Y block
(instance solves with a second right-hand side + Sherman-Morrison), Newton;
"joint" = ``joint_steps_per_iter`` Adam steps, each a fused gradient pass.
Measured in one run, after a JIT warm-up, median over iterations.

    python benchmarks/scripts/trainer_speed.py [--n 100000] [--m 10] [--d 5] [--iters 5]

Current results: ``benchmarks/results/trainer_speed_cpu2.md``.
"""

import argparse

import numpy as np

from cfe_fast import CFEnsembleClassifier, make_ensemble


def per_iteration(data, iters, **params):
    model = CFEnsembleClassifier(max_iter=iters, tol=0.0, random_state=0, **params).fit(data.P, data.labels)
    return float(np.median(np.diff([0.0] + model.history_["time"])))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=10)
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    data = make_ensemble(n_classifiers=args.m, n_instances=args.n, random_state=0)
    small = make_ensemble(n_classifiers=args.m, n_instances=300, random_state=0)
    configs = {"als": dict(trainer="als"), "exact": dict(trainer="exact"), "joint (20 Adam steps)": dict(trainer="joint")}
    for params in configs.values():  # JIT warm-up
        per_iteration(small, 2, latent_dim=args.d, **params)
    print(f"n = {args.n}, m = {args.m}, d = {args.d}; median seconds per iteration over {args.iters}")
    print("| trainer | s / iteration | ratio to als |")
    print("|---|---|---|")
    base = None
    for name, params in configs.items():
        seconds = per_iteration(data, args.iters, latent_dim=args.d, **params)
        base = base or seconds
        print(f"| {name} | {seconds:.3f} | {seconds / base:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
