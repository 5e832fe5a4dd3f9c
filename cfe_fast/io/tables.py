"""Probability tables in and prediction tables out, for the command line.

Input formats (by suffix):

``.npy``
    One matrix (n_instances, n_classifiers); no labels.
``.npz``
    Member ``P`` (or the only member) is the matrix; optional members named by
    ``label_col`` (0/1, NaN or -1 = unlabeled) and ``id_col``.
``.csv``
    A header row, one column per classifier; optional label column (empty,
    NaN or -1 = unlabeled) and id column (kept as text).
``.parquet``
    Same columns as CSV (needs pyarrow); nulls in the label column are unlabeled.

Every file is read without unpickling anything; a malformed file raises
``ValueError`` naming the file (and the column or line).
"""

import csv
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .atomic import atomic_write
from .._validation import check_labels

SUFFIXES = (".npy", ".npz", ".csv", ".parquet")


class Table(NamedTuple):
    """A probability table read from a file.

    P : (n_instances, n_classifiers) float64; columns : classifier names;
    labels : (n,) float64 with NaN for unlabeled, or None; ids : (n,) array or
    None; id_name : name of the id column (None without ids).
    """

    P: np.ndarray
    columns: list
    labels: np.ndarray | None
    ids: np.ndarray | None
    id_name: str | None


def _suffix(path):
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {SUFFIXES}")
    return suffix


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("Parquet files need pyarrow: pip install 'cfe_fast[parquet]'") from None
    return pq


def _float_column(values, path, column):
    """A float64 column from text or numbers; empty/NaN text is NaN."""
    out = np.empty(len(values))
    for row, value in enumerate(values):
        text = value.strip() if isinstance(value, str) else value
        try:
            out[row] = np.nan if text in ("", None) else float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: column {column!r}, data row {row + 1}: {value!r} is not a number") from None
    return out


def _assemble(path, columns, label_col, id_col):
    """Table from {name: values} in file order."""
    labels = ids = id_name = None
    if label_col in columns:
        values = _float_column(columns.pop(label_col), path, label_col)
        labels = check_labels(values, values.size, f"{path}: {label_col}")
    if id_col in columns:
        ids, id_name = np.asarray(columns.pop(id_col)), id_col
    if not columns:
        raise ValueError(f"{path}: no classifier column (only the label/id columns)")
    P = np.column_stack([_float_column(values, path, name) for name, values in columns.items()])
    return Table(P, list(columns), labels, ids, id_name)


def _read_csv(path, label_col, id_col):
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    if not rows:
        raise ValueError(f"{path}: empty CSV file (a header row is required)")
    header, body = rows[0], rows[1:]
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: duplicate column names in the header {header}")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
    return _assemble(path, {name: [row[j] for row in body] for j, name in enumerate(header)}, label_col, id_col)


def _read_parquet(path, label_col, id_col):
    pq = _pyarrow_parquet()
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid / OSError variants
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    columns = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        columns[name] = values if name == id_col else [np.nan if v is None else v for v in values]
    return _assemble(path, columns, label_col, id_col)


def _read_numpy(path, suffix, label_col, id_col):
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: cannot be read without unpickling ({error})") from None
    except Exception as error:  # truncated or corrupt archives raise zipfile/EOF errors
        raise ValueError(f"{path}: not a readable {suffix} file ({error})") from None
    if suffix == ".npy":
        return Table(data, [f"classifier_{j}" for j in range(np.shape(data)[-1])], None, None, None)
    with data:
        try:
            members = {key: data[key] for key in data.files}
        except ValueError as error:
            raise ValueError(f"{path}: cannot be read without unpickling ({error})") from None
    key = "P" if "P" in members else None
    others = [k for k in members if k not in (label_col, id_col)]
    if key is None and len(others) == 1:
        key = others[0]
    if key is None:
        raise ValueError(f"{path}: expected a member 'P' (the probability matrix); found {sorted(members)}")
    P = members[key]
    labels = members.get(label_col)
    if labels is not None:
        labels = check_labels(labels, np.shape(P)[0], f"{path}: {label_col}")
    ids = members.get(id_col)
    columns = [f"classifier_{j}" for j in range(np.shape(P)[-1])] if np.ndim(P) == 2 else []
    return Table(P, columns, labels, ids, id_col if ids is not None else None)


def read_table(path, label_col="label", id_col="id"):
    """Read a probability table (see the module docstring for the formats).

    The probabilities are not range-checked here: the estimator does that and
    names the argument.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".csv":
        table = _read_csv(path, label_col, id_col)
    elif suffix == ".parquet":
        table = _read_parquet(path, label_col, id_col)
    else:
        table = _read_numpy(path, suffix, label_col, id_col)
    if table.ids is not None and len(table.ids) != len(table.P):
        raise ValueError(f"{path}: {len(table.ids)} ids for {len(table.P)} instances")
    return table


def select_columns(table, names, path):
    """The table's P with columns reordered to ``names`` (the classifiers of a fitted model)."""
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing classifier column(s) {missing[:5]} that the model was fitted on")
    index = [table.columns.index(name) for name in names]
    return np.asarray(table.P)[:, index]


def write_predictions(path, proba, ids=None, id_name=None, *, overwrite=False):
    """Write P(y=1) and the 0/1 prediction per instance as CSV or Parquet (by suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: predictions are written as .csv or .parquet, not {suffix!r}")
    columns = {} if ids is None else {id_name: list(np.asarray(ids).tolist())}
    columns["probability"] = np.asarray(proba, dtype=np.float64)
    columns["prediction"] = (columns["probability"] >= 0.5).astype(np.int64)
    if suffix == ".parquet":
        pq = _pyarrow_parquet()
        import pyarrow as pa

        table = pa.table(columns)
        write = lambda file: pq.write_table(table, file)  # noqa: E731
    else:
        def write(file):
            text = io.TextIOWrapper(file, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(list(columns))
            writer.writerows(
                zip(*[[repr(float(v)) for v in values] if name == "probability" else values
                      for name, values in columns.items()])
            )
            text.flush()
            text.detach()
    atomic_write(path, write, overwrite=overwrite, hint="use --force to overwrite it")
