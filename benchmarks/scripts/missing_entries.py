"""Quality with missing entries: PR-AUC when a share of the probability matrix is deleted at random.

On pools of the quality benchmark (``benchmarks/quality``: out-of-fold
probabilities of a scikit-learn pool on a real task, read from the pool
cache, built there if absent), a stratified share of the rows is labeled
and 0/20/50/80 % of the entries of P are set to NaN at random. Compared on
the unlabeled rows (PR-AUC, mean over repeats):

* cfe_fast: the default estimator on P with NaN (missing = not observed);
* cfe_fast, mean-imputed: the default estimator on P with each missing entry
  replaced by its classifier's mean over the observed entries;
* mean of observed: each row's mean over its observed entries.

Also the fit time of the first two (seconds, mean), and, with ``--speed``,
the time of a fit on synthetic data (``make_ensemble``) complete and with
30 % missing (best of three). Run:
``python benchmarks/scripts/missing_entries.py [--cache-dir DIR] [--tasks churn credit] [--speed]``
(writes the Markdown tables to stdout).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.quality import pools, run  # noqa: E402
from cfe_fast import CFEnsembleClassifier, make_ensemble  # noqa: E402
from cfe_fast.core.missing import mean_of_observed  # noqa: E402

MISSING = (0.0, 0.2, 0.5, 0.8)
LABELED = 0.1


def pool(name, cache_dir):
    """(P, y) of a task's "full" pool: from ``cache_dir`` when cached there, else built (and cached)."""
    path = Path(cache_dir) / f"{name}-full.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return z["P"], z["y"]
    from benchmarks.quality import tasks

    built = pools.load_or_build(tasks.load_task(name), cache_dir=cache_dir)
    return built["P"], built["y"]


def knock_out(P, fraction, seed):
    """P with a random ``fraction`` of its entries set to NaN (every classifier keeps one entry at least)."""
    rng = np.random.default_rng(seed)
    missing = rng.random(P.shape) < fraction
    missing[rng.integers(0, P.shape[0], P.shape[1]), np.arange(P.shape[1])] = False
    return np.where(missing, np.nan, P)


def imputed(P):
    """P with each NaN replaced by its column's mean over the observed entries."""
    return np.where(np.isnan(P), mean_of_observed(P, axis=0), P)


def scores(P, y, fraction, repeats):
    """{method: (mean PR-AUC, mean fit seconds)} over ``repeats`` draws of labels and missing entries."""
    results = {"cfe_fast": [], "cfe_fast, mean-imputed": [], "mean of observed": []}
    for rep in range(repeats):
        labeled = run.draw_labeled(y, LABELED, seed=rep)
        labels = np.where(labeled, y, np.nan).astype(float)
        P_missing = knock_out(P, fraction, seed=100 + rep)
        unlabeled = ~labeled
        for method, data in (("cfe_fast", P_missing), ("cfe_fast, mean-imputed", imputed(P_missing))):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = CFEnsembleClassifier(random_state=rep).fit(data, labels)
            seconds = time.perf_counter() - start
            results[method].append((average_precision_score(y[unlabeled], model.transductive_proba_[unlabeled]),
                                    seconds))
        mean = mean_of_observed(P_missing)
        results["mean of observed"].append((average_precision_score(y[unlabeled], mean[unlabeled]), float("nan")))
    return {method: tuple(np.mean(values, axis=0)) for method, values in results.items()}


def speed(n=100_000, m=30, repeats=3):
    """Best-of-``repeats`` seconds of a default fit (10 iterations), complete and with 30 % missing."""
    data = make_ensemble(n_classifiers=m, n_instances=n, random_state=0)
    params = dict(max_iter=10, tol=0.0, random_state=0)
    CFEnsembleClassifier(**params).fit(data.P[:2000], data.labels[:2000])  # compile the kernels first
    print(f"\n| fit of {n} x {m}, 10 iterations | best of {repeats} (s) |\n|---|---|")
    for fraction in (0.0, 0.3):
        P = knock_out(data.P, fraction, seed=0)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                CFEnsembleClassifier(**params).fit(P, data.labels)
            best = min(best, time.perf_counter() - start)
        print(f"| {fraction:.0%} missing | {best:.2f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(pools.CACHE_DIR))
    parser.add_argument("--tasks", nargs="+", default=["churn", "credit"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--speed", action="store_true", help="also time a fit, complete and 30 %% missing")
    args = parser.parse_args(argv)
    print(f"labeled fraction {LABELED}, {args.repeats} repeats; PR-AUC on the unlabeled rows (fit seconds)\n")
    print("| task | missing | cfe_fast | cfe_fast, mean-imputed | mean of observed |")
    print("|---|---|---|---|---|")
    for name in args.tasks:
        P, y = pool(name, args.cache_dir)
        for fraction in MISSING:
            got = scores(P, y, fraction, args.repeats)
            cells = [f"{ap:.4f} ({s:.2f} s)" if s == s else f"{ap:.4f}" for ap, s in got.values()]
            print(f"| {name} (n={len(y)}, m={P.shape[1]}) | {fraction:.0%} | " + " | ".join(cells) + " |", flush=True)
    if args.speed:
        speed()


if __name__ == "__main__":
    main()
