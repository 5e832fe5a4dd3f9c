"""Example data and the demo command."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cfe_fast import make_ensemble
from cfe_fast.cli import main


def test_make_ensemble_shapes_and_reproducibility():
    a = make_ensemble(n_classifiers=7, n_instances=300, labeled_fraction=0.4, random_state=5)
    b = make_ensemble(n_classifiers=7, n_instances=300, labeled_fraction=0.4, random_state=5)
    assert a.R.shape == (7, 300) and a.P.shape == (300, 7)
    np.testing.assert_array_equal(a.R, b.R)
    np.testing.assert_array_equal(a.labels, b.labels, strict=False)
    assert np.all((a.R >= 0) & (a.R <= 1))
    labeled = ~np.isnan(a.labels)
    assert abs(labeled.mean() - 0.4) < 0.02
    np.testing.assert_array_equal(a.labels[labeled], a.y_true[labeled])
    assert set(np.unique(a.labels[labeled])) == {0.0, 1.0}


def test_mean_of_R_is_not_already_perfect():
    """The original generator scored PR-AUC 1.0 with the plain mean: comparisons were meaningless."""
    scores, singles = [], []
    for seed in range(5):
        data = make_ensemble(n_classifiers=10, n_instances=3000, random_state=seed)
        scores.append(average_precision_score(data.y_true, data.R.mean(axis=0)))
        singles.append(np.mean([average_precision_score(data.y_true, r) for r in data.R]))
    assert max(scores) < 0.95
    assert abs(np.mean(singles) - 0.7) < 0.05  # base quality as asked
    assert min(scores) > np.mean(singles)  # the ensemble still helps


@pytest.mark.parametrize("positive_rate", [0.02, 0.1, 0.5])
def test_shifted_average_precision_matches_sklearn(positive_rate):
    """The generator's sort-once PR-AUC against sklearn's average_precision_score (the oracle)."""
    from cfe_fast.datasets import _shifted_average_precision

    rng = np.random.default_rng(3)
    y = rng.random(5000) < positive_rate
    noise = rng.standard_normal(y.size)
    pos_desc, neg_sorted = np.sort(noise[y])[::-1], np.sort(noise[~y])
    for shift in (0.0, 1e-3, 0.37, 1.5, 4.0, 8.0):
        expected = average_precision_score(y, shift * (2 * y - 1) + noise)
        assert _shifted_average_precision(pos_desc, neg_sorted, shift) == pytest.approx(expected, rel=1e-12, abs=0)


def test_make_ensemble_rejects_bad_knobs():
    with pytest.raises(ValueError, match="positive_rate"):
        make_ensemble(positive_rate=1.5)
    with pytest.raises(ValueError, match="quality"):
        make_ensemble(quality=0.05, positive_rate=0.1)
    with pytest.raises(ValueError, match="correlation"):
        make_ensemble(group_correlation=0.8, common_correlation=0.5)


def test_demo_runs(capsys):
    assert main(["demo", "--instances", "600"]) == 0
    out = capsys.readouterr().out
    assert "CF-Ensemble" in out and "mean of R" in out and "best single" in out and "fit:" in out


def test_demo_bad_argument_is_one_line_error(capsys):
    assert main(["demo", "--positive-rate", "2"]) == 2
    assert capsys.readouterr().err.startswith("cfe-fast: error: positive_rate")
