"""Class labels of any kind, unlabeled marks, and column names: the fit of 0/1 labels, relabeled."""

import numpy as np
import pandas as pd
import pytest

from cfe_fast import CFEnsembleClassifier, labeled_scorer, load_model, make_ensemble, save_model


@pytest.fixture(scope="module")
def data():
    ens = make_ensemble(n_classifiers=6, n_instances=300, labeled_fraction=0.4, random_state=5)
    return ens.P, ens.labels  # labels: 0/1, NaN where unlabeled


def model(**params):
    return CFEnsembleClassifier(latent_dim=2, max_iter=5, random_state=0, **params)


@pytest.fixture(scope="module")
def binary_fit(data):
    P, y = data
    return model().fit(P, y)


def relabel(y, negative, positive, unlabeled, dtype=None):
    """The 0/1/NaN labels y written with other class labels and unlabeled mark."""
    out = np.empty(y.size, dtype=object if dtype is None else dtype)
    out[y == 0], out[y == 1], out[np.isnan(y)] = negative, positive, unlabeled
    return out


@pytest.mark.parametrize("negative,positive,unlabeled,dtype,params", [
    ("no", "yes", None, None, {}),
    ("no", "yes", "?", "U3", {"unlabeled": "?"}),
    (1, 2, -1, np.int64, {}),
    (1, 2, 0, np.int64, {"unlabeled": 0}),
    (-1, 1, np.nan, np.float64, {"unlabeled": None}),  # -1 as a class
    (False, True, None, None, {}),
    (0.0, 1.0, -1.0, np.float64, {}),
])
def test_any_labels_fit_as_their_codes_and_predict_themselves(data, binary_fit, negative, positive, unlabeled, dtype,
                                                              params):
    P, y = data
    labels = relabel(y, negative, positive, unlabeled, dtype)
    fitted = model(**params).fit(P, labels)
    assert list(fitted.classes_) == [negative, positive]  # sorted, as LabelEncoder sorts them
    np.testing.assert_array_equal(fitted.predict_proba(P), binary_fit.predict_proba(P))
    np.testing.assert_array_equal(fitted.transductive_proba_, binary_fit.transductive_proba_)
    codes = binary_fit.predict(P).astype(int)
    np.testing.assert_array_equal(fitted.predict(P), np.array([negative, positive], dtype=object)[codes])


@pytest.mark.filterwarnings("ignore::cfe_fast.CollapseWarning")  # P holds P(y = 1): classes_[1] is its opposite
def test_classes_are_sorted_whatever_the_order_of_appearance(data):
    P, y = data
    labels = relabel(y, "b", "a", None)  # the label of y = 1 sorts first
    fitted = model().fit(P, labels)
    assert list(fitted.classes_) == ["a", "b"]
    flipped = model().fit(P, np.where(np.isnan(y), np.nan, 1 - y))
    np.testing.assert_array_equal(fitted.predict_proba(P), flipped.predict_proba(P))


def test_pandas_labels_with_missing_values(data, binary_fit):
    P, y = data
    for series in (pd.Series(relabel(y, "no", "yes", None), dtype="category"),
                   pd.Series(relabel(y, 3, 7, None), dtype="Int64"),
                   pd.Series(relabel(y, "no", "yes", None), dtype="string")):
        fitted = model().fit(P, series)
        assert fitted.classes_.tolist() in (["no", "yes"], [3, 7])
        np.testing.assert_array_equal(fitted.predict_proba(P), binary_fit.predict_proba(P))


@pytest.mark.parametrize("change,error,match", [
    (lambda y: relabel(y, "a", 2, None), TypeError, r"y mixes numbers and other labels, e\.g\. \['a', 2\]"),
    (lambda y: relabel(y, 0.25, 1.0, np.nan, np.float64), ValueError, r"continuous values \[0\.25\]"),
    (lambda y: relabel(y, "only", "only", None), ValueError, r"one class only \('only'\)"),
    (lambda y: relabel(y, -1, 1, np.nan, np.float64), ValueError,
     r"one class only \(1\.0\) besides -1, which marks unlabeled instances by default; pass unlabeled=None"),
])
def test_bad_labels_are_named(data, change, error, match):
    P, y = data
    with pytest.raises(error, match=match):
        model().fit(P, change(y))


def test_model_file_keeps_classes_and_feature_names(tmp_path, data):
    P, y = data
    frame = pd.DataFrame(P, columns=[f"clf_{j}" for j in range(P.shape[1])])
    for labels in (relabel(y, "no", "yes", None), relabel(y, False, True, None)):
        fitted = model().fit(frame, labels)
        path = tmp_path / "model.npz"
        save_model(fitted, path, overwrite=True)
        loaded = load_model(path)
        assert loaded.classes_.tolist() == fitted.classes_.tolist()
        assert loaded.feature_names_in_.tolist() == fitted.feature_names_in_.tolist()
        np.testing.assert_array_equal(loaded.predict(frame), fitted.predict(frame))


def test_labeled_scorer_skips_every_kind_of_unlabeled_mark(data, binary_fit):
    P, y = data
    expected = labeled_scorer("roc_auc")(binary_fit, P, y)
    strings = relabel(y, "no", "yes", None)
    assert labeled_scorer("accuracy")(model().fit(P, strings), P, strings) == labeled_scorer("accuracy")(
        binary_fit, P, y)
    marked = relabel(y, 0, 1, 9, np.int64)
    fitted = model(unlabeled=9).fit(P, marked)
    assert labeled_scorer("roc_auc")(fitted, P, marked) == expected


# ------------------------------------------------------------------ columns
@pytest.fixture(scope="module")
def frame_fit(data):
    P, y = data
    frame = pd.DataFrame(P, columns=[f"clf_{j}" for j in range(P.shape[1])])
    return frame, model().fit(frame, y)


def test_feature_names_and_reordered_columns(frame_fit):
    frame, fitted = frame_fit
    assert fitted.feature_names_in_.tolist() == list(frame.columns) and fitted.n_features_in_ == frame.shape[1]
    reordered = frame[frame.columns[::-1]]
    np.testing.assert_array_equal(fitted.predict_proba(reordered), fitted.predict_proba(frame))
    np.testing.assert_array_equal(fitted.transform(reordered), fitted.transform(frame))


def test_renamed_or_missing_columns_are_named(frame_fit):
    frame, fitted = frame_fit
    with pytest.raises(ValueError, match=r"(?s)unseen at fit time:\n- other.*missing:\n- clf_0"):
        fitted.predict_proba(frame.rename(columns={"clf_0": "other"}))
    with pytest.raises(ValueError, match=r"(?s)missing:\n- clf_5"):
        fitted.predict_proba(frame.drop(columns="clf_5"))


def test_set_output_gives_named_factors(frame_fit):
    frame, fitted = frame_fit
    factors = fitted.set_output(transform="pandas").transform(frame)
    try:
        assert isinstance(factors, pd.DataFrame) and list(factors.columns) == list(fitted.get_feature_names_out())
        assert factors.shape == (len(frame), fitted.latent_dim_)
        np.testing.assert_array_equal(factors.to_numpy(), fitted.set_output(transform="default").transform(frame))
    finally:
        fitted.set_output(transform="default")
