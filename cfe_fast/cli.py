"""The ``cfe-fast`` command line."""

import argparse
import sys
import time

import numpy as np


def _demo(args):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from .datasets import make_ensemble
    from .estimator import CFEnsembleClassifier

    data = make_ensemble(
        n_classifiers=args.classifiers, n_instances=args.instances, labeled_fraction=args.labeled,
        positive_rate=args.positive_rate, quality=args.quality, random_state=args.seed,
    )
    held_out = np.isnan(data.labels)
    model = CFEnsembleClassifier(backend=args.backend, dtype=args.dtype, random_state=args.seed)
    start = time.perf_counter()
    model.fit(data.P, data.labels)
    fit_seconds = time.perf_counter() - start
    truth = data.y_true[held_out]
    labeled = ~held_out
    best = max(range(data.R.shape[0]), key=lambda u: average_precision_score(data.y_true[labeled], data.R[u, labeled]))
    rows = [
        ("CF-Ensemble", model.transductive_proba_[held_out]),
        ("mean of R", data.R.mean(axis=0)[held_out]),
        (f"best single (#{best}, chosen on labeled)", data.R[best, held_out]),
    ]
    print(
        f"example data: {data.R.shape[0]} classifiers x {data.R.shape[1]} instances, "
        f"{labeled.sum()} labeled, {data.y_true.mean():.0%} positives; scores on the "
        f"{held_out.sum()} unlabeled (held-out) instances"
    )
    print(f"{'method':<36} {'PR-AUC':>7} {'ROC-AUC':>8}")
    for name, scores in rows:
        print(f"{name:<36} {average_precision_score(truth, scores):7.3f} {roc_auc_score(truth, scores):8.3f}")
    print(f"fit: {fit_seconds:.2f} s ({model.n_iter_} iterations, backend={args.backend}, includes JIT compile on a first run)")
    return 0


def build_parser():
    """The argument parser of ``cfe-fast`` (subcommands with their own --help)."""
    parser = argparse.ArgumentParser(prog="cfe-fast", description="CF-Ensemble: combine many classifiers' probabilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="fit on built-in example data and compare with the mean and the best single classifier",
        description="Fit CF-Ensemble on built-in example data (correlated classifier errors, imbalanced "
        "classes) and print held-out PR-AUC / ROC-AUC next to the mean of R and the best single classifier.",
    )
    demo.add_argument("--classifiers", type=int, default=10, help="number of base classifiers (default 10)")
    demo.add_argument("--instances", type=int, default=5000, help="number of instances (default 5000)")
    demo.add_argument("--labeled", type=float, default=0.5, help="labeled fraction (default 0.5)")
    demo.add_argument("--positive-rate", type=float, default=0.1, help="fraction of positives (default 0.1)")
    demo.add_argument("--quality", type=float, default=0.7, help="PR-AUC of one base classifier (default 0.7)")
    demo.add_argument("--backend", default="numba", help="kernel backend (default numba)")
    demo.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    """Entry point of the ``cfe-fast`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"cfe-fast: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
