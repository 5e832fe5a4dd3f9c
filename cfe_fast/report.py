"""Fit reports: one PNG with six panels and a Markdown page embedding it.

Panels: objective terms per iteration; aggregator weight per classifier per
iteration; histograms of the fitted predictions by class on the labeled
instances; latent effective rank of X and Y; the collapse monitors (||w||,
std of p, fraction predicted positive); the collapse verdicts of
``model.diagnose()``. A history key that the fit did not record leaves its
panel with a note instead of a plot. matplotlib (the ``plot`` extra) is
imported only here, when a picture is drawn.
"""

import io
from pathlib import Path

import numpy as np

from .io.atomic import atomic_write

#: Classifiers drawn in colour in the weights panel (the largest final |w|); the rest in grey.
HIGHLIGHTED = 8


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


def _not_recorded(ax, title, what):
    ax.set_title(title)
    ax.text(0.5, 0.5, f"{what}\nnot recorded by this fit", ha="center", va="center", transform=ax.transAxes)
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
    ax.legend(fontsize="small")


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
    ax.set_title(title if W.shape[1] <= HIGHLIGHTED else f"{title}\n(top {HIGHLIGHTED} by |w| in colour)")
    ax.set_xlabel("iteration")
    ax.legend(fontsize="x-small", ncol=2)


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
    ax.legend(fontsize="small")


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
    ax.legend(fontsize="small")


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
    ax.legend(lines, [line.get_label() for line in lines], fontsize="small")


def _verdict_panel(ax, text):
    ax.set_title("collapse verdicts")
    ax.axis("off")
    ax.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=8, wrap=True, transform=ax.transAxes)


def report_figure(model, labels=None):
    """The six-panel matplotlib figure of a fitted model (see the module docstring).

    Parameters
    ----------
    model : fitted CFEnsembleClassifier
    labels : array (n_instances,) or None
        The labels the model was fitted with (NaN = unlabeled), for the
        histograms by class.
    """
    plt = _pyplot()
    history = model.history_
    names = _classifier_names(model)
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(
        f"cfe_fast fit: {model.n_features_in_} classifiers, {model.transductive_proba_.size} instances, "
        f"d={model.latent_dim_}, {model.n_iter_} iterations ({'converged' if model.converged_ else 'not converged'})"
    )
    _loss_panel(axes[0, 0], history)
    _weights_panel(axes[0, 1], history, np.asarray(model.coef_), names)
    _histogram_panel(axes[0, 2], model.transductive_proba_, None if labels is None else np.asarray(labels, float))
    _rank_panel(axes[1, 0], history)
    _monitor_panel(axes[1, 1], history)
    _verdict_panel(axes[1, 2], verdicts_text(model))
    fig.tight_layout()
    return fig


def plot_report(model, path, labels=None, *, overwrite=False):
    """Draw :func:`report_figure` to a PNG file (atomically); ``labels`` as there."""
    fig = report_figure(model, labels)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write(path, lambda file: file.write(buffer.getvalue()), overwrite=overwrite)


def markdown_report(model, picture=None):
    """Markdown text of the report (embedding ``picture``, a relative path, if given)."""
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
    lines += ["## Collapse verdicts", "", "```text", verdicts_text(model), "```", ""]
    names = _classifier_names(model)
    lines += ["## Aggregator weights", "", "| classifier | w |", "|---|---|"]
    lines += [f"| {name} | {w:.4g} |" for name, w in zip(names, np.asarray(model.coef_))]
    return "\n".join(lines) + "\n"


def write_report(model, folder, labels=None, *, overwrite=False, picture=True):
    """Write ``report.png`` (if ``picture``) and ``report.md`` into ``folder``; return their paths."""
    folder = Path(folder)
    png = folder / "report.png" if picture else None
    if png is not None:
        plot_report(model, png, labels, overwrite=overwrite)
    md = folder / "report.md"
    text = markdown_report(model, png.name if png is not None else None)
    atomic_write(md, lambda file: file.write(text.encode("utf-8")), overwrite=overwrite)
    return png, md
