"""K >= 3 classes: one binary CF-Ensemble per class (cfe_fast.multiclass), against binary fits done by hand."""

import warnings

import numpy as np
import pandas as pd
import pytest

from cfe_fast import CFEnsembleClassifier, CollapseWarning, QualityWarning

K, M, N = 3, 5, 240


def make_data():
    """(P (n, m, K) rows summing to 1, labels 'a'/'b'/'c' with None where unlabeled, the class codes)."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, K, N)
    logits = rng.normal(size=(N, M, K)) + 2.0 * np.eye(K)[codes][:, None, :] * rng.uniform(0.3, 1.5, M)[None, :, None]
    P = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    labels = np.array(["a", "b", "c"], dtype=object)[codes]
    labels[rng.random(N) < 0.5] = None
    return P, labels, codes


@pytest.fixture(scope="module")
def data():
    return make_data()


def model(**params):
    return CFEnsembleClassifier(latent_dim=2, max_iter=10, random_state=0, **params)


def fit_quietly(estimator, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (CollapseWarning, QualityWarning, UserWarning))
        return estimator.fit(X, y, **kw)


@pytest.fixture(scope="module")
def fitted(data):
    P, labels, _ = data
    return fit_quietly(model(), P, labels)


def test_each_class_is_the_binary_fit_of_its_columns_and_the_probabilities_are_normalised(data, fitted):
    P, labels, _ = data
    labeled = np.array([label is not None for label in labels])
    by_hand = []
    for k, name in enumerate(["a", "b", "c"]):
        target = np.where(labeled, labels == name, np.nan).astype(float)
        binary = fit_quietly(model(), P[:, :, k], target)
        np.testing.assert_array_equal(fitted.estimators_[k].transductive_proba_, binary.transductive_proba_)
        by_hand.append(binary.predict_proba(P[:7, :, k])[:, 1])
    q = np.column_stack(by_hand)
    np.testing.assert_allclose(fitted.predict_proba(P[:7]), q / q.sum(axis=1, keepdims=True), rtol=1e-12)
    assert fitted.classes_.tolist() == ["a", "b", "c"]


def test_probabilities_sum_to_one_and_predict_is_their_argmax(data, fitted):
    P, _, codes = data
    proba = fitted.predict_proba(P)
    assert proba.shape == (N, K)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(fitted.transductive_proba_.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(fitted.predict(P), fitted.classes_[proba.argmax(axis=1)])
    assert np.mean(proba.argmax(axis=1) == codes) > 0.8  # the classifiers carry the class: it is found


def test_the_stacking_layout_gives_the_same_model(data, fitted):
    P, labels, _ = data
    flat = P.reshape(N, M * K)  # classifier j's probability of class k in column j * K + k
    other = fit_quietly(model(), flat, labels)
    np.testing.assert_array_equal(other.transductive_proba_, fitted.transductive_proba_)
    np.testing.assert_array_equal(other.predict_proba(flat[:9]), fitted.predict_proba(P[:9]))
    assert other.n_features_in_ == M * K


def test_named_columns_in_another_order_give_the_same_probabilities(data):
    P, labels, _ = data
    frame = pd.DataFrame(P.reshape(N, M * K), columns=[f"clf{j}_{c}" for j in range(M) for c in "abc"])
    fitted = fit_quietly(model(), frame, labels)
    assert fitted.feature_names_in_.tolist() == frame.columns.tolist()
    np.testing.assert_array_equal(fitted.predict_proba(frame[frame.columns[::-1]]), fitted.predict_proba(frame))
    with pytest.raises(ValueError, match="clf0_a"):
        fitted.predict_proba(frame.rename(columns={"clf0_a": "renamed"}))


def test_transform_puts_the_class_factors_side_by_side(data, fitted):
    P, _, _ = data
    factors = fitted.transform(P[:4])
    assert factors.shape == (4, K * fitted.latent_dim_) and fitted.get_feature_names_out().size == K * fitted.latent_dim_
    np.testing.assert_array_equal(factors[:, :fitted.latent_dim_], fitted.estimators_[0].transform(P[:4, :, 0]))


def test_diagnose_names_each_class(fitted):
    names = [check.name for check in fitted.diagnose().checks]
    for label in ("a", "b", "c"):
        assert any(name.startswith(f"class {label!r}: ") for name in names)


@pytest.mark.parametrize("shape,match", [
    ((N, M, K + 1), r"last axis must hold the 3 classes"),
    ((N, 7), r"7 columns, not a multiple of the 3 classes"),
])
def test_a_layout_that_does_not_match_the_classes_is_refused(data, shape, match):
    _, labels, _ = data
    X = np.full(shape, 1.0 / shape[-1])
    with pytest.raises(ValueError, match=match):
        model().fit(X, labels)


def test_a_class_without_weight_is_named(data):
    P, labels, _ = data
    weights = np.where(labels == "b", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"class 'b' has no labeled instance of positive weight"):
        model().fit(P, labels, sample_weight=weights)


@pytest.mark.parametrize("where", ["checkpoint", "resume_from"])
def test_checkpoints_are_refused_with_the_alternative(tmp_path, data, where):
    P, labels, _ = data
    with pytest.raises(ValueError, match=r"not supported with more than two classes \(y has 3\): fit without "
                                         r"checkpoint and resume_from, or fit one two-class model per class"):
        model().fit(P, labels, **{where: tmp_path / "state.npz"})
    assert not (tmp_path / "state.npz").exists()


def test_a_warning_of_a_class_ensemble_names_the_class(data):
    P, labels, _ = data
    with pytest.warns(UserWarning, match=r"class 'a': latent_dim=5 >= n_classifiers=5"):
        model().set_params(latent_dim=M).fit(P, labels)


def test_a_refit_on_two_classes_drops_the_class_ensembles(data, fitted):
    P, labels, _ = data
    binary = np.where(labels == None, None, labels == "a")  # noqa: E711 (element-wise)
    refitted = fit_quietly(model(), P, labels)
    fit_quietly(refitted, P[:, :, 0], binary)
    assert not hasattr(refitted, "estimators_") and refitted.predict_proba(P[:3, :, 0]).shape == (3, 2)


@pytest.mark.parametrize("params", [{"trainer": "exact"}, {"trainer": "joint"}, {"input_type": "scores"}])
def test_every_trainer_and_input_type_serves_each_class(data, params):
    P, labels, _ = data
    fitted = fit_quietly(model(**params), P, labels)
    assert all(member.get_params()[key] == value for member in fitted.estimators_ for key, value in params.items())
    np.testing.assert_allclose(fitted.predict_proba(P[:6]).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("trainer", ["als", "exact", "joint"])
def test_each_class_fits_on_the_cupy_backend_as_on_numba(data, trainer):
    """CuPy computes with NumPy where no GPU is usable, and on the device where there is one."""
    P, labels, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cupy without a GPU
        got = fit_quietly(model(backend="cupy", trainer=trainer), P, labels)
    want = fit_quietly(model(trainer=trainer), P, labels)
    assert all(member.backend == "cupy" for member in got.estimators_)
    np.testing.assert_allclose(got.predict_proba(P), want.predict_proba(P), rtol=1e-8, atol=1e-10)
