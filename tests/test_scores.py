"""input_type="scores": real-valued base outputs mapped into [0, 1] by each classifier's ranks."""

import numpy as np
import pytest
from scipy.special import logit
from sklearn.datasets import make_classification
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import QuantileTransformer
from sklearn.svm import SVC, LinearSVC

from cfe_fast import CFEnsembleClassifier, load_model, make_ensemble, save_model
from cfe_fast.io.model_file import ModelFileError
from cfe_fast.scores import fit_quantiles, to_unit_interval


def model(**params):
    return CFEnsembleClassifier(**{"latent_dim": 3, "max_iter": 5, "random_state": 0, "input_type": "scores", **params})


@pytest.fixture(scope="module")
def data():
    ens = make_ensemble(n_classifiers=8, n_instances=600, labeled_fraction=0.4, random_state=11)
    return ens.P, ens.labels


def test_the_transform_is_quantile_transformers_on_continuous_scores():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((3000, 4)) * [1.0, 5.0, 0.1, 30.0] + [0.0, 3.0, -1.0, 100.0]
    new = np.vstack([rng.standard_normal((200, 4)) * [2.0, 10.0, 0.2, 60.0] + [0.0, 3.0, -1.0, 100.0],
                     S.min(axis=0) - 1, S.max(axis=0) + 1])  # and beyond the fitted range
    quantiles = fit_quantiles(S)
    expected = QuantileTransformer(n_quantiles=1000, subsample=None).fit(S).transform(new)
    np.testing.assert_allclose(to_unit_interval(new, quantiles, np.float64), expected, atol=1e-12)
    assert to_unit_interval(new, quantiles, np.float32).dtype == np.float32


def test_ties_map_to_the_middle_of_their_ranks():
    S = np.array([[0.0], [1.0], [1.0], [1.0], [2.0]])
    np.testing.assert_allclose(to_unit_interval(S, fit_quantiles(S), np.float64).ravel(), [0, 0.5, 0.5, 0.5, 1])


def test_a_fit_on_scores_depends_on_their_ranks_only(data):
    """At most N_QUANTILES instances: the fitted scores map to their ranks (to rounding), so any
    increasing transform of each classifier's scores gives the same fit."""
    P, y = data
    scores = logit(np.clip(P, 1e-6, 1 - 1e-6)) * np.arange(1, 9) - 3.0
    fitted = model().fit(scores, y)
    np.testing.assert_allclose(model().fit(np.exp(scores / 8), y).transductive_proba_, fitted.transductive_proba_,
                               rtol=1e-9)
    ranks = np.argsort(np.argsort(scores, axis=0), axis=0) / (len(P) - 1)
    np.testing.assert_allclose(
        CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0).fit(ranks, y).transductive_proba_,
        fitted.transductive_proba_, rtol=1e-9)
    assert fitted.score_quantiles_.shape == (len(P), P.shape[1])
    assert np.all((fitted.predict_proba(scores * 100)[:, 1] >= 0) & (fitted.predict_proba(scores * 100)[:, 1] <= 1))


def test_model_file_keeps_the_transform(tmp_path, data):
    P, y = data
    scores = logit(np.clip(P, 1e-6, 1 - 1e-6))
    fitted = model().fit(scores, y)
    save_model(fitted, tmp_path / "scores.npz")
    loaded = load_model(tmp_path / "scores.npz")
    np.testing.assert_array_equal(loaded.predict_proba(scores[:50] * 1.3), fitted.predict_proba(scores[:50] * 1.3))
    probabilities = CFEnsembleClassifier(latent_dim=3, max_iter=5, random_state=0).fit(P, y)
    probabilities.input_type = "scores"  # a file that says scores but holds no transform
    save_model(probabilities, tmp_path / "inconsistent.npz")
    with pytest.raises(ModelFileError, match="input_type='scores' but the file lacks score_quantiles_"):
        load_model(tmp_path / "inconsistent.npz")


def test_stacking_over_classifiers_without_probabilities():
    X, y = make_classification(n_samples=400, n_features=10, n_informative=5, random_state=0)
    estimators = [("svc", SVC(random_state=0)), ("linear", LinearSVC(random_state=0)),
                  ("lr", LogisticRegression(max_iter=500))]
    stack = StackingClassifier(estimators, final_estimator=model(latent_dim=1), stack_method="decision_function",
                               cv=3).fit(X[:300], y[:300])
    assert stack.final_estimator_.score_quantiles_.shape[1] == 3
    assert stack.score(X[300:], y[300:]) > 0.8


def test_scores_with_dask_are_refused():
    with pytest.raises(ValueError, match="input_type='scores' maps each classifier's scores"):
        model(backend="dask").fit(np.zeros((4, 2)), [0, 1, 0, 1])
