"""The aggregator's prior (toward equal weights or toward zero) and its cross-validated choice, against
independent computations (SciPy's optimiser on the reference loss; the reference objective)."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold

from cfe_fast import CFEnsembleClassifier, diagnostics, make_ensemble
from cfe_fast import reference as ref
from cfe_fast.training.aggregator import PRIOR_GRID, choose_prior, cross_validate
from test_trainers import make_problem


def _reference_fit(X, Y, y, omega, l2, shrinkage, center="equal"):
    """(w, b) minimising the reference supervised loss plus the penalty, by BFGS."""
    m = X.shape[0 if X.ndim == 1 else 1]

    def f(theta):
        w, b = theta[:-1], theta[-1]
        terms = ref.aggregator_terms(X, Y, y, omega, w, b)
        centred = w - w.mean() if center == "equal" else w
        value = terms.loss + 0.5 * l2 * w @ w + 0.5 * shrinkage * centred @ centred
        grad_w = terms.grad_w + l2 * w + shrinkage * centred
        return value, np.append(grad_w, terms.grad_b)

    result = minimize(f, np.append(np.full(m, 1.0 / m), 0.0), jac=True, method="BFGS", options={"gtol": 1e-10})
    return result.x[:-1], result.x[-1]


def test_cross_validated_losses_match_an_independent_computation():
    p, s = make_problem(5, 300, 3, seed=4, labeled_fraction=0.4)
    grid = (("equal", 0.0), ("equal", 10.0), ("equal", 100.0), ("zero", 3.0), ("zero", 100.0))
    validation = cross_validate(p, s, grid=grid, folds=3)
    prior, losses = validation.prior, validation.losses
    Y_labeled = s.Y[:, p.labeled]
    y, omega = p.y_labeled, p.omega
    expected, logits = np.zeros(len(grid)), np.zeros((len(grid), y.size))
    for train, test in StratifiedKFold(3, shuffle=True, random_state=0).split(np.zeros(y.size), y):
        for k, (center, tau) in enumerate(grid):
            w, b = _reference_fit(s.X, Y_labeled[:, train], y[train], omega[train], 1e-3, tau / omega[train].sum(),
                                  center)
            z = logits[k, test] = w @ (s.X.T @ Y_labeled[:, test]) + b
            expected[k] += omega[test] @ (np.logaddexp(0, z) - y[test] * z)  # cross-entropy of held-out labels
    np.testing.assert_allclose(losses, expected / omega.sum(), rtol=1e-6)
    np.testing.assert_allclose(validation.logits, logits, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(validation.held_out_logits, validation.logits[grid.index(prior)])


def _held_out_losses(means, noise, n=400, seed=0):
    """Per-instance held-out losses: a shared term, the row's mean, and +-``noise`` of mean exactly zero per row."""
    rng = np.random.default_rng(seed)
    shared = rng.exponential(1.0, n)
    signs = lambda: rng.permutation(np.repeat([-1.0, 1.0], n // 2))  # noqa: E731
    return np.array([shared + mean + scale * signs() for mean, scale in zip(means, noise)])


@pytest.mark.parametrize("means,noise,expected", [
    # an "equal" prior clearly better than every "zero" one: chosen; so is the "zero" in the mirror case
    ([0.30, 0.30, 0.40, 0.50, 0.60], [0.05] * 5, ("equal", 10.0)),
    ([0.50, 0.50, 0.50, 0.20, 0.30], [0.05] * 5, ("zero", 3.0)),
    # within a centre: the strongest prior whose excess is within one standard error of the best
    ([0.50, 0.50, 0.50, 0.30, 0.30], [0.05] * 5, ("zero", 100.0)),
    # a smaller gain of "equal" within the noise of the comparison (standard error ~0.07): "zero" is kept
    ([0.49, 0.48, 0.49, 0.50, 0.50], [1.0, 1.0, 1.0, 0.0, 0.0], ("zero", 100.0)),
])
def test_the_choice_of_prior(means, noise, expected):
    grid = (("equal", 0.0), ("equal", 10.0), ("equal", 100.0), ("zero", 3.0), ("zero", 100.0))
    held_out = _held_out_losses(means, noise)
    share = np.full(held_out.shape[1], 1.0 / held_out.shape[1])
    assert choose_prior(grid, held_out, share) == expected


def test_no_cross_validation_without_two_labeled_instances_per_class():
    p, s = make_problem(5, 60, 2, seed=1, labeled_fraction=0.0)  # the first two instances only: one per class
    validation = cross_validate(p, s)
    assert validation.prior is None and np.isnan(validation.losses).all()


def test_a_strong_prior_gives_nearly_equal_weights():
    data = make_ensemble(n_classifiers=8, n_instances=800, labeled_fraction=0.2, random_state=6)
    free = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0, aggregator_prior=0.0).fit(data.P, data.labels)
    pulled = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0, aggregator_prior=1e6).fit(data.P,
                                                                                                     data.labels)
    spread = lambda w: np.std(w) / abs(np.mean(w))  # noqa: E731
    assert spread(pulled.coef_) < 1e-3 < spread(free.coef_)


def test_auto_records_the_chosen_prior_and_the_final_aggregator_in_the_history():
    data = make_ensemble(n_classifiers=8, n_instances=800, labeled_fraction=0.2, random_state=6)
    model = CFEnsembleClassifier(latent_dim=3, max_iter=6, random_state=0, aggregator_prior="auto",
                                 confidence="label_aware", backend="numpy").fit(data.P, data.labels)
    assert (model.aggregator_prior_center_, model.aggregator_prior_) in PRIOR_GRID
    labeled = ~np.isnan(data.labels)
    omega = ref.class_weights(data.labels[labeled])
    R = data.P.T
    C = ref.confidence(R, data.labels, "label_aware")
    X, Y = model.classifier_factors_, model.instance_factors_
    strength = model.aggregator_prior_ / omega.sum()
    pull = strength if model.aggregator_prior_center_ == "equal" else 0.0  # a "zero" centre adds to the ridge
    expected = ref.objective(X, Y, R, C, 0.1, data.labels, model.coef_, model.history_["intercept"][-1], 0.9,
                             l2=1e-3 + strength - pull, shrinkage=pull)
    assert model.history_["loss"][-1] == pytest.approx(expected[0], rel=1e-10)
    np.testing.assert_array_equal(model.history_["coef"][-1], model.coef_)


def test_many_labels_are_cross_validated_on_a_stratified_sample(monkeypatch):
    from cfe_fast import config

    p, s = make_problem(5, 400, 3, seed=8, labeled_fraction=0.9)
    grid = (("equal", 0.0), ("equal", 30.0))
    full_losses = cross_validate(p, s, grid=grid).losses
    monkeypatch.setattr(config, "PRIOR_CV_INSTANCES", 60)
    validation = cross_validate(p, s, grid=grid)
    prior, losses = validation.prior, validation.losses
    assert validation.positions.size == 60 and set(validation.y) == {0.0, 1.0}
    assert prior in grid and np.isfinite(losses).all()
    assert not np.allclose(losses, full_losses)  # fewer instances, other folds: other numbers


def test_fit_compares_the_ensemble_with_the_mean_out_of_fold_and_warns_when_worse():
    from sklearn.metrics import average_precision_score

    data = make_ensemble(n_classifiers=8, n_instances=800, labeled_fraction=0.3, random_state=4)
    model = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0).fit(data.P, data.labels)
    labeled = ~np.isnan(data.labels)
    assert model.held_out_average_precision_of_mean_ == pytest.approx(
        average_precision_score(data.labels[labeled], data.P[labeled].mean(axis=1)), rel=1e-12)
    assert model.held_out_positive_rate_ == pytest.approx(np.mean(data.labels[labeled]))
    names = [check.name for check in model.diagnose().checks if check.category == "quality"]
    assert names == ["worse than the mean of the classifiers (held out)", "no better than chance (held out)"]
    def fired(ap, mean, chance, share):
        scores = {"average_precision": ap, "mean_of_R": mean, "chance": chance, "mean_of_R_better": share}
        return [check.collapsed for check in diagnostics.held_out_checks(scores)]

    assert fired(0.5, 0.52, 0.3, 0.97) == [True, False]
    assert fired(0.5, 0.52, 0.3, 0.80) == [False, False]  # within the noise of the held-out instances
    assert fired(0.5, 0.505, 0.3, 1.0) == [False, False]  # within the margin
    assert fired(0.3, 0.3, 0.3, 0.5) == [False, True]
    assert 0.0 <= model.held_out_mean_better_share_ <= 1.0


def test_average_precision_under_weights_matches_scikit_learn_per_resample():
    from sklearn.metrics import average_precision_score

    from cfe_fast.training.loop import average_precision

    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(np.float64)
    scores = np.round(rng.random(300) + 0.5 * y, 2)  # ties within and across the classes
    weights = np.vstack([np.ones(300), rng.integers(0, 4, (5, 300))]).astype(np.float64)
    expected = [average_precision_score(y, scores, sample_weight=row) for row in weights]
    np.testing.assert_allclose(average_precision(y, scores, weights), expected, rtol=1e-12)
    rows = rng.integers(0, 300, 300)
    resample = average_precision(y, scores, np.bincount(rows, minlength=300)[None].astype(np.float64))
    assert resample[0] == pytest.approx(average_precision_score(y[rows], scores[rows]), rel=1e-12)


def test_a_failed_held_out_check_warns(monkeypatch):
    from cfe_fast import QualityWarning
    from cfe_fast.training import loop

    data = make_ensemble(n_classifiers=8, n_instances=400, labeled_fraction=0.3, random_state=4)
    worse = {"average_precision": 0.2, "mean_of_R": 0.6, "chance": 0.1, "mean_of_R_better": 1.0}
    monkeypatch.setattr(loop, "_held_out_check", lambda problem, validation: worse)
    with pytest.warns(QualityWarning, match="worse than the mean of the classifiers"):
        model = CFEnsembleClassifier(latent_dim=3, max_iter=3, random_state=0).fit(data.P, data.labels)
    assert model.diagnose().collapsed


def test_the_scale_refit_keeps_the_direction_and_zeroes_the_unpenalised_gradient_along_it():
    from cfe_fast.core.losses import AggregatorPenalty
    from cfe_fast.training.aggregator import fit as fit_aggregator
    from cfe_fast.training.aggregator import fit_scale

    p, s = make_problem(6, 300, 3, seed=5, labeled_fraction=0.5)
    p.settings = replace(p.settings, penalty=AggregatorPenalty(l2=1e-3, prior=300.0, weight_total=p.omega.sum(),
                                                               center="zero"))
    fit_aggregator(p, s)
    shrunk = s.w.copy()
    fit_scale(p, s)
    scale = s.w @ shrunk / (shrunk @ shrunk)
    np.testing.assert_allclose(s.w, scale * shrunk, rtol=1e-12)
    assert scale > 1.5  # the strong ridge had shrunk the logits
    terms = ref.aggregator_terms(s.X, s.Y[:, p.labeled], p.y_labeled, p.omega, s.w, s.b)
    assert abs((terms.grad_w + 1e-3 * s.w) @ shrunk) < 1e-8 and abs(terms.grad_b) < 1e-8


def test_fewer_labeled_instances_of_a_class_than_folds_take_the_strongest_prior_toward_equal_weights():
    p, s = make_problem(5, 300, 3, seed=4, labeled_fraction=0.4)
    n_pos = int(min(p.y_labeled.sum(), p.y_labeled.size - p.y_labeled.sum()))  # the smaller class
    validation = cross_validate(p, s, folds=n_pos + 1)
    strongest_equal = max((prior for prior in PRIOR_GRID if prior[0] == "equal"), key=lambda prior: prior[1])
    assert validation.grid == (strongest_equal,) and validation.prior == strongest_equal
    assert validation.held_out_logits.shape == validation.y.shape  # the held-out check still has its logits
    assert {center for center, _ in cross_validate(p, s, folds=n_pos).grid} == {"equal", "zero"}
    only_zero = (("zero", 10.0), ("zero", 100.0))
    assert cross_validate(p, s, grid=only_zero, folds=n_pos + 1).grid == (("zero", 100.0),)  # a centre asked for is kept
