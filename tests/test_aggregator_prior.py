"""The aggregator's prior (toward equal weights, the classifiers' consensus or zero) and its cross-validated
choice, against independent computations (SciPy's optimiser on the reference loss; the reference objective;
the consensus weights from the correlations of the reconstruction's rows)."""

from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedKFold

from cfe_fast import CFEnsembleClassifier, diagnostics, make_ensemble
from cfe_fast import reference as ref
from cfe_fast.core.consensus import consensus_weights
from cfe_fast.training.aggregator import PRIOR_GRID, SCALE_RIDGE, choose_prior, cross_validate
from test_trainers import make_problem


def reference_consensus(X, Y, power=4):
    """Weights proportional to max(corr(r_hat_u, sum of the other rows of r_hat), 0)^power, from r_hat itself."""
    R_hat = X.T @ Y
    correlation = np.array([np.corrcoef(row, R_hat.sum(axis=0) - row)[0, 1] for row in R_hat])
    weights = np.maximum(correlation, 0.0) ** power
    return weights / weights.sum()


def centred(w, center, direction=None):
    """w minus its projection on the centre's line (equal weights, ``direction``), or w for "zero"."""
    if center == "zero":
        return w
    v = np.ones_like(w) if center == "equal" else direction
    return w - (v @ w) / (v @ v) * v


def reference_penalty(w, ridge, shrinkage, center, direction=None):
    """(value, gradient) of (ridge / 2) ||w||^2 + (shrinkage / 2) ||w - centre(w)||^2."""
    offset = centred(w, center, direction)
    return 0.5 * ridge * w @ w + 0.5 * shrinkage * offset @ offset, ridge * w + shrinkage * offset


def _reference_fit(X, Y, y, omega, ridge, shrinkage, center="equal", direction=None):
    """(w, b) minimising the reference supervised loss plus the penalty, by BFGS."""
    m = X.shape[0 if X.ndim == 1 else 1]

    def f(theta):
        w, b = theta[:-1], theta[-1]
        terms = ref.aggregator_terms(X, Y, y, omega, w, b)
        value, gradient = reference_penalty(w, ridge, shrinkage, center, direction)
        return terms.loss + value, np.append(terms.grad_w + gradient, terms.grad_b)

    result = minimize(f, np.append(np.full(m, 1.0 / m), 0.0), jac=True, method="BFGS", options={"gtol": 1e-10})
    return result.x[:-1], result.x[-1]


def test_cross_validated_losses_match_an_independent_computation():
    p, s = make_problem(5, 300, 3, seed=4, labeled_fraction=0.4)
    grid = (("equal", 0.0), ("equal", 10.0), ("equal", 100.0), ("consensus", 10.0), ("consensus", 100.0),
            ("zero", 3.0), ("zero", 100.0))
    validation = cross_validate(p, s, grid=grid, folds=3)
    prior, losses = validation.prior, validation.losses
    Y_labeled = s.Y[:, p.labeled]
    y, omega, l2 = p.y_labeled, p.omega, p.settings.penalty.l2
    direction = reference_consensus(s.X, s.Y)  # over all instances, labeled or not
    expected, logits = np.zeros(len(grid)), np.zeros((len(grid), y.size))
    for train, test in StratifiedKFold(3, shuffle=True, random_state=0).split(np.zeros(y.size), y):
        total = omega[train].sum()
        for k, (center, tau) in enumerate(grid):
            w, b = _reference_fit(s.X, Y_labeled[:, train], y[train], omega[train], l2 / total, tau / total,
                                  center, direction)
            z = logits[k, test] = w @ (s.X.T @ Y_labeled[:, test]) + b
            expected[k] += omega[test] @ (np.logaddexp(0, z) - y[test] * z)  # cross-entropy of held-out labels
    np.testing.assert_allclose(losses, expected / omega.sum(), rtol=1e-6)
    np.testing.assert_allclose(validation.logits, logits, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(validation.held_out_logits, validation.logits[grid.index(prior)])


@pytest.mark.parametrize("losses,chosen", [
    # within a centre: the smallest held-out loss, the stronger prior on a tie
    ([0.30, 0.31, 0.40, 0.50, 0.60], {"equal": 0, "zero": 3}),
    ([0.50, 0.45, 0.46, 0.30, 0.20], {"equal": 1, "zero": 4}),
    ([0.40, 0.40, 0.40, 0.50, 0.50], {"equal": 2, "zero": 4}),
])
@pytest.mark.parametrize("better", ["equal", "zero", "tie"])
def test_the_choice_of_prior(losses, chosen, better):
    """Between the centres' choices, the higher held-out average precision; the ridge on a tie."""
    grid = (("equal", 0.0), ("equal", 10.0), ("equal", 100.0), ("zero", 3.0), ("zero", 100.0))
    y = np.repeat([0.0, 1.0], 200)
    logits = np.random.default_rng(1).standard_normal((len(grid), y.size))  # chance rankings
    if better == "tie":
        logits[chosen["equal"]] = logits[chosen["zero"]]
    else:
        logits[chosen[better]] += 2.0 * y  # this centre's choice ranks the labels well
    expected = grid[chosen["zero" if better == "tie" else better]]
    assert choose_prior(grid, np.array(losses), y, logits) == expected


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
    total = ref.class_weights(data.labels[labeled]).sum()
    R = data.P.T
    C = ref.confidence(R, data.labels, "label_aware")
    X, Y = model.classifier_factors_, model.instance_factors_
    rho = 0.9
    unpenalised = ref.objective(X, Y, R, C, 0.1, data.labels, model.coef_, model.history_["intercept"][-1], rho)
    penalty, _ = reference_penalty(model.coef_, model.aggregator_l2 / total, model.aggregator_prior_ / total,
                                   model.aggregator_prior_center_, reference_consensus(X, Y))
    assert model.history_["loss"][-1] == pytest.approx(unpenalised[0] + (1 - rho) * penalty, rel=1e-10)
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

    from cfe_fast.core.ranking import average_precision

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
    assert abs((terms.grad_w + SCALE_RIDGE * s.w) @ shrunk) < 1e-8 and abs(terms.grad_b) < 1e-8


def test_fewer_labeled_instances_of_a_class_than_folds_take_the_strongest_prior_toward_the_consensus():
    p, s = make_problem(5, 300, 3, seed=4, labeled_fraction=0.4)
    n_pos = int(min(p.y_labeled.sum(), p.y_labeled.size - p.y_labeled.sum()))  # the smaller class
    validation = cross_validate(p, s, folds=n_pos + 1)
    strongest = max((prior for prior in PRIOR_GRID if prior[0] == "consensus"), key=lambda prior: prior[1])
    assert validation.grid == (strongest,) and validation.prior == strongest
    assert validation.held_out_logits.shape == validation.y.shape  # the held-out check still has its logits
    assert {center for center, _ in cross_validate(p, s, folds=n_pos).grid} == {"consensus", "zero"}
    equal_or_zero = (("equal", 10.0), ("equal", 30.0), ("zero", 100.0))
    assert cross_validate(p, s, grid=equal_or_zero, folds=n_pos + 1).grid == (("equal", 30.0),)
    only_zero = (("zero", 10.0), ("zero", 100.0))
    assert cross_validate(p, s, grid=only_zero, folds=n_pos + 1).grid == (("zero", 100.0),)  # a centre asked for is kept


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_consensus_weights_from_the_factor_moments_match_the_reconstruction_rows(dtype):
    from cfe_fast._float64 import moments64

    rng = np.random.default_rng(2)
    X = rng.standard_normal((4, 7))
    X[:, 3] = -X[:, 0]  # a classifier against the others: weight 0
    Y = (rng.standard_normal((4, 500)) + 2.0).astype(dtype)  # factors far from centred
    weights = consensus_weights(X, *moments64(Y))
    np.testing.assert_allclose(weights, reference_consensus(X, Y.astype(np.float64)),
                               rtol=1e-10 if dtype == np.float64 else 1e-4, atol=1e-12)
    assert weights[3] == 0.0 and weights.sum() == pytest.approx(1.0)
    lonely = consensus_weights(np.eye(3), np.zeros(3), np.eye(3))  # uncorrelated classifiers: equal weights
    np.testing.assert_allclose(lonely, np.full(3, 1 / 3))


def test_the_consensus_centre_follows_the_fitted_factors():
    data = make_ensemble(n_classifiers=8, n_instances=600, labeled_fraction=0.2, random_state=6)
    model = CFEnsembleClassifier(latent_dim=3, max_iter=4, random_state=0, aggregator_prior=1e6,
                                 aggregator_prior_center="consensus").fit(data.P, data.labels)
    direction = reference_consensus(model.classifier_factors_, model.instance_factors_)
    np.testing.assert_allclose(model.coef_ / model.coef_.sum(), direction, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="aggregator_prior_center='consensus' follows the factors"):
        CFEnsembleClassifier(trainer="exact", aggregator_prior_center="consensus").fit(data.P, data.labels)
