"""Collapse monitors, warnings, remedies, and the collapse scenario of docs/method.md."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cfe_fast import CFEnsembleClassifier, CollapseWarning, make_ensemble
from cfe_fast import diagnostics


def _state(rng, n=400, m=8, d=3):
    X = rng.normal(size=(d, m))
    Y = rng.normal(size=(d, n))
    y_labeled = (rng.random(n // 2) < 0.2).astype(float)
    return X, Y, y_labeled


def _fired(X, Y, w, b, y_labeled, spread_of_R=0.2):
    logit_part = (X @ w) @ Y
    proba = 1 / (1 + np.exp(-(logit_part + b)))
    last = diagnostics.monitors(X, Y, w, b, proba, logit_part, y_labeled, spread_of_R)
    return {c.monitor for c in diagnostics.checks(last, X.shape[0], True, True) if c.collapsed}


def test_healthy_state_fires_nothing():
    rng = np.random.default_rng(0)
    X, Y, y = _state(rng)
    assert _fired(X, Y, np.full(8, 0.3), -0.5, y) == set()


@pytest.mark.parametrize(
    "change,expected",
    [
        (dict(w=np.full(8, 1e-4)), {"w_norm"}),
        (dict(w=np.full(8, -0.3)), {"w_sum"}),
        (dict(w=np.full(8, 0.002), b=-3.0), {"bias_share", "prediction_spread", "variance_ratio", "frac_positive"}),
        (dict(b=40.0), {"frac_positive"}),
    ],
)
def test_each_monitor_fires_on_a_constructed_collapse(change, expected):
    rng = np.random.default_rng(1)
    X, Y, y = _state(rng)
    args = dict(w=np.full(8, 0.3), b=-0.5) | change
    assert expected <= _fired(X, Y, args["w"], args["b"], y)


def test_representational_collapse_fires_on_rank_one_factors():
    rng = np.random.default_rng(2)
    X, Y, y = _state(rng)
    Y = np.outer(rng.normal(size=3), rng.normal(size=Y.shape[1]))
    assert "effective_rank_Y" in _fired(X, Y, np.full(8, 0.3), -0.5, y)
    assert diagnostics.effective_rank(Y) == pytest.approx(1.0)
    assert diagnostics.effective_rank(np.eye(4)) == pytest.approx(4.0)


def _fit(data, **params):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = CFEnsembleClassifier(latent_dim=5, random_state=0, **params).fit(data.P, data.labels)
    return model, [w for w in caught if issubclass(w.category, CollapseWarning)]


def _held_out_pr_auc(data, proba):
    unlabeled = np.isnan(data.labels)
    return average_precision_score(data.y_true[unlabeled], proba[unlabeled])


def test_seed_procedure_without_class_weights_collapses_and_is_detected():
    """Seed 001: ALS + one gradient step (lr 0.01) per iteration, no class weights -> collapse."""
    data = make_ensemble(n_classifiers=10, n_instances=500, random_state=0)
    # the original implementation's procedure and confidence, without the pull toward equal weights
    original = dict(aggregator_solver="gd", aggregator_lr=0.01, max_iter=200, confidence="label_aware",
                    aggregator_prior=0.0)
    collapsed, caught = _fit(data, class_weight=None, **original)
    assert caught, "the collapse was not detected"
    assert collapsed.diagnose().collapsed
    assert "COLLAPSE DETECTED" in str(collapsed.diagnose())
    assert _held_out_pr_auc(data, collapsed.transductive_proba_) < 0.3
    healthy, caught = _fit(data, class_weight="balanced", **original)
    assert not caught
    assert _held_out_pr_auc(data, healthy.transductive_proba_) >= _held_out_pr_auc(data, data.R.mean(axis=0))


@pytest.mark.parametrize("trainer", ["als", "exact", "joint"])
def test_healthy_fits_raise_no_collapse_warning(trainer):
    data = make_ensemble(n_classifiers=10, n_instances=500, random_state=1)
    model, caught = _fit(data, trainer=trainer, max_iter=20)
    assert not caught, [str(w.message) for w in caught]
    report = model.diagnose()
    assert not report.collapsed and "healthy" in str(report)
    assert report.to_dict()["checks"] and len(model.history_["w_norm"]) == model.n_iter_
    assert set(diagnostics.MONITORS) <= set(model.history_)


@pytest.mark.parametrize("trainer", ["als", "exact", "joint"])
def test_class_weighted_trainers_beat_the_mean_on_the_seed_scenario(trainer):
    seeds = range(3)
    ours, mean = [], []
    for seed in seeds:
        data = make_ensemble(n_classifiers=10, n_instances=500, random_state=seed)
        model, _ = _fit(data, trainer=trainer)
        ours.append(_held_out_pr_auc(data, model.transductive_proba_))
        mean.append(_held_out_pr_auc(data, data.R.mean(axis=0)))
    assert np.mean(ours) >= np.mean(mean)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["als", "exact", "joint"])
def test_class_weighted_trainers_beat_the_mean_on_ten_seeds(trainer):
    ours, mean = [], []
    for seed in range(10):
        data = make_ensemble(n_classifiers=10, n_instances=500, random_state=seed)
        model, _ = _fit(data, trainer=trainer)
        ours.append(_held_out_pr_auc(data, model.transductive_proba_))
        mean.append(_held_out_pr_auc(data, data.R.mean(axis=0)))
    assert np.mean(ours) >= np.mean(mean)
    assert np.sum(np.array(ours) >= np.array(mean)) >= 6


def test_rho_changes_the_exact_and_joint_fits():
    """In the original, rho did nothing (the reconstruction term was a sum, the supervised one a mean)."""
    data = make_ensemble(n_classifiers=8, n_instances=300, random_state=2)
    for trainer in ("exact", "joint"):
        a = CFEnsembleClassifier(trainer=trainer, rho=0.3, latent_dim=3, max_iter=5, random_state=0).fit(data.P, data.labels)
        b = CFEnsembleClassifier(trainer=trainer, rho=0.9, latent_dim=3, max_iter=5, random_state=0).fit(data.P, data.labels)
        assert np.abs(a.transductive_proba_ - b.transductive_proba_).max() > 1e-3


def test_reinit_remedy_resets_a_collapsed_aggregator():
    data = make_ensemble(n_classifiers=10, n_instances=500, random_state=0)
    model, caught = _fit(data, class_weight=None, aggregator_solver="gd", aggregator_lr=0.01, max_iter=200,
                         reinit_collapsed_aggregator=True)
    assert any("re-initialising" in str(w.message) for w in caught)


def test_remedy_parameters_run():
    data = make_ensemble(n_classifiers=10, n_instances=300, random_state=0)
    frozen, _ = _fit(data, freeze_aggregator_iters=3, max_iter=3)
    np.testing.assert_allclose(frozen.coef_, 0.1)  # w stays at 1/m while frozen
    adam, _ = _fit(data, aggregator_solver="adam", aggregator_lr=0.05, aggregator_steps=5, max_iter=10)
    assert np.all(np.isfinite(adam.coef_)) and adam.history_["aggregator_steps"][-1] == 5
    clipped, _ = _fit(data, trainer="joint", clip_norm=1e-3, lr_schedule="constant", max_iter=3)
    assert np.all(np.isfinite(clipped.transductive_proba_))
