"""scikit-learn integration: estimator checks, stacking, pipelines, grid search, prediction_matrix."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier, StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from cfe_fast import CFEnsembleClassifier, make_ensemble, prediction_matrix

OUT_OF_RANGE = (
    "the check feeds features outside [0, 1]; CFEnsembleClassifier's input is a matrix of "
    "probabilities and values above 1 are refused (the same conventions are tested on "
    "probability data in test_conventions_on_probability_data)"
)
RANGE_CHECKS = (
    "check_class_weight_classifiers", "check_classifier_data_not_an_array", "check_classifiers_classes",
    "check_classifiers_train", "check_dict_unchanged", "check_dont_overwrite_parameters",
    "check_estimators_dtypes", "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
    "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_fit2d_1feature",
    "check_fit2d_1sample", "check_fit2d_predict1d", "check_fit_check_is_fitted", "check_fit_idempotent",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_n_features_in",
    "check_n_features_in_after_fitting", "check_non_transformer_estimators_n_iter", "check_pipeline_consistency",
    "check_readonly_memmap_input", "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_n_iter", "check_transformer_preserve_dtypes", "check_sample_weights_pandas_series",
    "check_sample_weights_not_an_array", "check_all_zero_sample_weights_error", "check_sample_weights_shape",
    "check_sample_weights_not_overwritten",
)
EXPECTED_FAILED = {name: OUT_OF_RANGE for name in RANGE_CHECKS}
EXPECTED_FAILED["check_sample_weight_equivalence_on_dense_data"] = (
    "sample_weight weights the supervised term only: repeated rows also enter the factorisation (R gains "
    "rows), so the fits differ; the equivalence on the aggregator fit is tested in test_sample_weight.py"
)
EXPECTED_FAILED["check_sample_weight_equivalence_on_sparse_data"] = (
    EXPECTED_FAILED["check_sample_weight_equivalence_on_dense_data"])
EXPECTED_FAILED["check_classifier_not_supporting_multiclass"] = (
    "more than two classes are fitted when the columns hold each classifier's probability of every class "
    "(tests/test_multiclass.py); the multi_class tag is False because generic multi-class data lacks that layout"
)
EXPECTED_FAILED["check_complex_data"] = (
    "complex input raises TypeError naming the argument (the package's convention for a wrong "
    "kind of data), not the ValueError the check asks for"
)


def small(**params):
    return CFEnsembleClassifier(latent_dim=2, max_iter=5, random_state=0, **params)


@parametrize_with_checks([small()], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


LABEL_CONVENTIONS = {
    "check_classifiers_classes": (
        "labels {-1, 1}: -1 marks unlabeled instances by default (scikit-learn's semi-supervised "
        "convention), so one class is left; unlabeled=None makes -1 a class (tests/test_labels.py)"
    ),
    "check_supervised_y_no_nan": (
        "NaN marks unlabeled instances: a y of NaN only fits the reconstruction, with a warning "
        "(infinite labels are refused)"
    ),
    "check_class_weight_classifiers": "class_weight is 'balanced' or None; a dict of class weights is not supported",
}
SCORES_EXPECTED_FAILED = {
    **{name: EXPECTED_FAILED[name] for name in ("check_complex_data", "check_sample_weight_equivalence_on_dense_data",
                                                "check_classifier_not_supporting_multiclass")},
    **LABEL_CONVENTIONS,
}


@parametrize_with_checks([small(input_type="scores")], expected_failed_checks=lambda est: SCORES_EXPECTED_FAILED)
def test_sklearn_estimator_checks_on_scores(estimator, check):
    """With input_type="scores" any real features are valid: none of the range exemptions."""
    check(estimator)


def test_conventions_on_probability_data():
    """What the range-dependent checks test, on valid probability data."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    data = make_ensemble(n_classifiers=6, n_instances=200, random_state=1)
    P, y = data.P, data.labels
    model = small()
    params = model.get_params()
    assert model.fit(P, y) is model
    assert model.get_params() == params  # fit changes no parameter
    assert model.n_features_in_ == 6
    proba = model.predict_proba(P)
    order = np.random.default_rng(0).permutation(len(P))
    np.testing.assert_allclose(model.predict_proba(P[order]), proba[order], rtol=1e-12)  # sample order
    np.testing.assert_allclose(model.predict_proba(P[:17]), proba[:17], rtol=1e-12)  # subsets
    np.testing.assert_allclose(model.predict_proba(np.asfortranarray(P)), proba, rtol=1e-12)
    np.testing.assert_array_equal(clone(model).fit(P, y).predict_proba(P), proba)  # idempotent
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(P), proba)
    assert model.transform(P).shape == (len(P), model.latent_dim_)
    assert np.isin(model.predict(P), model.classes_).all()
    with pytest.raises(ValueError, match="X has 5 features, but CFEnsembleClassifier is expecting 6"):
        model.predict_proba(P[:, :5])
    with pytest.raises(NotFittedError):
        small().predict_proba(P)


@pytest.fixture(scope="module")
def base_problem():
    X, y = make_classification(n_samples=400, n_features=8, n_informative=4, weights=[0.8], random_state=0)
    estimators = [("lr", LogisticRegression(max_iter=500)), ("nb", GaussianNB()),
                  ("rf", RandomForestClassifier(n_estimators=20, random_state=0))]
    return X, y, estimators


def test_prediction_matrix_is_cross_val_predict_per_model(base_problem):
    X, y, estimators = base_problem
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    P = prediction_matrix(estimators, X, y, cv=cv)
    assert P.shape == (len(y), 3)
    for j, (_, estimator) in enumerate(estimators):
        np.testing.assert_array_equal(P[:, j], cross_val_predict(estimator, X, y, cv=cv, method="predict_proba")[:, 1])
    with pytest.raises(ValueError, match="exactly two classes"):
        prediction_matrix(estimators, X, np.arange(len(y)) % 3)
    with pytest.raises(TypeError, match="'scaler' is not a classifier"):
        prediction_matrix([("scaler", FunctionTransformer())], X, y)


def test_final_estimator_of_stacking_classifier(base_problem):
    X, y, estimators = base_problem
    stack = StackingClassifier(estimators, final_estimator=small(), stack_method="predict_proba", cv=3)
    stack.fit(X[:300], y[:300])
    proba = stack.predict_proba(X[300:])
    assert proba.shape == (100, 2) and np.allclose(proba.sum(axis=1), 1)
    assert stack.final_estimator_.n_features_in_ == 3  # one probability column per base model
    assert stack.score(X[300:], y[300:]) > 0.7


def test_pipeline_and_grid_search(base_problem):
    X, y, estimators = base_problem
    P = prediction_matrix(estimators, X, y, cv=3)
    search = GridSearchCV(
        make_pipeline(FunctionTransformer(), small()),
        {"cfensembleclassifier__lam": [0.01, 1.0], "cfensembleclassifier__latent_dim": [1, 2]},
        cv=3, scoring="average_precision",
    )
    search.fit(P, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_[-1].latent_dim == search.best_params_["cfensembleclassifier__latent_dim"]
