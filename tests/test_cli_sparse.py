"""A sparse matrix on the command line: the ``.npz`` of ``scipy.sparse.save_npz`` (members format, shape,
data and indices/indptr or row/col; stored entries = observed), with label and id members beside them.

The fit of a sparse file is compared with the API's sparse fit (identical)
and with the CLI's fit of the dense ``.npz`` with NaN at the unstored entries
(relative error <= 1e-8 in float64, the tolerance of whole sparse fits in
tests/test_sparse.py).
"""

import csv

import numpy as np
import pytest
import scipy.sparse as sp

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast.cli import main
from cfe_fast.io.tables import read_table
from conftest import rel_error
from test_sparse import sparse_and_dense

FAST = ["--latent-dim", "3", "--max-iter", "8", "--quiet"]
API = dict(latent_dim=3, max_iter=8, random_state=0)


pytestmark = pytest.mark.filterwarnings("ignore")  # collapse and quality warnings of tiny fits


@pytest.fixture(scope="module")
def data():
    ensemble = make_ensemble(n_classifiers=6, n_instances=300, random_state=2)
    S, dense = sparse_and_dense(np.ascontiguousarray(ensemble.P), 0.4, seed=3)
    return S, dense, ensemble.labels


def save_sparse(path, S, **members):
    """S in the members scipy.sparse.save_npz writes, with ``members`` (label, id) beside them."""
    S = sp.csr_array(S)
    np.savez(path, data=S.data, indices=S.indices, indptr=S.indptr, shape=np.array(S.shape),
             format=np.array(b"csr"), **members)


def predictions(path):
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return rows, np.array([float(row["probability"]) for row in rows])


def test_a_sparse_npz_fits_as_the_api_and_as_the_dense_npz_with_nan(tmp_path, data):
    S, dense, labels = data
    ids = np.arange(1000, 1000 + S.shape[0])
    save_sparse(tmp_path / "train.npz", S, label=labels, id=ids)
    np.savez(tmp_path / "dense.npz", P=dense, label=labels, id=ids)
    assert main(["fit", str(tmp_path / "train.npz"), "-o", str(tmp_path / "out"), *FAST]) == 0
    assert main(["fit", str(tmp_path / "dense.npz"), "-o", str(tmp_path / "dense"), "--backend", "numpy",
                 *FAST]) == 0
    rows, proba = predictions(tmp_path / "out" / "predictions.csv")
    dense_rows, dense_proba = predictions(tmp_path / "dense" / "predictions.csv")
    assert list(rows[0]) == list(dense_rows[0]) == ["id", "probability", "prediction"]
    assert [row["id"] for row in rows] == [str(i) for i in ids]
    np.testing.assert_array_equal(proba, CFEnsembleClassifier(**API).fit(S, labels).transductive_proba_)
    assert rel_error(proba, dense_proba) < 1e-8
    assert "LR stacking" in (tmp_path / "out" / "report.md").read_text()  # the comparison runs on sparse P
    model = CFEnsembleClassifier.load(tmp_path / "out" / "model.npz")
    new, new_dense = sparse_and_dense(dense[:40], 0.3, seed=9)
    sp.save_npz(tmp_path / "new.npz", sp.coo_array(new))  # no labels, no ids
    assert main(["predict", str(tmp_path / "out" / "model.npz"), str(tmp_path / "new.npz"),
                 "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    rows, proba = predictions(tmp_path / "p.csv")
    assert list(rows[0]) == ["probability", "prediction"]
    np.testing.assert_array_equal(proba, model.predict_proba(new)[:, 1])
    np.save(tmp_path / "new.npy", new_dense)  # a sparse-fitted model predicts dense input too
    assert main(["predict", str(tmp_path / "out" / "model.npz"), str(tmp_path / "new.npy"),
                 "-o", str(tmp_path / "q.csv"), "--quiet"]) == 0
    assert rel_error(predictions(tmp_path / "q.csv")[1], proba) < 1e-12


@pytest.mark.parametrize("form", ["csr_array", "csc_array", "coo_array", "csr_matrix", "csc_matrix", "coo_matrix"])
def test_every_file_of_scipy_save_npz_is_read_as_csr(tmp_path, data, form):
    S, _, _ = data
    sp.save_npz(tmp_path / "t.npz", getattr(sp, form)(S), compressed=form.startswith("csc"))
    P = read_table(tmp_path / "t.npz").P
    assert P.format == "csr" and P.dtype == np.float64 and P.shape == S.shape
    np.testing.assert_array_equal(P.toarray(), S.toarray())
    assert read_table(tmp_path / "t.npz").columns == [f"classifier_{j}" for j in range(S.shape[1])]


def test_stored_nan_is_unobserved_and_a_text_format_member_is_read(tmp_path, data):
    S, _, labels = data
    S = sp.csr_array(S)
    with_nan = S.tolil()
    with_nan[0, np.flatnonzero(S.toarray()[0] == 0)[0]] = np.nan
    with_nan = sp.csr_array(with_nan)
    np.savez(tmp_path / "t.npz", data=with_nan.data, indices=with_nan.indices, indptr=with_nan.indptr,
             shape=with_nan.shape, format="csr", label=labels)  # format as text, not bytes
    table = read_table(tmp_path / "t.npz")
    assert np.isnan(table.P.data).sum() == 1
    np.testing.assert_array_equal(CFEnsembleClassifier(**API).fit(table.P, labels).transductive_proba_,
                                  CFEnsembleClassifier(**API).fit(S, labels).transductive_proba_)


def test_more_than_two_classes_from_a_sparse_npz_fit_as_the_api(tmp_path):
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 3, 240)
    P = np.clip(rng.random((240, 12)) * 0.5 + 0.5 * np.eye(3)[codes][:, np.arange(12) % 3], 0, 1)
    S, _ = sparse_and_dense(P, 0.3, seed=1)
    labels = np.where(rng.random(240) < 0.5, -1, codes)
    save_sparse(tmp_path / "train.npz", S, label=labels)
    assert main(["fit", str(tmp_path / "train.npz"), "-o", str(tmp_path / "out"), *FAST]) == 0
    with open(tmp_path / "out" / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["probability_0", "probability_1", "probability_2", "prediction"]
    got = np.array([[float(row[f"probability_{k}"]) for k in range(3)] for row in rows])
    want = CFEnsembleClassifier(**API).fit(S, labels.astype(float)).transductive_proba_
    np.testing.assert_array_equal(got, want)


def test_a_sparse_fit_checkpoints_on_the_command_line(tmp_path, data):
    S, _, labels = data
    save_sparse(tmp_path / "train.npz", S, label=labels)
    assert main(["fit", str(tmp_path / "train.npz"), "-o", str(tmp_path / "out"), "--checkpoint-every", "2",
                 *FAST]) == 0
    np.testing.assert_array_equal(predictions(tmp_path / "out" / "predictions.csv")[1],
                                  CFEnsembleClassifier(**API).fit(S, labels).transductive_proba_)


def _members(S):
    S = sp.csr_array(S)
    return dict(data=S.data, indices=S.indices, indptr=S.indptr, shape=np.array(S.shape), format=np.array(b"csr"))


def _changed(S, **changes):
    return {**_members(S), **changes}


@pytest.mark.parametrize("change,match", [
    (dict(format=np.array(b"bsr")), r"member 'format' says 'bsr'; a sparse matrix is read in format 'csr', 'csc' "
                                    r"or 'coo'"),
    (dict(format=np.array([1, 2])), r"member 'format' of the sparse matrix must be a 0-D array of text"),
    (dict(shape=np.array([6])), r"member 'shape' must hold 2 positive integers .*got \[6\]"),
    (dict(shape=np.array([0, 3])), r"member 'shape' must hold 2 positive integers"),
    (dict(shape=np.array([2**40, 3])), r"member 'shape' declares 1099511627776 x 3; a sparse matrix is read with "
                                        r"at most \d+ rows and columns"),
    (dict(shape=np.array([2.0, 3.0])), r"member 'shape' of the sparse matrix must be a 1-D array of 2 integers"),
    (dict(indices=np.array([0, 1, 3, 0])), r"member 'indices', stored entry 2: column 3 is outside the 3 columns"),
    (dict(indices=np.array([0, 1, -1, 0])), r"member 'indices', stored entry 2: column -1 is outside"),
    (dict(indices=np.array([0.0, 1.0, 2.0, 0.0])), r"member 'indices' of the sparse matrix must be a 1-D array of "
                                                  r"integers, got shape \(4,\) and dtype float64"),
    (dict(indptr=np.array([0, 2, 3])), r"member 'indptr' must hold 4 pointers .*got 3 from 0 to 3"),
    (dict(indptr=np.array([0, 3, 2, 4])), r"member 'indptr' must hold 4 pointers .*never decrease"),
    (dict(indptr=np.array([1, 2, 3, 4])), r"member 'indptr' must hold 4 pointers .*start at 0"),
    (dict(data=np.array([0.1, 0.2, 0.3])), r"the members \['data', 'indices'\] hold one value per stored entry, "
                                           r"but their lengths differ: \{'data': 3, 'indices': 4\}"),
    (dict(data=np.array([0.1, 1.5, 0.3, 0.4])), r"member 'data', row 1, column 2 \(classifier_1\): 1.5 is not a "
                                                r"probability in \[0, 1\]; 1 such entries"),
    (dict(data=np.array([0.1, 0.2, -np.inf, 0.4])), r"member 'data', row 2, column 3 \(classifier_2\): -inf is not"),
    (dict(data=np.array(["a", "b", "c", "d"])), r"member 'data' of the sparse matrix must be a 1-D array of numbers"),
    (dict(extra=np.zeros(3)), r"member\(s\) \['extra'\] are neither the sparse matrix's \['data', 'indices', "
                              r"'indptr'\] nor a label or id"),
])
def test_a_malformed_sparse_npz_is_refused_naming_the_file_and_member(tmp_path, change, match):
    S = sp.csr_array(np.array([[0.1, 0.2, 0.0], [0.0, 0.0, 0.3], [0.4, 0.0, 0.0]]))
    np.savez(tmp_path / "t.npz", **_changed(S, **change))
    with pytest.raises(ValueError, match=r"t\.npz: " + match):
        read_table(tmp_path / "t.npz")


def test_missing_members_coo_indices_and_labels_of_another_length_are_named(tmp_path, capsys):
    S = sp.coo_array(np.array([[0.1, 0.2, 0.0], [0.0, 0.0, 0.3]]))
    members = dict(data=S.data, row=S.row, col=S.col, shape=np.array(S.shape), format=np.array(b"coo"))
    np.savez(tmp_path / "t.npz", **{name: value for name, value in members.items() if name != "col"})
    with pytest.raises(ValueError, match=r"t\.npz: a sparse matrix in format 'coo' needs the member\(s\) \['col'\]"):
        read_table(tmp_path / "t.npz")
    np.savez(tmp_path / "t.npz", **{**members, "row": np.array([0, 0, 2])})
    with pytest.raises(ValueError, match=r"member 'row', stored entry 2: row 2 is outside the 2 rows"):
        read_table(tmp_path / "t.npz")
    np.savez(tmp_path / "t.npz", **members, label=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"t\.npz: label column 'label'.*3.*2"):
        read_table(tmp_path / "t.npz")
    np.savez(tmp_path / "t.npz", **members, id=np.arange(3))
    with pytest.raises(ValueError, match=r"t\.npz: 3 ids for 2 instances"):
        read_table(tmp_path / "t.npz")
    np.savez(tmp_path / "t.npz", **{**members, "data": np.array([{"x": 1}] * 3, dtype=object)})
    with pytest.raises(ValueError, match="pickled object array"):
        read_table(tmp_path / "t.npz")
    assert main(["fit", str(tmp_path / "t.npz"), "-o", str(tmp_path / "out"), "--quiet"]) == 2  # one line, code 2
    assert capsys.readouterr().err.startswith(f"cfe-fast: error: {tmp_path / 't.npz'} holds a pickled object array")
