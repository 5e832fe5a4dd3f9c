"""The fit report: PNG panels and the Markdown page."""

import pytest

from cfe_fast import CFEnsembleClassifier, make_ensemble

plt = pytest.importorskip("matplotlib.pyplot")
from cfe_fast.report import report_figure, write_report  # noqa: E402

PANELS = ["objective terms", "aggregator weight per classifier", "fitted P(y=1) by class",
          "latent effective rank", "collapse monitors", "collapse verdicts"]


@pytest.fixture(scope="module")
def fitted():
    data = make_ensemble(n_classifiers=12, n_instances=300, random_state=0)
    return CFEnsembleClassifier(latent_dim=3, max_iter=8, tol=0, random_state=0).fit(data.P, data.labels), data


def _titles(fig):
    return [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_title()]


def test_report_files_and_panels(tmp_path, fitted):
    model, data = fitted
    png, md = write_report(model, tmp_path, data.labels)
    image = plt.imread(png)
    assert image.shape[0] >= 800 and image.shape[1] >= 1500 and image[..., :3].std() > 0.05  # not blank
    text = md.read_text()
    assert "![fit report](report.png)" in text and "## Collapse verdicts" in text
    assert sum(line.startswith("| classifier ") for line in text.splitlines()) == 1 + 12  # header + rows
    fig = report_figure(model, data.labels)
    assert _titles(fig) == PANELS
    hist = fig.axes[2]
    assert {t.get_text() for t in hist.get_legend().get_texts()} == {"labeled y=0", "labeled y=1"}
    plt.close(fig)
    with pytest.raises(FileExistsError):
        write_report(model, tmp_path, data.labels)


def test_recorded_monitors_are_drawn_and_missing_ones_noted(fitted):
    model, data = fitted
    fig = report_figure(model, data.labels)  # a real fit records every monitor
    assert len(fig.axes[1].lines) == model.n_features_in_ + 1  # one line per classifier and the zero line
    assert {line.get_label() for line in fig.axes[3].lines} == {"X", "Y"}
    assert not fig.axes[3].texts
    plt.close(fig)
    history = model.history_
    model.history_ = {key: history[key] for key in ("loss", "reconstruction", "supervised", "time")}
    try:
        missing = report_figure(model, data.labels)
    finally:
        model.history_ = history
    assert any("not recorded" in t.get_text() for t in missing.axes[3].texts)
    plt.close(missing)
