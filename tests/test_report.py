"""The fit report: PNG panels, the cross-validated comparison and the Markdown page."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast.comparison import METHODS, cross_validated_comparison

plt = pytest.importorskip("matplotlib.pyplot")
from cfe_fast.report import comparison_of, report_figure, write_report  # noqa: E402

PANELS = ["PR-AUC, cross-validated on the labeled rows", "reliability (out-of-fold, labeled rows)",
          "fitted P(y=1) by class", "objective terms", "aggregator weight per classifier", "latent effective rank",
          "collapse monitors", "collapse verdicts"]


@pytest.fixture(scope="module")
def fitted():
    data = make_ensemble(n_classifiers=12, n_instances=300, random_state=0)
    model = CFEnsembleClassifier(latent_dim=3, max_iter=8, tol=0, random_state=0).fit(data.P, data.labels)
    return model, data, comparison_of(model, data.P, data.labels)


def _panel(fig, title):
    return next(ax for ax in fig.axes if ax.get_title().startswith(title))


def test_report_files_and_panels(tmp_path, fitted):
    model, data, _ = fitted
    png, md = write_report(model, tmp_path, data.labels, P=data.P)
    image = plt.imread(png)
    assert image.shape[0] >= 800 and image.shape[1] >= 1500 and image[..., :3].std() > 0.05  # not blank
    text = md.read_text()
    assert "![fit report](report.png)" in text and "## Collapse verdicts" in text
    assert sum(line.startswith("| classifier ") for line in text.splitlines()) == 1 + 12  # header + rows
    assert all(f"| {method} |" in text for method in METHODS)  # the comparison's table
    with pytest.raises(FileExistsError):
        write_report(model, tmp_path, data.labels, P=data.P)


def test_no_text_is_clipped_and_no_legend_covers_its_panel(fitted):
    model, data, comparison = fitted
    fig = report_figure(model, data.labels, comparison)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(PANELS) and all(t.startswith(p) for t, p in zip(titles, PANELS))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox.padded(1)
    # every panel with all it draws (tick labels, title, legend, the verdicts' text) lies on the page
    drawn = {ax.get_title() or "twin axes": ax.get_tightbbox(renderer) for ax in fig.axes}
    drawn["title"] = fig._suptitle.get_window_extent(renderer)
    outside = [name for name, box in drawn.items()
               if not (page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1)]
    assert outside == []
    legends = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 6  # every panel with lines of several kinds
    assert [ax.get_title() for ax in legends if ax.get_legend().get_window_extent(renderer).overlaps(
        ax.get_window_extent(renderer))] == []
    plt.close(fig)


def test_the_comparison_scores_refits_and_baselines_out_of_fold(fitted):
    model, data, comparison = fitted
    labeled = np.flatnonzero(~np.isnan(data.labels))
    y = data.labels[labeled].astype(int)
    assert comparison.scores.shape == (len(METHODS), 5) and np.array_equal(comparison.y, y)
    np.testing.assert_allclose(comparison.proba[METHODS.index("mean of R")], data.P[labeled].mean(axis=1))
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(y.size), y))
    best = comparison.proba[METHODS.index("best single classifier")]
    for k, (_, test) in enumerate(folds):  # each fold: one classifier's own probabilities, scored there
        assert any(np.array_equal(best[test], data.P[labeled[test], u]) for u in range(data.P.shape[1]))
        for j in range(len(METHODS)):
            assert comparison.scores[j, k] == average_precision_score(y[test], comparison.proba[j, test])
    _, test = folds[0]  # the ensemble: a refit that does not see the fold's labels
    hidden = data.labels.copy()
    hidden[labeled[test]] = np.nan
    refit = CFEnsembleClassifier(**model.get_params()).fit(data.P, hidden)
    np.testing.assert_array_equal(comparison.proba[0, test], refit.transductive_proba_[labeled[test]])
    assert not np.array_equal(comparison.proba[0, test], model.transductive_proba_[labeled[test]])
    fig = report_figure(model, data.labels, comparison)
    ticks = [t.get_text() for t in _panel(fig, PANELS[0]).get_yticklabels()]
    assert any(f"{comparison.scores[0].mean():.3f}" in t and "CF-Ensemble" in t for t in ticks)
    plt.close(fig)


def test_without_probabilities_the_comparison_panels_say_why(fitted):
    model, data, _ = fitted
    assert comparison_of(model, None, data.labels) is None
    fig = report_figure(model, data.labels)
    assert any("needs the fit's probabilities" in t.get_text() for t in _panel(fig, PANELS[0]).texts)
    plt.close(fig)
    one_class = np.where(np.isnan(data.labels), np.nan, 1.0)
    assert cross_validated_comparison(model, data.P, one_class) is None


def test_recorded_monitors_are_drawn_and_missing_ones_noted(fitted):
    model, data, _ = fitted
    fig = report_figure(model, data.labels)  # a real fit records every monitor
    assert len(_panel(fig, PANELS[4]).lines) == model.n_features_in_ + 1  # one line per classifier and the zero line
    rank = _panel(fig, PANELS[5])
    assert {line.get_label() for line in rank.lines} == {"X", "Y"}
    assert not rank.texts
    plt.close(fig)
    history = model.history_
    model.history_ = {key: history[key] for key in ("loss", "reconstruction", "supervised", "time")}
    try:
        missing = report_figure(model, data.labels)
    finally:
        model.history_ = history
    assert any("not recorded" in t.get_text() for t in _panel(missing, PANELS[5]).texts)
    plt.close(missing)
