"""K >= 3 classes with a sparse X (scipy.sparse in StackingClassifier's layout, stored entries = observed)
against the NumPy reference's multi-class fit of the dense X with NaN at the unstored entries.

Tolerances are those of whole sparse fits (tests/test_sparse.py): relative
error <= 1e-8 in float64 and <= 2e-3 in float32.
"""


import numpy as np
import pytest
import scipy.sparse as sp

from cfe_fast import CFEnsembleClassifier
from conftest import rel_error
from test_multiclass import K, M, N, make_data
from test_sparse import FIT_TOL, sparse_and_dense

FIT = dict(latent_dim=2, max_iter=4, tol=0.0, random_state=0)


pytestmark = pytest.mark.filterwarnings("ignore")  # collapse and quality warnings of tiny fits


@pytest.fixture(scope="module")
def data():
    """(P (n, m K) in StackingClassifier's layout, labels 'a'/'b'/'c' with None where unlabeled)."""
    P, labels, _ = make_data()
    return P.reshape(N, M * K), labels


def _fit(X, labels, **params):
    return CFEnsembleClassifier(**{**FIT, **params}).fit(X, labels)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("confidence,fraction", [("uniform", 0.0), ("certainty", 0.3), ("label_aware", 0.6),
                                                 ("calibration", 0.5)])
def test_a_sparse_multi_class_fit_matches_the_reference_on_the_dense_equivalent(data, dtype, confidence, fraction):
    P, labels = data
    S, dense = sparse_and_dense(P, fraction, seed=5)
    got = _fit(S, labels, dtype=dtype, confidence=confidence)
    want = _fit(dense, labels, dtype=dtype, confidence=confidence, backend="numpy")
    tol = FIT_TOL[dtype]
    assert got.classes_.tolist() == ["a", "b", "c"] and got.n_features_in_ == M * K
    assert rel_error(got.transductive_proba_, want.transductive_proba_) < tol
    for mine, theirs in zip(got.estimators_, want.estimators_):
        assert rel_error(mine.classifier_factors_, theirs.classifier_factors_) < tol
        assert rel_error(mine.history_["loss"], theirs.history_["loss"]) < tol
    new, new_dense = sparse_and_dense(P[:60], 0.5, seed=7)
    assert rel_error(got.predict_proba(new), want.predict_proba(new_dense)) < tol
    assert rel_error(got.transform(new), want.transform(new_dense)) < tol
    np.testing.assert_array_equal(got.predict(new), got.classes_[got.predict_proba(new).argmax(axis=1)])


def test_each_class_is_the_binary_sparse_fit_of_its_columns(data):
    P, labels = data
    S, _ = sparse_and_dense(P, 0.4, seed=1)
    fitted = _fit(S, labels)
    labeled = np.array([label is not None for label in labels])
    for k, name in enumerate("abc"):
        target = np.where(labeled, labels == name, np.nan).astype(float)
        binary = _fit(sp.csr_array(S)[:, k::K], target)
        np.testing.assert_array_equal(fitted.estimators_[k].transductive_proba_, binary.transductive_proba_)
        np.testing.assert_array_equal(fitted.estimators_[k].classifier_factors_, binary.classifier_factors_)


@pytest.mark.parametrize("form", ["coo_array", "csc_matrix", "dok_array", "lil_matrix"])
def test_every_sparse_format_gives_the_same_multi_class_fit(data, form):
    P, labels = data
    S, _ = sparse_and_dense(P, 0.4, seed=2)
    given = getattr(sp, form)(S)
    before = given.toarray()
    fitted, want = _fit(given, labels), _fit(S, labels)
    np.testing.assert_array_equal(fitted.transductive_proba_, want.transductive_proba_)
    np.testing.assert_array_equal(fitted.predict_proba(given[:9]), want.predict_proba(S[:9]))
    np.testing.assert_array_equal(given.toarray(), before)  # the input is not modified


def test_a_sparse_multi_class_model_round_trips(tmp_path, data):
    P, labels = data
    S, _ = sparse_and_dense(P, 0.4, seed=3)
    fitted = _fit(S, labels)
    fitted.save(tmp_path / "m.npz")
    loaded = CFEnsembleClassifier.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(S), fitted.predict_proba(S))


def test_a_3d_sparse_array_and_columns_that_are_not_a_multiple_of_the_classes_are_refused(data):
    P, labels = data
    cube = sp.coo_array(P.reshape(N, M, K))
    with pytest.raises(ValueError, match=r"X is a sparse array of shape \(240, 5, 3\): a sparse X must be 2-D"):
        _fit(cube, labels)
    with pytest.raises(ValueError, match="14 columns, not a multiple of the 3 classes"):
        _fit(sp.csr_array(P[:, :14]), labels)


def test_a_classifier_column_with_no_stored_entry_is_named(data):
    P, labels = data
    P = P.copy()
    P[:, 4] = 0.0  # classifier 1's column of class 'b': not stored
    with pytest.raises(ValueError, match="classifier column 1 of X has no observed entry"):
        _fit(sp.csr_array(P), labels)


@pytest.mark.parametrize("params,match", [(dict(trainer="exact", backend="cupy"), "trainer='exact'"),
                                          (dict(input_type="scores"), "input_type='scores'"),
                                          (dict(backend="numpy"), "backend='numpy' does not take a sparse X")])
def test_what_a_sparse_fit_does_not_support_is_refused_before_any_class_is_fitted(data, params, match):
    P, labels = data
    with pytest.raises((TypeError, ValueError), match=match):
        _fit(sp.csr_array(P), labels, **params)
