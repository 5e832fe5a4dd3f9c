"""Sparse P on the Dask backend (a scipy.sparse P it chunks itself, or a dask array of sparse chunks) against
the NumPy reference on the dense P with NaN at the unstored entries, and against the Numba sparse fit.

The cluster is an in-process one (threads, no worker processes). Tolerances:
against the Numba sparse fit 1e-10 relative in float64 and 1e-3 in float32
(only the order in which partial sums over chunks are added differs, as in
tests/test_dask_backend.py); against the reference 1e-8 in float64 and 2e-3
in float32 (as for the Numba sparse fit, tests/test_sparse.py).
"""


import numpy as np
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from cfe_fast import config  # noqa: E402
from cfe_fast.backends.dask.sparse import row_spans  # noqa: E402
from conftest import rel_error  # noqa: E402
from test_sparse import _fit, ensemble, sparse_and_dense  # noqa: E402, F401 (ensemble: a fixture)

NUMBA_TOL = {"float64": 1e-10, "float32": 1e-3}
REF_TOL = {"float64": 1e-8, "float32": 2e-3}


@pytest.fixture(scope="module")
def client():
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        yield client


pytestmark = pytest.mark.filterwarnings("ignore")  # collapse and quality warnings of tiny fits


def _dask_of(S, rows):
    """S as a dask array of CSR chunks of ``rows`` rows (a tuple: the chunk sizes)."""
    return da.from_array(sp.csr_matrix(S), chunks=(rows, -1), asarray=False)


def _assert_same_fit(got, want, tol):
    assert rel_error(np.asarray(got.transductive_proba_), want.transductive_proba_) < tol
    assert rel_error(np.asarray(got.instance_factors_), want.instance_factors_) < tol
    assert rel_error(got.classifier_factors_, want.classifier_factors_) < tol
    assert rel_error(got.history_["loss"], want.history_["loss"]) < tol
    assert rel_error(got.history_["reconstruction"], want.history_["reconstruction"]) < tol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("confidence,fraction,given", [("uniform", 0.0, "scipy"), ("certainty", 0.3, "dask"),
                                                       ("label_aware", 0.9, "scipy"), ("calibration", 0.6, "dask")])
def test_a_chunked_sparse_fit_matches_numba_and_the_reference(client, ensemble, monkeypatch, dtype, confidence,
                                                              fraction, given):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, fraction, seed=4)
    if given == "scipy":  # about 6 chunks
        monkeypatch.setattr(config, "DASK_CHUNK_BYTES", S.nnz // 6 * (np.dtype(dtype).itemsize + 4))
        X = S
    else:
        X = _dask_of(S, (1, 17, 60, 100, 62))
    got = _fit(X, labels, backend="dask", client=client, dtype=dtype, confidence=confidence)
    assert got.instance_factors_.numblocks[1] > 1
    _assert_same_fit(got, _fit(S, labels, dtype=dtype, confidence=confidence), NUMBA_TOL[dtype])
    want = _fit(dense, labels, backend="numpy", dtype=dtype, confidence=confidence)
    assert rel_error(np.asarray(got.transductive_proba_), want.transductive_proba_) < REF_TOL[dtype]
    assert got.held_out_average_precision_of_mean_ == pytest.approx(want.held_out_average_precision_of_mean_)
    new, new_dense = sparse_and_dense(P[:70], 0.5, seed=7)
    for form in (new, _dask_of(new, (30, 40))):
        assert rel_error(np.asarray(got.predict_proba(form)), want.predict_proba(new_dense)) < REF_TOL[dtype]
        assert rel_error(np.asarray(got.transform(form)), want.transform(new_dense)) < REF_TOL[dtype]


def test_many_classifiers_with_few_entries_each(client):
    """99 % of the entries unstored, m = 150 classifiers: each scores about 1 % of the instances."""
    rng = np.random.default_rng(8)
    n, m = 1500, 150
    P = rng.random((n, m))
    labels = np.where(rng.random(n) < 0.3, (rng.random(n) < 0.4).astype(float), np.nan)
    S, dense = sparse_and_dense(P, 0.99, seed=9)
    got = _fit(_dask_of(S, 400), labels, backend="dask", client=client, confidence="certainty")
    _assert_same_fit(got, _fit(S, labels, confidence="certainty"), NUMBA_TOL["float64"])
    want = _fit(dense, labels, backend="numpy", confidence="certainty")
    assert rel_error(np.asarray(got.transductive_proba_), want.transductive_proba_) < REF_TOL["float64"]


@pytest.mark.parametrize("form", ["numpy", "scipy", "dask", "dask of sparse"])
def test_a_user_confidence_is_read_at_the_stored_entries(client, ensemble, form):
    P, labels = ensemble
    S, dense = sparse_and_dense(P, 0.4, seed=1)
    C = np.where(np.isnan(dense), -5.0, np.abs(P - 0.5) + 0.1)  # ignored where unobserved
    given = {"numpy": C, "scipy": sp.csr_array(np.where(np.isnan(dense), 0.0, C)), "dask": da.from_array(C, 50),
             "dask of sparse": _dask_of(np.where(np.isnan(dense), 0.0, C), 70)}[form]
    got = _fit(_dask_of(S, (100, 140)), labels, backend="dask", client=client, confidence=given)
    _assert_same_fit(got, _fit(S, labels, confidence=C), NUMBA_TOL["float64"])
    bad = C.copy()
    rows, cols = np.nonzero(~np.isnan(dense))
    bad[rows[-3], cols[-3]] = np.inf
    with pytest.raises(ValueError, match=f"confidence at row {rows[-3]}, column {cols[-3]} holds inf"):
        _fit(_dask_of(S, (100, 140)), labels, backend="dask", client=client, confidence=bad)


def test_errors_name_the_row_of_the_data_and_the_classifier(client, ensemble):
    P, labels = ensemble
    S, _ = sparse_and_dense(P, 0.2, seed=0)
    bad = S.tolil()
    bad[130, 2] = 1.5
    with pytest.raises(ValueError, match="X at row 130, column 2 holds 1.5"):
        _fit(_dask_of(sp.csr_array(bad), 50), labels, backend="dask", client=client)
    model = _fit(S, labels, backend="dask", client=client)
    with pytest.raises(ValueError, match="X at row 130, column 2 holds 1.5"):
        np.asarray(model.predict_proba(_dask_of(sp.csr_array(bad), 50)))
    empty = S.tolil()
    empty[:, 3] = 0
    empty = sp.csr_array(empty)
    empty.eliminate_zeros()
    for X in (empty, _dask_of(empty, 50)):
        with pytest.raises(ValueError, match="classifier column 3 of X has no observed entry"):
            _fit(X, labels, backend="dask", client=client)


def test_an_instance_with_no_stored_entry(client, ensemble):
    P, labels = ensemble
    S, _ = sparse_and_dense(P, 0.3, seed=6)
    S = S.tolil()
    S[205, :] = 0
    S = sp.csr_array(S)
    S.eliminate_zeros()
    model = _fit(_dask_of(S, 60), labels, backend="dask", client=client)
    np.testing.assert_array_equal(np.asarray(model.instance_factors_)[:, 205], 0.0)
    with pytest.raises(ValueError, match="instance 205 has zero confidence everywhere"):
        _fit(_dask_of(S, 60), labels, backend="dask", client=client, lam=0.0)


def test_what_a_sparse_dask_array_cannot_be_used_with(client, ensemble, tmp_path):
    P, labels = ensemble
    X = _dask_of(sparse_and_dense(P, 0.2)[0], 60)
    with pytest.raises(TypeError, match="a dask array of sparse chunks needs backend='dask'"):
        _fit(X, labels)
    with pytest.raises(TypeError, match="a dask array of sparse chunks needs backend='dask'"):
        _fit(P, labels).predict_proba(X)
    with pytest.raises(ValueError, match="input_type='scores'"):
        _fit(X, labels, backend="dask", client=client, input_type="scores")


def test_more_than_two_classes_of_a_dask_array_of_sparse_chunks_fit_as_with_numba(client):
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 3, 240)
    P = np.clip(rng.random((240, 4 * 3)) * 0.5 + 0.5 * np.eye(3)[codes][:, np.arange(12) % 3], 0, 1)
    S, _ = sparse_and_dense(P, 0.4, seed=6)
    labels = np.where(rng.random(240) < 0.5, np.nan, codes.astype(float))
    got = _fit(_dask_of(S, (60, 60, 60, 60)), labels, backend="dask", client=client)
    want = _fit(S, labels)
    assert rel_error(np.asarray(got.transductive_proba_), want.transductive_proba_) < NUMBA_TOL["float64"]
    assert rel_error(np.asarray(got.predict_proba(_dask_of(S, (100, 140)))), want.predict_proba(S)) \
        < NUMBA_TOL["float64"]


@pytest.mark.parametrize("per_chunk", [1, 7, 50, 10_000])
def test_row_spans_cover_the_rows_with_about_the_asked_entries(per_chunk):
    S = sp.csr_array(sparse_and_dense(np.random.default_rng(1).random((90, 6)), 0.6, seed=2)[0])
    S[40:55] = 0  # a run of empty rows
    S.eliminate_zeros()
    spans = row_spans(S.indptr, per_chunk)
    assert spans[0][0] == 0 and spans[-1][1] == 90
    assert all(a < b and b == c for (a, b), (c, _) in zip(spans, spans[1:] + [(90, None)]))
    widest = np.diff(S.indptr).max()
    assert all(S.indptr[e] - S.indptr[s] < per_chunk + widest for s, e in spans)
