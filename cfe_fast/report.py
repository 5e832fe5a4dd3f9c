"""Fit reports: one PNG with eight panels and a Markdown page embedding it.

Panels: the cross-validated PR-AUC of the model next to the mean of R, the
best single classifier and LR stacking (:mod:`cfe_fast.comparison`, with the
probabilities and labels of the fit); the reliability diagram of those
out-of-fold predictions; histograms of the fitted predictions by class on
the labeled instances; objective terms per iteration; aggregator weight per
classifier per iteration; latent effective rank of X and Y; the collapse
monitors (||w||, std of p, fraction predicted positive); the collapse
verdicts of ``model.diagnose()``. A panel whose data the fit did not record
(or that needs labels of both classes) holds a note instead of a plot. A
model of more than two classes gets a Markdown summary of each class's model.
matplotlib (the ``plot`` extra) is imported only here, when a picture is drawn.
"""

import io
from pathlib import Path

import numpy as np

from .comparison import METHODS, cross_validated_comparison
from .io.atomic import atomic_write

#: Classifiers drawn in colour in the weights panel (the largest final |w|); the rest in grey.
HIGHLIGHTED = 8
#: Bins of the reliability diagram (quantiles of the predictions: rare positives fill each bin alike)
RELIABILITY_BINS = 10
#: Colour of each method of the comparison, in both of its panels
METHOD_COLOURS = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green", "tab:purple")))
#: Why the comparison's panels are empty, when they are
NO_COMPARISON = "it needs the fit's probabilities and\n>= 2 labeled instances of each class"
#: Width of the figure (inches); the verdicts' font is sized to fit it
FIGURE_WIDTH = 22


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the report picture needs matplotlib: pip install 'cfe_fast[plot]'") from None
    return plt


def verdicts_text(model):
    """The collapse report of ``model.diagnose()``, or a note where the model's history has no monitors."""
    try:
        return str(model.diagnose())
    except ValueError as error:
        return f"collapse verdicts: not available ({error})"


def _classifier_names(model):
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return [f"classifier {u}" for u in range(model.n_features_in_)]
    return [str(name) for name in names]


def _not_recorded(ax, title, what, why="not recorded by this fit"):
    ax.set_title(title)
    ax.text(0.5, 0.5, f"{what}\n{why}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _iterations(history, key):
    return np.arange(1, len(history[key]) + 1)


def _loss_panel(ax, history):
    ax.set_title("objective terms")
    for key in ("loss", "reconstruction", "supervised"):
        values = np.asarray(history.get(key, []), dtype=float)
        if values.size:
            ax.plot(_iterations(history, key), values, marker=".", label=key)
    if all(np.all(np.asarray(history.get(k, [1.0]), dtype=float) > 0) for k in ("loss", "reconstruction", "supervised")):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    _legend_below(ax)


def _legend_below(ax, handles=None, ncol=3):
    """The legend under the axes, where it covers no line."""
    labels = None if handles is None else [h.get_label() for h in handles]
    args = () if handles is None else (handles, labels)
    ax.legend(*args, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False)


def _weights_panel(ax, history, coef, names):
    title = "aggregator weight per classifier"
    if "coef" not in history or not len(history["coef"]):
        _not_recorded(ax, title, "per-iteration weights")
        return
    W = np.asarray(history["coef"], dtype=float)  # (iterations, m)
    iters = np.arange(1, W.shape[0] + 1)
    order = np.argsort(-np.abs(coef))
    top = set(order[:HIGHLIGHTED].tolist())
    for u in range(W.shape[1]):
        if u not in top:
            ax.plot(iters, W[:, u], color="0.75", linewidth=0.6)
    for u in order[:HIGHLIGHTED]:
        ax.plot(iters, W[:, u], linewidth=1.4, label=names[u])
    ax.axhline(0.0, color="k", linewidth=0.6)
    ax.set_title(title if W.shape[1] <= HIGHLIGHTED else f"{title} (top {HIGHLIGHTED} by |w| in colour)")
    ax.set_xlabel("iteration")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the lines


def _histogram_panel(ax, proba, labels):
    bins = np.linspace(0.0, 1.0, 26)
    if labels is None or np.all(np.isnan(labels)):
        ax.hist(proba, bins=bins, color="0.5", label="all instances (no labels)")
    else:
        for cls, colour in ((0, "tab:blue"), (1, "tab:red")):
            ax.hist(proba[labels == cls], bins=bins, alpha=0.6, color=colour, label=f"labeled y={cls}")
    ax.set_yscale("log")
    ax.set_title("fitted P(y=1) by class")
    ax.set_xlabel("P(y=1)")
    _legend_below(ax)


def _rank_panel(ax, history):
    title = "latent effective rank"
    keys = [k for k in ("effective_rank_X", "effective_rank_Y") if len(history.get(k, []))]
    if not keys:
        _not_recorded(ax, title, "effective ranks")
        return
    for key in keys:
        ax.plot(_iterations(history, key), history[key], marker=".", label=key.replace("effective_rank_", ""))
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.set_xlabel("iteration")
    _legend_below(ax)


def _monitor_panel(ax, history):
    title = "collapse monitors"
    if not any(len(history.get(k, [])) for k in ("w_norm", "pred_std", "frac_positive")):
        _not_recorded(ax, title, "||w||, std(p), fraction positive")
        return
    lines = []
    if len(history.get("w_norm", [])):
        lines += ax.plot(_iterations(history, "w_norm"), history["w_norm"], marker=".", color="tab:purple", label="||w||")
        ax.set_ylabel("||w||")
    right = ax.twinx()  # std(p) and the positive fraction live in [0, 1]
    for key, colour in (("pred_std", "tab:orange"), ("frac_positive", "tab:green")):
        if len(history.get(key, [])):
            lines += right.plot(_iterations(history, key), history[key], marker=".", color=colour, label=key)
    right.set_ylim(0, 1)
    right.set_ylabel("std(p), fraction predicted positive")
    ax.set_title(title)
    ax.set_xlabel("iteration")
    _legend_below(ax, lines)


def _comparison_panel(ax, comparison, n_instances):
    title = "PR-AUC, cross-validated on the labeled rows"
    if comparison is None:
        _not_recorded(ax, title, "no comparison", NO_COMPARISON)
        return
    scores = comparison.scores
    means, spreads = scores.mean(axis=1), scores.std(axis=1)
    positions = np.arange(len(METHODS))[::-1]  # the model on top
    for j, method in enumerate(METHODS):
        colour = METHOD_COLOURS[method]
        ax.errorbar(means[j], positions[j], xerr=spreads[j], fmt="o", color=colour, capsize=4, markersize=7)
        ax.plot(scores[j], np.full(comparison.folds, positions[j] - 0.2), "|", color=colour, alpha=0.7)
    chance = comparison.y.mean()
    low = max(0.0, min(float(scores.min()), float((means - spreads).min())) - 0.1)  # zoomed on the methods
    if chance >= low:
        ax.axvline(chance, color="0.5", linestyle=":", linewidth=1)
    ax.set_yticks(positions, [f"{method}\n{means[j]:.3f} ± {spreads[j]:.3f}" for j, method in enumerate(METHODS)])
    ax.set_ylim(-0.7, len(METHODS) - 0.4)
    ax.set_xlim(low, 1.02)  # room for a whole marker at 1
    ax.set_xlabel(f"mean ± sd over {comparison.folds} folds (ticks: the folds); chance: {chance:.2f}")
    sample = ("" if comparison.n_instances >= n_instances
              else f"\n(refits on a sample of {comparison.n_instances} instances)")
    ax.set_title(title + sample)


def _reliability_panel(ax, comparison):
    title = "reliability (out-of-fold, labeled rows)"
    if comparison is None:
        _not_recorded(ax, title, "no reliability diagram", NO_COMPARISON)
        return
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for j, method in enumerate(METHODS):
        p = comparison.proba[j]
        observed, predicted = calibration_curve(comparison.y, p, n_bins=RELIABILITY_BINS, strategy="quantile")
        ax.plot(predicted, observed, marker=".", color=METHOD_COLOURS[method],
                label=f"{method} (Brier {brier_score_loss(comparison.y, p):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted P(y=1) in a bin")
    ax.set_ylabel("fraction positive")
    ax.set_title(title)
    _legend_below(ax, ncol=2)


def _verdict_panel(ax, text):
    ax.set_title("collapse verdicts")
    ax.axis("off")
    lines = text.splitlines() or [""]
    width, height = ax.get_figure().get_size_inches() * ax.get_position().size
    # monospace: a character is about 0.6 em wide, a line 1.25 em high
    size = min(9.0, 72 * width / (0.6 * max(map(len, lines))), 72 * height / (1.25 * len(lines)))
    ax.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=size, transform=ax.transAxes)


def _refuse_multiclass(model):
    if hasattr(model, "estimators_"):
        raise ValueError(f"the report's picture and comparison are drawn for two classes only (this model has "
                         f"{model.classes_.size}): use write_report or multiclass_markdown")


def comparison_of(model, P, labels):
    """The cross-validated comparison of the report, or None without the probabilities or labels."""
    if P is None or labels is None:
        return None
    return cross_validated_comparison(model, P, labels)


def report_figure(model, labels=None, comparison=None):
    """The eight-panel matplotlib figure of a fitted model (see the module docstring).

    Parameters
    ----------
    model : fitted CFEnsembleClassifier
    labels : array (n_instances,) or None
        The labels the model was fitted with (NaN = unlabeled), for the
        histograms by class.
    comparison : :class:`~cfe_fast.comparison.Comparison` or None
        From :func:`comparison_of`; None leaves its two panels with a note.
    """
    _refuse_multiclass(model)
    plt = _pyplot()
    history = model.history_
    names = _classifier_names(model)
    fig = plt.figure(figsize=(FIGURE_WIDTH, 15), layout="constrained")
    axes = fig.subplot_mosaic(
        [["comparison", "reliability", "histogram", "loss"],
         ["weights", "weights", "rank", "monitors"],
         ["verdicts"] * 4],
        height_ratios=[1, 1, 0.45],
    )
    fig.suptitle(
        f"cfe_fast fit: {model.n_features_in_} classifiers, {model.transductive_proba_.size} instances, "
        f"d={model.latent_dim_}, {model.n_iter_} iterations ({'converged' if model.converged_ else 'not converged'})"
    )
    _comparison_panel(axes["comparison"], comparison, model.transductive_proba_.size)
    _reliability_panel(axes["reliability"], comparison)
    _histogram_panel(axes["histogram"], model.transductive_proba_,
                     None if labels is None else np.asarray(labels, float))
    _loss_panel(axes["loss"], history)
    _weights_panel(axes["weights"], history, np.asarray(model.coef_), names)
    _rank_panel(axes["rank"], history)
    _monitor_panel(axes["monitors"], history)
    fig.canvas.draw()  # the layout places the axes; the verdicts' font is sized to their panel
    _verdict_panel(axes["verdicts"], verdicts_text(model))
    return fig


def plot_report(model, path, labels=None, *, comparison=None, overwrite=False):
    """Draw :func:`report_figure` to a PNG file (atomically); ``labels`` and ``comparison`` as there."""
    fig = report_figure(model, labels, comparison)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write(path, lambda file: file.write(buffer.getvalue()), overwrite=overwrite)


def markdown_report(model, picture=None, comparison=None):
    """Markdown text of the report (embedding ``picture``, a relative path, if given; with the comparison's table)."""
    _refuse_multiclass(model)
    lines = [
        "# cfe_fast fit report",
        "",
        f"- classifiers: {model.n_features_in_}, instances: {model.transductive_proba_.size}, "
        f"latent dimension: {model.latent_dim_}",
        f"- iterations: {model.n_iter_} ({'converged' if model.converged_ else 'not converged'}), "
        f"final objective: {model.history_['loss'][-1]:.6g}",
        f"- aggregator: {model.aggregator_}, intercept {model.intercept_:.4g}",
        "",
    ]
    if picture is not None:
        lines += [f"![fit report]({picture})", ""]
    if comparison is not None:
        lines += [f"## PR-AUC cross-validated on the labeled rows ({comparison.folds} folds, "
                  f"{comparison.n_instances} instances)", "", "| method | mean | sd over folds |", "|---|---|---|"]
        lines += [f"| {method} | {row.mean():.4f} | {row.std():.4f} |"
                  for method, row in zip(METHODS, comparison.scores)]
        lines += [""]
    lines += ["## Collapse verdicts", "", "```text", verdicts_text(model), "```", ""]
    names = _classifier_names(model)
    lines += ["## Aggregator weights", "", "| classifier | w |", "|---|---|"]
    lines += [f"| {name} | {w:.4g} |" for name, w in zip(names, np.asarray(model.coef_))]
    return "\n".join(lines) + "\n"


def multiclass_markdown(model):
    """Markdown text of the report of a model of more than two classes: each class's model in a line, the
    collapse verdicts of every class, and the aggregator weights per classifier and class."""
    classes = [str(name) for name in model.classes_.tolist()]
    members = model.estimators_
    names = _classifier_names(members[0])
    lines = [
        "# cfe_fast fit report",
        "",
        f"- {len(classes)} classes, one two-class model per class (its class against the rest; "
        "docs/guide/multiclass.md); the picture and the cross-validated comparison are drawn for two classes only",
        f"- classifiers: {members[0].n_features_in_}, latent dimension: {model.latent_dim_}",
        "",
        "| class | iterations | final objective | aggregator | intercept |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {member.n_iter_} ({'converged' if member.converged_ else 'not converged'}) | "
              f"{member.history_['loss'][-1]:.6g} | {member.aggregator_} | {member.intercept_:.4g} |"
              for name, member in zip(classes, members)]
    lines += ["", "## Collapse verdicts", "", "```text", verdicts_text(model), "```", ""]
    lines += ["## Aggregator weights", "", f"| classifier | {' | '.join(classes)} |", "|---|" + "---|" * len(classes)]
    weights = np.column_stack([np.asarray(member.coef_) for member in members])
    lines += [f"| {name} | {' | '.join(f'{w:.4g}' for w in row)} |" for name, row in zip(names, weights)]
    return "\n".join(lines) + "\n"


def write_report(model, folder, labels=None, *, P=None, overwrite=False, picture=True):
    """Write ``report.png`` (if ``picture``) and ``report.md`` into ``folder``; return their paths.

    With the fit's probabilities ``P`` (n_instances, n_classifiers) and
    ``labels`` (0/1, NaN where unlabeled), both hold the cross-validated
    comparison with the baselines
    (:func:`cfe_fast.comparison.cross_validated_comparison`: K refits). A
    model of more than two classes gets :func:`multiclass_markdown` and no
    picture, whatever ``picture`` says (the path returned for it is None).
    """
    folder = Path(folder)
    if hasattr(model, "estimators_"):
        text = multiclass_markdown(model)
        md = folder / "report.md"
        atomic_write(md, lambda file: file.write(text.encode("utf-8")), overwrite=overwrite)
        return None, md
    comparison = comparison_of(model, P, labels)
    png = folder / "report.png" if picture else None
    if png is not None:
        plot_report(model, png, labels, comparison=comparison, overwrite=overwrite)
    md = folder / "report.md"
    text = markdown_report(model, png.name if png is not None else None, comparison)
    atomic_write(md, lambda file: file.write(text.encode("utf-8")), overwrite=overwrite)
    return png, md
