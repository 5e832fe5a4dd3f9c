"""Multi-class prediction quality on real tasks: cfe_fast against the mean of R and multinomial LR stacking.

The protocol of :mod:`benchmarks.quality.run` for K >= 3 classes: a pool
of the same base classifiers per task, out-of-fold probabilities of every
class (cached on disk), labeled fractions with stratified re-draws (at
least two labeled rows per class), every metric on the unlabeled rows.
Metrics: log-loss, accuracy, Brier score (summed over the classes) and the
macro average of the one-vs-rest PR-AUC.

Usage::

    python -m benchmarks.quality.multiclass [--tasks digits hpc] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

from . import pools, tasks
from .run import draw_labeled, git_commit, machine_kind

RESULTS = Path(__file__).resolve().parents[1] / "results"
FRACTIONS = (0.01, 0.05, 0.5)
MAX_ROWS = 20_000
"""Tasks with more rows are subsampled (stratified, fixed seed) to this many: the pool is built per class."""


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(float), d.target, "handwritten digits 0-9 from 8x8 pixel intensities (scikit-learn load_digits)"


def _from_r(package, item, target, description, ordinal=None):
    df = tasks._rdata(package, item)
    df = df[df[target].notna()].dropna().reset_index(drop=True)
    X, _ = tasks.encode_frame(df.drop(columns=[target]), ordinal=ordinal)
    return X, df[target].astype(str).to_numpy(), description


#: task name -> loader returning (X, labels, description)
LOADERS = {
    "digits": _digits,
    "hpc": lambda: _from_r("modeldata", "hpc_data", "class",
                           "run time class (VF, F, M, L) of computing jobs from 7 job attributes (modeldata hpc_data)"),
    "penguins": lambda: _from_r("palmerpenguins", "penguins", "species",
                                "penguin species from bill, flipper, mass, island and sex (palmerpenguins)"),
    "diamonds_cut": lambda: _from_r("ggplot2", "diamonds", "cut",
                                    "cut grade (5 classes) of a diamond from carat, colour, clarity, price and "
                                    "dimensions (ggplot2 diamonds)",
                                    ordinal={"color": tasks._DIAMOND_ORDER["color"],
                                             "clarity": ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]}),
}


def subsample(X, y, max_rows=MAX_ROWS, seed=0):
    """Stratified subsample of at most ``max_rows`` rows (sorted indices)."""
    if len(y) <= max_rows:
        return X, y
    keep = np.sort(train_test_split(np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed)[0])
    return X[keep], y[keep]


def pool_probabilities(name, cache_dir=pools.CACHE_DIR):
    """(P (n, m, K), codes (n,), classes, model names, description), from the cache or built now."""
    X, labels, description = LOADERS[name]()
    classes, codes = np.unique(labels, return_inverse=True)
    X, codes = subsample(X, codes)
    path = Path(cache_dir) / f"{name}-multiclass.npz"
    pool = pools.make_pool("full")
    if path.exists():
        z = np.load(path, allow_pickle=False)
        if z["P"].shape[:2] == (codes.size, len(pool)) and np.array_equal(z["codes"], codes):
            return z["P"], codes, classes, list(pool), description
    cv = StratifiedKFold(n_splits=pools.N_FOLDS, shuffle=True, random_state=pools.CV_SEED)
    columns = []
    for model_name, model in pool.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proba = cross_val_predict(model, X, codes, cv=cv, method="predict_proba", n_jobs=2)
        proba = np.nan_to_num(proba, nan=1.0 / classes.size)
        columns.append(proba / proba.sum(axis=1, keepdims=True))
        print(f"    {name} {model_name:24s} {time.perf_counter() - t0:6.1f} s", flush=True)
    P = np.clip(np.stack(columns, axis=1), 0.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, P=P, codes=codes)
    return P, codes, classes, list(pool), description


def metrics(codes, proba, n_classes):
    """log-loss, accuracy, Brier score and macro one-vs-rest PR-AUC of class probabilities (n, K)."""
    onehot = np.eye(n_classes)[codes]
    return {
        "log_loss": float(log_loss(codes, np.clip(proba, 1e-15, 1.0), labels=np.arange(n_classes))),
        "accuracy": float(accuracy_score(codes, proba.argmax(axis=1))),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
        "macro_pr_auc": float(np.mean([average_precision_score(onehot[:, k], proba[:, k]) for k in range(n_classes)])),
    }


def mean_of_R(P, labeled, codes):
    return P[~labeled].mean(axis=1)


def best_single(P, labeled, codes):
    """The classifier with the smallest log-loss on the labeled rows."""
    losses = [log_loss(codes[labeled], np.clip(P[labeled, j], 1e-15, 1), labels=np.arange(P.shape[2]))
              for j in range(P.shape[1])]
    return P[~labeled, int(np.argmin(losses))]


def lr_stacking(P, labeled, codes):
    """Multinomial LogisticRegression(class_weight="balanced") on the (n, m K) layout."""
    flat = P.reshape(P.shape[0], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(class_weight="balanced", max_iter=2000).fit(flat[labeled], codes[labeled])
    proba = np.zeros((int((~labeled).sum()), P.shape[2]))
    proba[:, model.classes_] = model.predict_proba(flat[~labeled])
    return proba


def cfe(P, labeled, codes, seed=0):
    from cfe_fast import CFEnsembleClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CFEnsembleClassifier(random_state=seed).fit(P, np.where(labeled, codes, -1))
    return model.transductive_proba_[~labeled]


METHODS = {"mean": mean_of_R, "best_single": best_single, "lr_stacking": lr_stacking, "cfe": cfe}


def run(task_names, fractions, repeats):
    rows, info = [], {}
    for name in task_names:
        P, codes, classes, _, description = pool_probabilities(name)
        info[name] = (codes.size, P.shape[1], classes.size, description, np.bincount(codes).min() / codes.size)
        for fraction in fractions:
            for repeat in range(repeats):
                labeled = draw_labeled(codes, fraction, repeat)
                for method, fn in METHODS.items():
                    t0 = time.perf_counter()
                    proba = fn(P, labeled, codes) if method != "cfe" else fn(P, labeled, codes, seed=repeat)
                    row = dict(task=name, fraction=fraction, repeat=repeat, method=method,
                               n_labeled=int(labeled.sum()), fit_s=time.perf_counter() - t0,
                               **metrics(codes[~labeled], proba, classes.size))
                    rows.append(row)
                    print(f"    {name} f={fraction} r={repeat} {method:12s} log-loss {row['log_loss']:.4f} "
                          f"acc {row['accuracy']:.4f} macro PR-AUC {row['macro_pr_auc']:.4f}", flush=True)
    return rows, info


def write_markdown(path, rows, info, command, fractions, repeats):
    lines = [f"# Multi-class prediction quality on real tasks ({machine_kind()[0]})", "",
             f"- Command: `{command}`", f"- Git commit: {git_commit()}",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- Pool: the 17 classifiers of benchmarks/quality/pools.py, out-of-fold probabilities of every class "
             f"(5-fold stratified, seed 0); labeled fractions {', '.join(map(str, fractions))}; {repeats} stratified "
             "re-draws each (at least 2 labeled rows per class); metrics on the unlabeled rows, mean ± std",
             "- cfe = `CFEnsembleClassifier()` defaults (one binary CF-Ensemble per class, its probabilities "
             "normalised over the classes)", "", "## Tasks", "",
             "| task | n | classifiers | classes | smallest class share | description |", "|---|---:|---:|---:|---:|---|"]
    for name, (n, m, K, description, smallest) in info.items():
        lines.append(f"| {name} | {n} | {m} | {K} | {smallest:.3f} | {description} |")
    for metric, better in (("log_loss", "lower"), ("accuracy", "higher"), ("macro_pr_auc", "higher"),
                           ("brier", "lower")):
        lines += ["", f"## {metric} ({better} is better)", "",
                  "| task | fraction | labeled | " + " | ".join(f"`{m}`" for m in METHODS) + " | best |",
                  "|---|---|---|" + "---|" * (len(METHODS) + 1)]
        for name in info:
            for fraction in fractions:
                cell = [r for r in rows if r["task"] == name and r["fraction"] == fraction]
                stats = {m: np.array([r[metric] for r in cell if r["method"] == m]) for m in METHODS}
                pick = min if better == "lower" else max
                best = pick(stats, key=lambda m: stats[m].mean())
                labeled = cell[0]["n_labeled"]
                lines.append(f"| {name} | {fraction} | {labeled} | "
                             + " | ".join(("**{:.4f} ± {:.4f}**" if m == best else "{:.4f} ± {:.4f}").format(
                                 v.mean(), v.std()) for m, v in stats.items()) + f" | {best} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default: results/quality_multiclass_<machine>.md)")
    args = parser.parse_args(argv)
    rows, info = run(args.tasks, args.fractions, args.repeats)
    out = args.out or RESULTS / f"quality_multiclass_{machine_kind()[1]}.md"
    command = "python -m benchmarks.quality.multiclass " + " ".join(sys.argv[1:] if argv is None else argv)
    write_markdown(out, rows, info, command.strip(), args.fractions, args.repeats)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
