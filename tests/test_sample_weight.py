"""sample_weight weights the supervised term: zero weight is unlabeled there, an integer weight is
that many copies of the row in the aggregator's fit; scikit-learn's meta-estimators pass it through."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.naive_bayes import GaussianNB

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast import reference as ref
from cfe_fast.core.losses import AggregatorPenalty
from cfe_fast.training.aggregator import newton

PARAMS = dict(latent_dim=3, max_iter=8, random_state=0, aggregator_prior=2.0)


@pytest.fixture(scope="module")
def data():
    ens = make_ensemble(n_classifiers=8, n_instances=400, labeled_fraction=0.5, random_state=7)
    weights = np.random.default_rng(0).integers(0, 4, len(ens.labels)).astype(float)
    return ens.P, ens.labels, weights


def test_zero_weight_is_unlabeled_in_the_supervised_term(data):
    P, y, _ = data
    weights = np.where(np.arange(len(y)) % 3 == 0, 0.0, 1.0)
    weighted = CFEnsembleClassifier(**PARAMS).fit(P, y, sample_weight=weights)
    unlabeled = CFEnsembleClassifier(**PARAMS).fit(P, np.where(weights == 0, np.nan, y))
    np.testing.assert_allclose(weighted.instance_factors_, unlabeled.instance_factors_, rtol=1e-12)
    np.testing.assert_allclose(weighted.coef_, unlabeled.coef_, rtol=1e-6)
    assert weighted.intercept_ == pytest.approx(unlabeled.intercept_, rel=1e-6)
    assert weighted.prior_correction_ == pytest.approx(unlabeled.prior_correction_, rel=1e-12)
    unweighted = CFEnsembleClassifier(**PARAMS).fit(P, y)
    assert np.abs(unweighted.coef_ - weighted.coef_).max() > 1e-3  # the weights did change the fit


@pytest.mark.parametrize("class_weight", ["balanced", None])
def test_integer_weights_are_copies_in_the_aggregator_fit(data, class_weight):
    """At the fitted factors, (w, b) minimises the supervised loss of the labeled rows repeated
    sample_weight times, with the class weights and prior of the repeated rows."""
    P, y, weights = data
    fitted = CFEnsembleClassifier(class_weight=class_weight, **PARAMS).fit(P, y, sample_weight=weights)
    labeled = np.flatnonzero(~np.isnan(y))
    copies = np.repeat(labeled, weights[labeled].astype(int))
    y_copies = y[copies]
    omega = ref.class_weights(y_copies, class_weight == "balanced")
    penalty = AggregatorPenalty(l2=fitted.aggregator_l2, prior=fitted.aggregator_prior_, weight_total=omega.sum())
    X, Y = fitted.classifier_factors_, fitted.instance_factors_[:, copies]
    w, b, _ = newton(lambda w, b, hessian: ref.aggregator_terms(X, Y, y_copies, omega, w, b, hessian=hessian),
                     np.full(X.shape[1], 1.0 / X.shape[1]), 0.0, penalty, max_steps=50, tol=1e-14)
    np.testing.assert_allclose(fitted.coef_, w, rtol=1e-5, atol=1e-8)
    assert fitted.intercept_ + fitted.prior_correction_ == pytest.approx(b, rel=1e-5, abs=1e-8)
    n_pos = np.sum(y_copies == 1)
    expected_correction = np.log((y_copies.size - n_pos) / n_pos) if class_weight == "balanced" else 0.0
    assert fitted.prior_correction_ == pytest.approx(expected_correction, rel=1e-12)


@pytest.mark.parametrize("weights,match", [
    (lambda n: -np.ones(n), r"sample_weight must be non-negative; found -1 at row 0"),
    (lambda n: np.ones(n - 1), "sample_weight has 399 entries but there are 400 instances"),
    (lambda n: np.zeros(n), "sample_weight is zero on every labeled instance of class 0.0"),
    (lambda n: np.full(n, np.nan), "sample_weight contains NaN"),
])
def test_bad_weights_are_named(data, weights, match):
    P, y, _ = data
    with pytest.raises(ValueError, match=match):
        CFEnsembleClassifier(**PARAMS).fit(P, y, sample_weight=weights(len(y)))


def test_grid_search_and_cross_validate_pass_the_weights(data):
    P, y, weights = data
    y = np.where(np.isnan(y), -1, y)
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    params = {**PARAMS, "max_iter": 3}
    result = cross_validate(CFEnsembleClassifier(**params), P, y, cv=cv, params={"sample_weight": weights},
                            return_estimator=True, scoring="accuracy")
    for (train, _), fitted in zip(cv.split(P, y), result["estimator"]):
        direct = CFEnsembleClassifier(**params).fit(P[train], y[train], sample_weight=weights[train])
        np.testing.assert_array_equal(fitted.coef_, direct.coef_)
    search = GridSearchCV(CFEnsembleClassifier(**params), {"lam": [0.1, 1.0]}, cv=cv).fit(P, y, sample_weight=weights)
    direct = CFEnsembleClassifier(**{**params, **search.best_params_}).fit(P, y, sample_weight=weights)
    np.testing.assert_array_equal(search.best_estimator_.coef_, direct.coef_)


def test_stacking_classifier_passes_the_weights_to_cfe():
    X, y = make_classification(n_samples=300, n_features=8, weights=[0.7], random_state=0)
    weights = np.where(y == 1, 3.0, 1.0)
    stack = StackingClassifier([("lr", LogisticRegression(max_iter=500)), ("nb", GaussianNB())],
                               final_estimator=CFEnsembleClassifier(latent_dim=1, max_iter=5, random_state=0),
                               stack_method="predict_proba", cv=3).fit(X, y, sample_weight=weights)
    totals = [weights[y == 0].sum(), weights[y == 1].sum()]
    assert stack.final_estimator_.prior_correction_ == pytest.approx(np.log(totals[0] / totals[1]), rel=1e-12)
