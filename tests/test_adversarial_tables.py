"""Hostile input tables: every bad file or cell is an error naming the file, the column and the row."""

import csv
import io
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfe_fast import config
from cfe_fast.cli import main
from cfe_fast.io.tables import read_table

FAST = ["--latent-dim", "2", "--max-iter", "3", "--quiet", "--no-report"]


def csv_text(columns):
    """CSV text of {name: list of cells}."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(list(columns))
    writer.writerows(zip(*columns.values()))
    return buffer.getvalue()


@pytest.fixture
def table_file(tmp_path):
    def write(columns, name="t.csv", text=None):
        path = tmp_path / name
        path.write_bytes((text if text is not None else csv_text(columns)).encode("utf-8"))
        return path
    return write


def good_columns(n=12, labels=True):
    rng = np.random.default_rng(0)
    columns = {f"m{j}": [repr(float(v)) for v in rng.random(n)] for j in range(3)}
    if labels:
        columns["label"] = [str(i % 2) for i in range(n)]
    return columns


# ------------------------------------------------------- the label column
def test_a_named_label_column_that_is_absent_is_an_error_listing_the_columns(table_file):
    columns = good_columns(labels=False)
    columns["target"] = [str(i % 2) for i in range(12)]
    path = table_file(columns)
    with pytest.raises(ValueError, match=r"no label column 'Target'; the columns are \['m0', 'm1', 'm2', 'target'\]"):
        read_table(path, label_col="Target")
    with pytest.raises(ValueError, match="no id column 'ID'"):
        read_table(path, id_col="ID")


@pytest.mark.parametrize("name", ["target", "Label", "y", "CLASS", " class "])
def test_a_column_that_looks_like_a_label_warns(table_file, name):
    columns = good_columns(labels=False)
    columns[name] = [str(i % 2) for i in range(12)]
    with pytest.warns(UserWarning, match=rf"\[{name!r}\] look like a label"):
        table = read_table(table_file(columns))
    assert table.labels is None and name in table.columns


def test_a_binary_classifier_column_without_labels_warns(table_file):
    columns = good_columns(labels=False)
    columns["outcome_2024"] = [str(i % 2) for i in range(12)]
    with pytest.warns(UserWarning, match=r"\['outcome_2024'\] hold only 0 and 1"):
        read_table(table_file(columns))


def test_the_label_column_used_draws_no_warning(table_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_table(table_file(good_columns()))
    assert table.columns == ["m0", "m1", "m2"] and table.labels is not None


def test_the_cli_refuses_a_mistyped_label_column(tmp_path, table_file, capsys):
    columns = good_columns(labels=False)
    columns["target"] = [str(i % 2) for i in range(12)]
    path = table_file(columns)
    assert main(["fit", str(path), "-o", str(tmp_path / "out"), "--label-col", "Target", *FAST]) == 2
    assert "no label column 'Target'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::cfe_fast.CollapseWarning", "ignore::cfe_fast.QualityWarning")
def test_predict_ignores_a_bad_label_column_with_a_warning(tmp_path, table_file):
    train = table_file(good_columns(40), "train.csv")
    assert main(["fit", str(train), "-o", str(tmp_path / "out"), *FAST]) == 0
    columns = good_columns(40)
    columns["label"] = ["0.5"] * 40
    new = table_file(columns, "new.csv")
    with pytest.warns(UserWarning, match="the label column is ignored"):
        code = main(["predict", str(tmp_path / "out" / "model.npz"), str(new), "-o", str(tmp_path / "p.csv"),
                     "--quiet"])
    assert code == 0 and (tmp_path / "p.csv").exists()


# --------------------------------------------------------------- cells
@pytest.mark.parametrize("cell", ["", "nan", "NA"])
@pytest.mark.parametrize("row", [0, 7])
def test_an_empty_cell_is_an_unobserved_entry(table_file, cell, row):
    columns = good_columns()
    columns["m1"][row] = cell
    table = read_table(table_file(columns))
    assert np.isnan(table.P[row, 1]) and np.isnan(table.P).sum() == 1


@pytest.mark.parametrize("cell, why", [
    ("abc", "is not a number"),
    ("1.5", "is not a probability"),
    ("-0.1", "is not a probability"),
    ("inf", "is not a probability"),
    ("0x1p-1", "is not a number"),
])
@pytest.mark.parametrize("row", [0, 7])
def test_a_bad_cell_is_named_by_column_and_row(table_file, cell, why, row):
    columns = good_columns()
    columns["m1"][row] = cell
    with pytest.raises(ValueError, match=rf"t.csv: column 'm1', data row {row + 1}: .* {why}"):
        read_table(table_file(columns))


@pytest.mark.parametrize("cell, why", [
    ("0.5", r"continuous values \[0.5\]"),
    ("yes", r"mixes numbers \('0'\) and text \(\['yes'\]\)"),
    ("inf", "infinite values"),
])
def test_a_bad_label_is_named(table_file, cell, why):
    columns = good_columns()
    columns["label"][3] = cell
    with pytest.raises((TypeError, ValueError), match=f"t.csv: label column 'label'.*{why}"):
        read_table(table_file(columns))


@pytest.mark.parametrize("cell", ["", "nan", "-1"])
def test_empty_nan_and_minus_one_labels_are_unlabeled(table_file, cell):
    columns = good_columns()
    columns["label"][3] = cell
    table = read_table(table_file(columns))
    assert np.isnan(table.codes[3]) and table.classes.tolist() == [0, 1]
    assert np.isnan(table.codes).sum() == 1


@pytest.mark.parametrize("cells, classes", [
    (["no", "yes", ""], ["no", "yes"]),
    (["1", "2", "3"], [1, 2, 3]),
    (["true", "false", ""], [False, True]),
    (["-1", "1", "?"], [-1, 1]),
])
def test_labels_of_any_kind_are_read_with_their_classes(table_file, cells, classes):
    columns = good_columns(12)
    columns["label"] = [cells[i % 3] for i in range(12)]
    table = read_table(table_file(columns), unlabeled="?" if "?" in cells else None)
    assert table.classes.tolist() == classes
    assert [None if code != code else table.classes[int(code)] for code in table.codes][:3] == \
        [None if cell in ("", "?") else cell if cell.isalpha() and cell not in ("true", "false")
         else cell == "true" if cell in ("true", "false") else int(cell) for cell in cells]


def test_a_utf8_byte_order_mark_is_dropped(table_file):
    columns = {"id": [f"r{i}" for i in range(12)], **good_columns()}
    table = read_table(table_file(columns, text="\ufeff" + csv_text(columns)))
    assert table.id_name == "id" and table.columns == ["m0", "m1", "m2"]


def test_invalid_utf8_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"m0,m1\n0.5,\xff\xfe\n0.1,0.2\n")
    with pytest.raises(ValueError, match=r"bad.csv: column 'm1', data row 1: .* is not UTF-8 text"):
        read_table(path)
    path.write_bytes(b"m0,\xff1\n0.5,0.1\n")
    with pytest.raises(ValueError, match="bad.csv: the header is not UTF-8"):
        read_table(path)


@pytest.mark.parametrize("text, match", [
    ("", "Empty CSV"),
    ("m0,m1\n", "no data rows"),
    ("m0,m0\n0.1,0.2\n", r"duplicate column name\(s\) \['m0'\]"),
    ("m0,m1\n0.1,0.2\n0.3\n", "Row #3: Expected 2 columns, got 1"),
    ("label,id\n1,a\n", "no classifier column"),
])
def test_malformed_csv_names_the_file(table_file, text, match):
    with pytest.raises(ValueError, match=match) as error:
        read_table(table_file(None, text=text))
    assert "t.csv" in str(error.value)


def test_ids_stay_text(table_file):
    columns = {"id": ["007", "1e3", "x", ""] * 3, **good_columns()}
    table = read_table(table_file(columns))
    assert list(table.ids[:4]) == ["007", "1e3", "x", ""]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=st.text(max_size=8), row=st.integers(0, 11))
def test_any_cell_is_read_or_refused_by_name(table_file, cell, row):
    """Whatever text a cell holds, the table is read with that cell's value (NaN: empty or missing, not
    observed) or refused naming its row."""
    columns = good_columns()
    columns["m2"][row] = cell
    try:
        table = read_table(table_file(columns))
    except ValueError as error:
        assert "t.csv" in str(error)
        assert f"data row {row + 1}" in str(error) or "CSV" in str(error)
        return
    if np.isnan(table.P[row, 2]):
        from pyarrow import csv as pa_csv  # pyarrow's CSV null markers, or a text that float() reads as NaN

        assert not cell.strip() or cell in pa_csv.ConvertOptions().null_values or np.isnan(float(cell))
        return
    assert 0 <= table.P[row, 2] <= 1 and float(cell) == table.P[row, 2]


# ------------------------------------------------------------- Parquet
def test_parquet_nulls_are_unobserved_and_strings_are_named(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"m0": [0.1, None, 0.3], "m1": [0.2, 0.4, 0.6], "label": [1, None, 0]}), path)
    table = read_table(path)  # a null is an unobserved entry
    assert np.isnan(table.P[1, 0]) and np.isnan(table.P).sum() == 1 and np.isnan(table.codes[1])
    pq.write_table(pa.table({"m0": ["0.1", "x"], "m1": [0.2, 0.4]}), path)
    with pytest.raises(ValueError, match="t.parquet: column 'm0', data row 2: 'x' is not a number"):
        read_table(path)
    pq.write_table(pa.table({"m0": [0.1, 0.2], "m1": [0.2, 0.4], "label": [1, None]}), path)
    assert np.isnan(read_table(path).codes[1])
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="t.parquet: not a readable Parquet file"):
        read_table(path)


# ------------------------------------------------------------- NumPy
@pytest.mark.parametrize("P, match", [
    (np.float64(0.5), r"must be a 2-D numeric matrix .* shape \(\)"),
    (np.zeros(4), r"shape \(4,\)"),
    (np.array([["a", "b"]]), "dtype <U1"),
    (np.array([[0.5, np.inf]]), r"row 1, column 2 \(classifier_1\): inf is not a probability"),
    (np.array([[0.5, 2.0]]), "2.0 is not a probability"),
])
def test_bad_npy_and_npz_matrices_are_named(tmp_path, P, match):
    np.save(tmp_path / "t.npy", P)
    with pytest.raises(ValueError, match="t.npy: .*" + match):
        read_table(tmp_path / "t.npy")
    np.savez(tmp_path / "t.npz", P=P)
    with pytest.raises(ValueError, match="t.npz: member 'P'.*" + match):
        read_table(tmp_path / "t.npz")


def test_nan_in_npy_and_npz_matrices_is_an_unobserved_entry(tmp_path):
    P = np.array([[0.5, np.nan], [0.2, 0.3]])
    np.save(tmp_path / "t.npy", P)
    np.savez(tmp_path / "t.npz", P=P)
    for name in ("t.npy", "t.npz"):
        np.testing.assert_array_equal(read_table(tmp_path / name).P, P)


def test_npz_members_are_checked_by_name_and_shape(tmp_path):
    P = np.full((4, 2), 0.5)
    np.savez(tmp_path / "t.npz", P=P, id=np.arange(8).reshape(4, 2))
    with pytest.raises(ValueError, match=r"id member 'id' must be 1-D, got shape \(4, 2\)"):
        read_table(tmp_path / "t.npz")
    np.savez(tmp_path / "t.npz", P=P, y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="no label column 'target'"):
        read_table(tmp_path / "t.npz", label_col="target")
    assert list(read_table(tmp_path / "t.npz", label_col="y").labels) == [0, 1, 0, 1]
    np.savez(tmp_path / "t.npz", A=P, B=P)
    with pytest.raises(ValueError, match=r"expected a member 'P'"):
        read_table(tmp_path / "t.npz")
    np.savez(tmp_path / "t.npz", P=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled object array"):
        read_table(tmp_path / "t.npz")


def test_an_unused_npz_member_is_never_decompressed_and_a_large_one_is_capped(tmp_path, monkeypatch):
    P = np.full((4, 2), 0.5)
    np.savez_compressed(tmp_path / "t.npz", P=P, notes=np.zeros(2**25))  # 256 MB declared, unused
    monkeypatch.setattr(config, "NPZ_MEMBER_MAX_BYTES", 2**20)
    assert read_table(tmp_path / "t.npz").P.shape == (4, 2)
    np.savez_compressed(tmp_path / "t.npz", P=np.zeros((2**16, 4)))
    with pytest.raises(ValueError, match="member 'P' would decompress to 2 MiB"):
        read_table(tmp_path / "t.npz")
