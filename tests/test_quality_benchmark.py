"""The real-data quality benchmark (benchmarks/quality) on a small task.

Runs the quick profile's logic on scikit-learn's bundled breast-cancer data
with the 6-model pool built on the fly, and checks the structure and basic
sanity of the results; no expected numbers are hard-coded.
"""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from benchmarks.quality import baselines, pools, run, tasks
from benchmarks.quality.methods import parse_spec, resolve

METHODS = ["mean", "best_single", "lr_stacking", "greedy", "cfe:backend=numpy,max_iter=20"]
FRACTION = 0.05


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    cache = tmp_path_factory.mktemp("pool_cache")
    rows, info = run.run(["breast_cancer"], [FRACTION], 1, METHODS, pool="small",
                         cache_dir=cache, log=None)
    return rows, info, cache


def test_rows_structure_and_ranges(evaluated):
    rows, info, _ = evaluated
    assert [r["method"] for r in rows] == METHODS
    assert info[0]["name"] == "breast_cancer" and not info[0]["cached"]
    assert info[0]["names"] == list(pools.make_pool("small"))
    for r in rows:
        for key in ("pr_auc", "roc_auc", "brier"):
            assert 0.0 <= r[key] <= 1.0, (r["method"], key, r[key])
        assert r["fit_s"] >= 0
        assert r["n_labeled_pos"] >= 2 and r["n_labeled"] - r["n_labeled_pos"] >= 2
        json.loads(r["info"])
    # the combiners are not worse than chance on this easy task
    assert all(r["roc_auc"] > 0.6 for r in rows)


def test_baseline_choices(evaluated):
    rows, info, _ = evaluated
    by = {r["method"]: json.loads(r["info"]) for r in rows}
    assert by["best_single"]["chosen"] in info[0]["names"]
    weights = by["greedy"]["weights"]
    assert set(weights) <= set(info[0]["names"])
    assert all(w > 0 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0)


def test_mean_baseline_matches_sklearn(evaluated):
    rows, _, cache = evaluated
    data = pools.load_or_build(tasks.load_task("breast_cancer"), kind="small",
                               cache_dir=cache, verbose=False)
    assert data["cached"]
    P, y = data["P"], data["y"]
    assert P.shape == (len(y), len(data["names"])) and P.min() >= 0 and P.max() <= 1
    labeled = run.draw_labeled(y, FRACTION, seed=0)
    expected = average_precision_score(y[~labeled], P[~labeled].mean(axis=1))
    got = next(r["pr_auc"] for r in rows if r["method"] == "mean")
    assert got == pytest.approx(expected, abs=1e-12)


def test_best_single_is_the_best_on_labeled_rows():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(int)
    P = np.clip(rng.random((200, 4)) * 0.6 + 0.4 * y[:, None] * np.array([0.1, 0.9, 0.3, 0.0]), 0, 1)
    pred = baselines.best_single(P[:100], y[:100], P[100:], names=list("abcd"))
    assert pred.info["chosen"] == "b"
    w, traj = baselines.greedy_weights(P[:100], y[:100], rounds=10)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert max(traj) >= average_precision_score(y[:100], P[:100, 1]) - 1e-12


def test_draw_labeled_keeps_two_per_class():
    y = np.r_[np.zeros(300, int), np.ones(7, int)]
    for seed in range(3):
        lab = run.draw_labeled(y, 0.01, seed)
        assert lab[y == 1].sum() >= 2 and lab[y == 0].sum() >= 2
        assert (~lab[y == 1]).sum() >= 1
    assert (run.draw_labeled(y, 0.5, 1) == run.draw_labeled(y, 0.5, 1)).all()


def test_spec_parsing():
    name, params = parse_spec("cfe:latent_dim=5,rho=0.5,trainer=exact,clip_norm=None,verbose=false")
    assert name == "cfe"
    assert params == {"latent_dim": 5, "rho": 0.5, "trainer": "exact", "clip_norm": None,
                      "verbose": False}
    assert isinstance(params["latent_dim"], int) and isinstance(params["rho"], float)
    assert resolve("greedy:rounds=10").params == {"rounds": 10}
    with pytest.raises(ValueError):
        resolve("no_such_method")


def test_reports_written(evaluated, tmp_path):
    pytest.importorskip("matplotlib")
    rows, info, _ = evaluated
    out = tmp_path / "quality_test.md"
    run.write_csv(rows, out.with_suffix(".csv"))
    run.plot(run.cell_table(rows), ["breast_cancer"], [FRACTION], METHODS, out.with_suffix(".png"))
    run.plot_reliability(rows, [FRACTION], METHODS, run.reliability_path(out))
    heads = run.write_markdown(out, rows, info, [FRACTION], [0], METHODS, "small", "test", 1.0)
    assert set(heads) == {METHODS[-1]} and heads[METHODS[-1]]["n_cells"] == 1
    text = out.read_text()
    assert "## Headline" in text and "breast_cancer" in text and "core" in text
    with open(out.with_suffix(".csv")) as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "## Calibration" in text and run.reliability_path(out).name in text
    assert run.reliability_path(out).stat().st_size > 1000


def test_reliability_sums_and_calibration_error_against_a_direct_computation():
    rng = np.random.default_rng(3)
    score = rng.uniform(size=500)
    y = (rng.uniform(size=500) < score ** 2).astype(float)
    sums = run.reliability_sums(y, score)
    bins = np.minimum(np.floor(score * 10), 9)
    gaps = [abs(score[bins == k].mean() - y[bins == k].mean()) * np.mean(bins == k)
            for k in range(10) if np.any(bins == k)]
    assert sums[0].sum() == 500 and sums[2].sum() == y.sum()
    assert run.expected_calibration_error(sums) == pytest.approx(sum(gaps), rel=1e-12)
    assert run.expected_calibration_error(run.reliability_sums(y, y)) == 0.0  # labels as predictions

