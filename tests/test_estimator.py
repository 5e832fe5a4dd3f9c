"""The estimator: behaviour of the ALS trainer and the defects of the original
implementation that must not come back."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import average_precision_score

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast.backends import get_backend
from cfe_fast import reference as ref
from conftest import rel_error
from test_aggregator_prior import reference_consensus, reference_penalty

nb = get_backend("numba")


def test_reconstruction_objective_never_increases_across_half_steps():
    data = make_ensemble(n_classifiers=12, n_instances=800, random_state=1)
    R = data.R
    C = ref.confidence(R, data.labels, "label_aware")
    rng = np.random.default_rng(0)
    d, lam = 4, 0.05
    Y = rng.standard_normal((d, R.shape[1]))
    X = nb.update_classifier_factors(Y, R, C, lam)
    losses = [nb.reconstruction_loss(X, Y, R, C, lam)]
    for _ in range(15):
        Y = nb.update_instance_factors(X, R, C, lam)
        losses.append(nb.reconstruction_loss(X, Y, R, C, lam))
        X = nb.update_classifier_factors(Y, R, C, lam)
        losses.append(nb.reconstruction_loss(X, Y, R, C, lam))
    steps = np.diff(losses)
    assert np.all(steps <= 1e-12 * np.abs(losses[:-1])), steps.max()
    assert losses[-1] < 0.9 * losses[0]


def test_user_confidence_is_used_as_given(seed_data):
    P, y = seed_data.P, seed_data.labels
    base = dict(latent_dim=3, max_iter=5, random_state=0)
    C = np.random.default_rng(0).uniform(0.2, 1.0, P.shape)
    user = CFEnsembleClassifier(confidence=C, **base).fit(P, y)
    default = CFEnsembleClassifier(**base).fit(P, y)
    assert rel_error(user.transductive_proba_, default.transductive_proba_) > 1e-3
    # the fit equals a manual ALS run with exactly this C
    rng = np.random.default_rng(0)
    Y = (rng.standard_normal((P.shape[0], 3)) / np.sqrt(3)).T
    for _ in range(user.n_iter_):
        X = ref.update_classifier_factors(Y, P.T, C.T, 0.1)
        Y = ref.update_instance_factors(X, P.T, C.T, 0.1)
    assert rel_error(user.instance_factors_, Y) < 1e-9


def test_confidence_strategies_give_different_results(seed_data):
    P, y = seed_data.P, seed_data.labels
    probas = [
        CFEnsembleClassifier(confidence=s, latent_dim=3, max_iter=5, random_state=0).fit(P, y).transductive_proba_
        for s in ("uniform", "certainty", "label_aware", "calibration")
    ]
    for i in range(len(probas)):
        for j in range(i):
            assert rel_error(probas[i], probas[j]) > 1e-4


def test_refit_with_same_random_state_is_identical(seed_data):
    P, y = seed_data.P, seed_data.labels
    params = dict(latent_dim=4, max_iter=8, confidence="certainty")  # a random start (uniform: the closed form)
    model = CFEnsembleClassifier(random_state=42, **params)
    first = model.fit(P, y).transductive_proba_.copy()
    again = model.fit(P, y).transductive_proba_
    np.testing.assert_array_equal(first, again)
    other = CFEnsembleClassifier(random_state=7, **params).fit(P, y).transductive_proba_
    assert rel_error(other, first) > 0


def test_global_rng_is_not_used(seed_data):
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    CFEnsembleClassifier(latent_dim=3, max_iter=3, random_state=None).fit(seed_data.P, seed_data.labels)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_mean_aggregator_works_with_labels(seed_data):
    model = CFEnsembleClassifier(aggregator="mean", latent_dim=3, max_iter=5).fit(seed_data.P, seed_data.labels)
    X, Y = model.classifier_factors_, model.instance_factors_
    np.testing.assert_allclose(model.transductive_proba_, np.clip((X.T @ Y).mean(axis=0), 0, 1), atol=1e-12)
    proba = model.predict_proba(seed_data.P[:20])
    assert proba.shape == (20, 2) and np.all((proba >= 0) & (proba <= 1))


def test_no_labels_fits_reconstruction_with_warning(seed_data):
    with pytest.warns(UserWarning, match="no labeled instance"):
        model = CFEnsembleClassifier(latent_dim=3, max_iter=4).fit(seed_data.P, np.full(seed_data.P.shape[0], -1))
    assert model.aggregator_ == "mean"
    assert np.all(np.isfinite(model.transductive_proba_))


def test_latent_dim_at_least_classifiers_warns(seed_data):
    with pytest.warns(UserWarning, match="latent_dim=10 >= n_classifiers=10"):
        CFEnsembleClassifier(latent_dim=10, max_iter=2).fit(seed_data.P, seed_data.labels)


def test_aggregator_is_actually_fitted(seed_data):
    """The original implementation took one tiny gradient step, leaving w ~ 1/m: the 'learned' ensemble was the mean.

    A given prior strength: the fit ends at the penalised optimum (with "auto" the scale is then refitted
    without the prior, which moves w along itself)."""
    P, y = seed_data.P, seed_data.labels
    model = CFEnsembleClassifier(latent_dim=3, max_iter=10, random_state=0, aggregator_prior=1.0).fit(P, y)
    labeled = ~np.isnan(y)
    Yl = model.instance_factors_[:, labeled]
    omega = ref.class_weights(y[labeled])
    fitted_b = model.intercept_ + model.prior_correction_  # the intercept of the class-weighted fit
    terms = ref.aggregator_terms(model.classifier_factors_, Yl, y[labeled], omega, model.coef_, fitted_b)
    total = omega.sum()  # the penalty's gradient: the ridge and the prior toward its centre
    _, penalty_gradient = reference_penalty(model.coef_, model.aggregator_l2 / total, model.aggregator_prior_ / total,
                                            model.aggregator_prior_center_,
                                            reference_consensus(model.classifier_factors_, model.instance_factors_))
    grad = np.append(terms.grad_w + penalty_gradient, terms.grad_b)
    assert np.abs(grad).max() < 1e-6  # stationary point of the supervised objective
    assert np.abs(model.coef_ - 1 / P.shape[1]).max() > 0.1


def test_fit_attributes_and_predictions(seed_data):
    P, y = seed_data.P, seed_data.labels
    model = CFEnsembleClassifier(latent_dim=3, max_iter=30, random_state=0).fit(P, y)
    n, m = P.shape
    assert model.classifier_factors_.shape == (3, m) and model.instance_factors_.shape == (3, n)
    assert model.coef_.shape == (m,) and isinstance(model.intercept_, float)
    assert set(model.history_) >= {"loss", "reconstruction", "supervised"}
    assert len(model.history_["loss"]) == model.n_iter_
    assert model.n_features_in_ == m and list(model.classes_) == [0, 1]
    proba = model.predict_proba(P)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(P), (proba[:, 1] >= 0.5).astype(int))
    # fold-in equals the reference fold-in with the label-free confidence: ones for "uniform" (the
    # default), |r - 0.5| for "label_aware"
    Y_new = ref.fold_in(model.classifier_factors_, P.T, np.ones(P.T.shape), model.lam)
    assert rel_error(model.transform(P), Y_new.T) < 1e-10
    aware = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0, confidence="label_aware").fit(P, y)
    Y_new = ref.fold_in(aware.classifier_factors_, P.T, np.abs(P.T - 0.5), aware.lam)
    assert rel_error(aware.transform(P), Y_new.T) < 1e-10
    unlabeled = np.isnan(y)
    truth = seed_data.y_true[unlabeled]
    assert average_precision_score(truth, model.transductive_proba_[unlabeled]) > 0.5


def test_backends_agree(seed_data):
    P, y = seed_data.P, seed_data.labels
    fits = [
        CFEnsembleClassifier(latent_dim=3, max_iter=6, random_state=0, backend=b).fit(P, y)
        for b in ("numba", "numpy")
    ]
    assert rel_error(fits[0].transductive_proba_, fits[1].transductive_proba_) < 1e-8
    assert fits[0].n_iter_ == fits[1].n_iter_


def test_float32_fit_matches_float64(seed_data):
    P, y = seed_data.P, seed_data.labels
    p64 = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0).fit(P, y).transductive_proba_
    model = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0, dtype="float32").fit(P, y)
    assert model.instance_factors_.dtype == np.float32
    assert np.abs(model.transductive_proba_ - p64).max() < 1e-3


def test_sklearn_parameter_protocol():
    model = CFEnsembleClassifier(latent_dim=4, rho=0.3)
    params = model.get_params()
    assert params["latent_dim"] == 4 and params["rho"] == 0.3
    cloned = clone(model.set_params(lam=0.7))
    assert cloned.lam == 0.7 and cloned.latent_dim == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CFEnsembleClassifier(latent_dim=-5, lam="x")  # __init__ only stores


def test_focal_loss_fit(seed_data):
    for variant in ("exact", "weighted_bce"):
        model = CFEnsembleClassifier(focal_gamma=2.0, focal_variant=variant, latent_dim=3, max_iter=5, random_state=0)
        model.fit(seed_data.P, seed_data.labels)
        assert np.all(np.isfinite(model.transductive_proba_))


def test_probabilities_follow_the_labeled_class_balance(seed_data):
    """With balanced class weights the fitted intercept is shifted by log(n_neg / n_pos)
    (docs/method.md, "Calibration"): prior_correction_ undoes it, leaving the ranking as it is."""
    P, y = seed_data.P, seed_data.labels
    model = CFEnsembleClassifier(latent_dim=3, max_iter=10, random_state=0).fit(P, y)
    labeled = y[~np.isnan(y)]
    assert model.prior_correction_ == pytest.approx(np.log(np.sum(labeled == 0) / np.sum(labeled == 1)), rel=1e-12)
    assert model.intercept_ == pytest.approx(model.history_["intercept"][-1] - model.prior_correction_, rel=1e-12)
    logit = model.coef_ @ (model.classifier_factors_.T @ model.instance_factors_) + model.history_["intercept"][-1]
    assert np.mean(model.transductive_proba_) < np.mean(1 / (1 + np.exp(-logit)))  # toward the minority's rate
    assert np.all(np.diff(model.transductive_proba_[np.argsort(logit)]) >= 0)  # the ranking is the fitted one
    unweighted = CFEnsembleClassifier(latent_dim=3, max_iter=10, random_state=0, class_weight=None).fit(P, y)
    assert unweighted.prior_correction_ == 0.0


def test_predict_cuts_at_the_threshold(seed_data):
    P, y = seed_data.P, seed_data.labels
    model = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0, threshold=0.2).fit(P, y)
    p = model.predict_proba(P)[:, 1]
    np.testing.assert_array_equal(model.predict(P), (p >= 0.2).astype(int))
