"""Evaluate combiners of base-classifier probabilities on real binary tasks.

For each task, labeled fraction and repeat, a stratified random set of rows
is labeled (at least 2 rows of each class) and every method predicts the
other rows; PR-AUC (average precision), ROC-AUC, Brier score and fit time are
measured on those unlabeled rows, with the expected calibration error and a
reliability curve. The report (markdown), the raw per-repeat results (CSV), a
PR-AUC plot and the reliability curves (PNG) are written side by side.

Usage::

    python -m benchmarks.quality.run --profile full
    python -m benchmarks.quality.run --tasks hmda caravan --fractions 0.05 \\
        --methods mean lr_stacking cfe cfe:rho=0.5,trainer=exact
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from . import pools, tasks
from .methods import resolve

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_METHODS = ["mean", "best_single", "lr_stacking", "greedy", "cfe"]
TIE = 0.002
"""A cfe cell counts as matching when it is within TIE PR-AUC of max(mean, LR)."""

PROFILES = {
    "quick": dict(tasks=["breast_cancer", "digits_8"], fractions=[0.05], repeats=1,
                  pool="small"),
    "full": dict(tasks=tasks.task_names(), fractions=[0.01, 0.05, 0.5], repeats=3,
                 pool="full"),
}
"""quick: a smoke run for CI (tasks bundled with scikit-learn, the 6-model
pool); full: every task, three labeled fractions, three re-draws."""


# --------------------------------------------------------------------- environment
def machine_kind():
    """Describe this machine, e.g. ``("2-core AMD EPYC (cpu2)", "cpu2")``."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = os.cpu_count() or 1
    try:
        n = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        pass
    tag = f"cpu{n}"
    return f"{n}-core {model} ({tag})", tag


def git_commit():
    """Short commit hash of the repository, with ``+dirty`` if files changed."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --------------------------------------------------------------------- splits and metrics
def draw_labeled(y, fraction, seed, min_per_class=2):
    """Stratified random choice of labeled rows.

    Parameters
    ----------
    y : ndarray of shape (n,)
        Class labels (0/1, or the class codes of a multi-class task).
    fraction : float in (0, 1)
        Share of each class to label (rounded), at least ``min_per_class``
        rows per class and at least one unlabeled row per class.
    seed : int
        Seed of the draw (the repeat number).

    Returns
    -------
    ndarray of bool, shape (n,)
        True on the labeled rows.
    """
    rng = np.random.default_rng(seed)
    labeled = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(round(fraction * len(idx)))
        k = min(max(k, min_per_class), len(idx) - 1)
        labeled[rng.choice(idx, size=k, replace=False)] = True
    return labeled


RELIABILITY_BINS = 10
"""Equal-width bins of predicted probability for the reliability curve and the ECE."""


def reliability_sums(y_true, score, bins=RELIABILITY_BINS):
    """Per probability bin: the number of rows, the sum of their predictions and of their labels.

    Returns
    -------
    ndarray of shape (3, bins)
    """
    s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    which = np.minimum((s * bins).astype(int), bins - 1)
    return np.array([np.bincount(which, weights=w, minlength=bins)
                     for w in (np.ones_like(s), s, np.asarray(y_true, dtype=float))])


def expected_calibration_error(sums):
    """sum over bins of (rows in bin / rows) |mean prediction - positive rate| (from :func:`reliability_sums`)."""
    count, predicted, positive = sums
    filled = count > 0
    return float(np.sum(np.abs(predicted[filled] - positive[filled])) / count.sum())


def score_metrics(y_true, score):
    """PR-AUC (average precision), ROC-AUC, Brier score and expected calibration error of one prediction."""
    s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    return {
        "pr_auc": float(average_precision_score(y_true, s)),
        "roc_auc": float(roc_auc_score(y_true, s)),
        "brier": float(brier_score_loss(y_true, s)),
        "ece": expected_calibration_error(reliability_sums(y_true, s)),
    }


# --------------------------------------------------------------------- evaluation
def evaluate_pool(task_name, P, y, names, fractions, repeats, methods, log=print, first_seed=0):
    """Run every method on every labeled draw of one probability matrix.

    Parameters
    ----------
    task_name : str
    P : ndarray of shape (n, m)
        Out-of-fold probabilities.
    y : ndarray of shape (n,)
    names : list of str
        Classifier names (columns of P).
    fractions : sequence of float
    repeats : int
    methods : sequence of str
        Method specs (see :mod:`.methods`).
    log : callable or None
    first_seed : int
        Seed of the first re-draw; the others follow (another set of
        re-draws checks that a choice made on the first set holds).

    Returns
    -------
    list of dict
        One row per (fraction, repeat, method): the metrics, fit time,
        labeled counts and a JSON ``info`` column.
    """
    resolved = [resolve(s) for s in methods]
    rows = []
    for fraction in fractions:
        for rep in range(first_seed, first_seed + repeats):
            labeled = draw_labeled(y, fraction, seed=rep)
            y_unl = y[~labeled]
            for meth in resolved:
                pred, secs = meth.run(P, y, labeled, names=names, seed=rep)
                if pred.score.shape != y_unl.shape or not np.all(np.isfinite(pred.score)):
                    raise RuntimeError(f"{meth.spec} on {task_name}: bad scores")
                row = dict(task=task_name, n=len(y), positive_rate=float(y.mean()),
                           fraction=fraction, repeat=rep, method=meth.spec,
                           n_labeled=int(labeled.sum()), n_labeled_pos=int(y[labeled].sum()),
                           **score_metrics(y_unl, pred.score), fit_s=secs,
                           reliability=json.dumps(reliability_sums(y_unl, pred.score).round(6).tolist()),
                           info=json.dumps(pred.info, sort_keys=True))
                rows.append(row)
                if log:
                    log(f"    {task_name} f={fraction:g} r={rep} {meth.spec:28s} "
                        f"PR-AUC {row['pr_auc']:.4f}  ROC-AUC {row['roc_auc']:.4f}  "
                        f"Brier {row['brier']:.4f}  {secs:6.2f} s")
    return rows


def run(task_names, fractions, repeats, methods, pool="full", cache_dir=pools.CACHE_DIR,
        log=print, first_seed=0):
    """Evaluate methods on tasks.

    Returns
    -------
    rows : list of dict
        See :func:`evaluate_pool`.
    task_info : list of dict
        Per task: name, rows used, rows in the source, features, positive
        rate, pool build time, whether the pool came from the cache, source,
        description, classifier names.
    """
    rows, task_info = [], []
    for name in task_names:
        t0 = time.perf_counter()
        task = tasks.load_task(name)
        data = pools.load_or_build(task, kind=pool, cache_dir=cache_dir, verbose=log is not None)
        if log:
            how = "cached" if data["cached"] else "built"
            log(f"  {name}: n={len(data['y'])} pos={data['y'].mean():.3f} pool {how} "
                f"(build {data['build_s']:.1f} s), loaded in {time.perf_counter() - t0:.1f} s")
        task_info.append(dict(name=name, n=len(data["y"]), n_source=data["n_full"],
                              p=task.X.shape[1], positive_rate=float(data["y"].mean()),
                              build_s=data["build_s"], cached=data["cached"],
                              source=task.source, description=task.description,
                              names=data["names"]))
        rows += evaluate_pool(name, data["P"], data["y"], data["names"], fractions,
                              repeats, methods, log=log, first_seed=first_seed)
    return rows, task_info


# --------------------------------------------------------------------- summaries
def cell_table(rows):
    """Mean and std over repeats per (task, fraction, method).

    Returns
    -------
    dict
        (task, fraction) -> method -> metric -> (mean, std); also the key
        ``"_labeled"`` -> (mean labeled rows, mean labeled positives).
    """
    cells = {}
    for r in rows:
        cells.setdefault((r["task"], r["fraction"]), {}).setdefault(r["method"], []).append(r)
    out = {}
    for key, by_method in cells.items():
        out[key] = {}
        for meth, rs in by_method.items():
            out[key][meth] = {m: (float(np.mean([r[m] for r in rs])), float(np.std([r[m] for r in rs])))
                              for m in ("pr_auc", "roc_auc", "brier", "ece", "fit_s")}
        any_rs = next(iter(by_method.values()))
        out[key]["_labeled"] = (float(np.mean([r["n_labeled"] for r in any_rs])),
                                float(np.mean([r["n_labeled_pos"] for r in any_rs])))
    return out


def headline(cells, methods, tie=TIE):
    """Per cfe spec: cells within ``tie`` of max(mean, LR), and cells where it is best.

    "Best" compares the spec with the non-cfe methods only (other cfe specs
    are left out), by mean PR-AUC.

    Returns
    -------
    dict
        spec -> dict(n_cells, matches, best, deltas) where ``deltas`` maps
        (task, fraction) to cfe - max(mean, lr_stacking).
    """
    baselines = [m for m in methods if not m.startswith("cfe")]
    refs = [m for m in ("mean", "lr_stacking") if m in methods]
    out = {}
    for spec in (m for m in methods if m.startswith("cfe")):
        matches = best = 0
        deltas = {}
        for key, c in cells.items():
            pr = {m: c[m]["pr_auc"][0] for m in methods if m in c}
            if refs:
                d = pr[spec] - max(pr[m] for m in refs)
                deltas[key] = d
                matches += d >= -tie
            if all(pr[spec] >= pr[b] for b in baselines):
                best += 1
        out[spec] = dict(n_cells=len(cells), matches=matches, best=best, deltas=deltas)
    return out


def _pm(ms, digits=3):
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def write_csv(rows, path):
    """Write the raw per-repeat rows."""
    fields = ["task", "n", "positive_rate", "fraction", "repeat", "method", "n_labeled",
              "n_labeled_pos", "pr_auc", "roc_auc", "brier", "ece", "fit_s", "reliability", "info"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in fields})


def plot(cells, task_order, fractions, methods, path):
    """PR-AUC (mean ± std over repeats) per task and labeled fraction, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(task_order)
    ncol = min(4, k)
    nrow = (k + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False)
    x = np.arange(len(fractions))
    width = 0.8 / max(1, len(methods))
    for ax, task in zip(axes.flat, task_order):
        for i, meth in enumerate(methods):
            mu = [cells[(task, f)][meth]["pr_auc"][0] for f in fractions]
            sd = [cells[(task, f)][meth]["pr_auc"][1] for f in fractions]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, mu, width, yerr=sd,
                   label=meth, capsize=2)
        mus = [cells[(task, f)][m]["pr_auc"][0] for f in fractions for m in methods]
        lo, hi = min(mus), max(mus)
        pad = max(0.02, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - 2 * pad), min(1.0, hi + pad))
        ax.set_xticks(x, [f"{f:g}" for f in fractions])
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("labeled fraction", fontsize=8)
        ax.set_ylabel("PR-AUC (unlabeled rows)", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(methods), 6), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(rows, fractions, methods, path):
    """Reliability curves: positive rate against mean prediction per bin, one panel per labeled fraction.

    Every task weighs the same: a task's bin sums are divided by its number
    of predicted rows before they are added over tasks and re-draws.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows_of_legend = (len(methods) + 1 + 3) // 4
    height = 4.4 + 0.22 * rows_of_legend
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.4 * len(fractions), height), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    for ax, fraction in zip(axes.flat, fractions):
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="perfectly calibrated")
        for i, meth in enumerate(methods):
            sums = sum(np.array(json.loads(r["reliability"])) / (r["n"] - r["n_labeled"])
                       for r in rows if r["method"] == meth and r["fraction"] == fraction)
            filled = sums[0] > 0
            ax.plot(sums[1][filled] / sums[0][filled], sums[2][filled] / sums[0][filled], marker="o",
                    markersize=3, linewidth=1.2, color=colours[i % len(colours)],
                    linestyle="-" if meth.startswith("cfe") else "--", label=meth)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.set_title(f"labeled fraction {fraction:g}", fontsize=10)
        ax.set_xlabel("mean predicted probability (bin)", fontsize=8)
        ax.set_ylabel("positive rate (bin)", fontsize=8)
        ax.tick_params(labelsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.45 / height, bottom=(0.75 + 0.22 * rows_of_legend) / height,
                        wspace=0.25)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_path(path):
    """Where the reliability plot of the report at ``path`` goes."""
    path = Path(path)
    return path.with_name(path.stem + "_reliability.png")


def write_markdown(path, rows, task_info, fractions, seeds, methods, pool, command,
                   elapsed_s, note=None):
    """Write the report; returns the headline dict (see :func:`headline`)."""
    kind, _ = machine_kind()
    cells = cell_table(rows)
    heads = headline(cells, methods)
    task_order = [t["name"] for t in task_info]
    lines = [f"# Prediction quality on real tasks ({kind})", ""]
    lines += [
        f"- Machine: {kind}",
        f"- Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Command: `{command}`",
        f"- Git commit: {git_commit()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {_version('sklearn')}, cfe_fast {_version('cfe_fast')}",
        f"- Pool: '{pool}', {len(task_info[0]['names'])} classifiers, out-of-fold "
        f"probabilities ({pools.N_FOLDS}-fold stratified, seed {pools.CV_SEED})",
        f"- Labeled fractions {', '.join(f'{f:g}' for f in fractions)}; {len(seeds)} "
        f"stratified re-draws each (seeds {seeds[0]} to {seeds[-1]}; at least 2 labeled rows per class); "
        "all metrics on the unlabeled rows; mean ± std over re-draws",
        f"- cfe_fast imported from `{_origin('cfe_fast')}`",
        f"- Wall time of this run: {elapsed_s / 60:.1f} min, pools included where built "
        f"(one-time pool build of these tasks: {sum(t['build_s'] for t in task_info):.0f} s "
        "in all, per task below; 'cached' = read from the cache in this run)",
    ]
    if note:
        lines += [f"- Note: {note}"]
    lines += ["", "## Headline", ""]
    for spec, h in heads.items():
        lines.append(
            f"- `{spec}`: PR-AUC >= max(mean, lr_stacking) - {TIE} in **{h['matches']} of "
            f"{h['n_cells']}** cells; best of all non-cfe methods and itself in "
            f"**{h['best']} of {h['n_cells']}** cells; difference to max(mean, lr_stacking) "
            f"summed over the cells where it is negative {sum(min(d, 0.0) for d in h['deltas'].values()):+.4f}, "
            f"mean over all cells {np.mean(list(h['deltas'].values())):+.4f}")
    lines += ["", "## Tasks", "",
              "| task | n | features | positive rate | pool build (s) | source | description |",
              "|---|---:|---:|---:|---:|---|---|"]
    for t in task_info:
        n = f"{t['n']}" if t["n"] == t["n_source"] else f"{t['n']} (of {t['n_source']})"
        cached = " (cached)" if t["cached"] else ""
        lines.append(f"| {t['name']} | {n} | {t['p']} | {t['positive_rate']:.3f} | "
                     f"{t['build_s']:.1f}{cached} | {t['source']} | {t['description']} |")
    lines += ["", f"Pool classifiers: {', '.join(task_info[0]['names'])}.", ""]

    lines += ["## PR-AUC per cell", "",
              "PR-AUC (average precision) on the unlabeled rows. *best* is the method "
              "with the highest mean; the last column is the first cfe spec minus "
              "max(mean, lr_stacking).", ""]
    cfe_specs = list(heads)
    hdr = ["task", "fraction", "labeled (pos)"] + [f"`{m}`" for m in methods] + ["best"]
    if cfe_specs:
        hdr.append(f"`{cfe_specs[0]}` − max(mean, LR)")
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for task in task_order:
        for f in fractions:
            c = cells[(task, f)]
            best = max(methods, key=lambda m: c[m]["pr_auc"][0])
            nl, npos = c["_labeled"]
            vals = []
            for m in methods:
                v = _pm(c[m]["pr_auc"])
                vals.append(f"**{v}**" if m == best else v)
            row = [task, f"{f:g}", f"{nl:.0f} ({npos:.0f})"] + vals + [best]
            if cfe_specs:
                row.append(f"{heads[cfe_specs[0]]['deltas'].get((task, f), float('nan')):+.4f}")
            lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Calibration", "",
              "Brier score and expected calibration error (ECE, "
              f"{RELIABILITY_BINS} equal-width bins) on the unlabeled rows, averaged over the tasks "
              "(each task's mean over re-draws first).", "",
              "| method | " + " | ".join(f"Brier, {f:g} labeled | ECE, {f:g} labeled" for f in fractions) + " |",
              "|---|" + "---:|---:|" * len(fractions)]
    for m in methods:
        vals = []
        for f in fractions:
            vals += [f"{np.mean([cells[(t, f)][m][k][0] for t in task_order]):.4f}" for k in ("brier", "ece")]
        lines.append(f"| `{m}` | " + " | ".join(vals) + " |")
    lines += ["", f"![Reliability curves]({reliability_path(path).name})"]
    lines += ["", "## All metrics", "",
              "| task | fraction | method | PR-AUC | ROC-AUC | Brier | ECE | fit (s) |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
    for task in task_order:
        for f in fractions:
            c = cells[(task, f)]
            for m in methods:
                lines.append(f"| {task} | {f:g} | `{m}` | {_pm(c[m]['pr_auc'])} | "
                             f"{_pm(c[m]['roc_auc'])} | {_pm(c[m]['brier'], 4)} | {_pm(c[m]['ece'], 4)} | "
                             f"{c[m]['fit_s'][0]:.2f} |")
    lines += ["", f"Raw per-repeat results: `{Path(path).with_suffix('.csv').name}`; "
              f"plot: `{Path(path).with_suffix('.png').name}`.", "",
              f"![PR-AUC per cell]({Path(path).with_suffix('.png').name})", ""]
    Path(path).write_text("\n".join(lines))
    return heads


def _origin(mod):
    try:
        return str(Path(__import__(mod).__file__).resolve().parent)
    except Exception:  # noqa: BLE001 - report only
        return "?"


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001 - report only
        return "?"


# --------------------------------------------------------------------- command line
def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--tasks", nargs="+", help=f"default: the profile's; known: "
                    f"{' '.join(tasks.task_names())}")
    ap.add_argument("--fractions", nargs="+", type=float)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--first-seed", type=int, default=0, help="seed of the first re-draw (default 0)")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                    help="method specs, e.g. mean lr_stacking cfe 'cfe:rho=0.5,trainer=exact'")
    ap.add_argument("--pool", choices=["full", "small"], help="default: the profile's")
    ap.add_argument("--out", help="report path (.md); the .csv and .png go beside it. "
                    "Default: benchmarks/results/quality_<machine>.md (full) or "
                    "quality_quick_<machine>.md (quick)")
    ap.add_argument("--no-cache", action="store_true", help="rebuild pools, write no cache")
    ap.add_argument("--note", help="a line added to the report header")
    args = ap.parse_args(argv)

    prof = PROFILES[args.profile]
    task_list = args.tasks or prof["tasks"]
    fractions = args.fractions or prof["fractions"]
    repeats = args.repeats or prof["repeats"]
    pool = args.pool or prof["pool"]
    for s in args.methods:
        resolve(s)  # fail early on a bad spec
    _, tag = machine_kind()
    stem = "quality" if args.profile == "full" else "quality_quick"
    out = Path(args.out) if args.out else RESULTS_DIR / f"{stem}_{tag}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.quality.run " + " ".join(shlex.quote(a) for a in argv)

    t0 = time.perf_counter()
    print(f"quality benchmark: {len(task_list)} tasks, fractions {fractions}, "
          f"{repeats} repeats, methods {args.methods}, pool '{pool}'", flush=True)
    rows, task_info = run(task_list, fractions, repeats, args.methods, pool=pool,
                          cache_dir=None if args.no_cache else pools.CACHE_DIR,
                          log=lambda s: print(s, flush=True), first_seed=args.first_seed)
    elapsed = time.perf_counter() - t0
    write_csv(rows, out.with_suffix(".csv"))
    plot(cell_table(rows), [t["name"] for t in task_info], fractions, args.methods,
         out.with_suffix(".png"))
    plot_reliability(rows, fractions, args.methods, reliability_path(out))
    seeds = list(range(args.first_seed, args.first_seed + repeats))
    heads = write_markdown(out, rows, task_info, fractions, seeds, args.methods, pool,
                           command, elapsed, note=args.note)
    for spec, h in heads.items():
        print(f"{spec}: >= max(mean, LR) - {TIE} in {h['matches']}/{h['n_cells']} cells; "
              f"best in {h['best']}/{h['n_cells']}")
    print(f"wrote {out} (+ .csv, .png, {reliability_path(out).name}) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
