"""Probability tables in and prediction tables out, for the command line.

Input formats (by suffix):

``.npy``
    One matrix (n_instances, n_classifiers); no labels.
``.npz``
    Member ``P`` (or the only member) is the matrix; optional members named by
    ``label_col`` (classes; NaN or -1 = unlabeled) and ``id_col``. Members are
    checked from their headers before they are decompressed (:mod:`.npz`).
    A sparse matrix instead of ``P``: the members ``scipy.sparse.save_npz``
    writes (``format`` "csr", "csc" or "coo", ``shape``, ``data`` and
    ``indices``/``indptr``, or ``row``/``col``), its stored entries the
    observed ones (:func:`read_sparse_matrix`), with the same label and id
    members beside them; it is read as a ``scipy.sparse.csr_array``.
``.csv``
    A header row, one column per classifier; optional label column (empty,
    NaN or -1 = unlabeled) and id column (kept as text). Read by pyarrow,
    column by column and typed; a UTF-8 byte-order mark is dropped.
``.parquet``
    Same columns as CSV; nulls in the label column are unlabeled.

An empty cell (CSV), a null (Parquet) or NaN in a classifier column is an
entry that classifier did not score (not observed).

A label or id column named by the caller must be there; without a name,
``label`` and ``id`` are used when present, and a classifier column whose
name looks like a label (:data:`LABEL_LIKE`) draws a warning. Every other
probability must be a number in [0, 1]: a non-numeric, infinite or
out-of-range cell is an error naming the file, the column and the data row.
Nothing is unpickled.

Labels are classes of any kind (text, numbers, booleans; :func:`label_values`):
an empty cell, a null or NaN is unlabeled, and so is -1 among numbers or the
value ``read_table``'s ``unlabeled`` names. With more than two classes the
classifier columns are named by classifier and class (:func:`stacking_columns`).
Predictions (:func:`write_predictions`) hold the class probabilities and the
predicted class.
"""

import csv
import io
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import config
from .atomic import atomic_write
from .npz import NpzReader
from .._validation import AUTO_UNLABELED, encode_labels

SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
DEFAULT_LABEL, DEFAULT_ID = "label", "id"
#: column names (any case) that suggest a label when they are read as a classifier
LABEL_LIKE = ("label", "labels", "target", "y", "class", "truth", "outcome")


class Table(NamedTuple):
    """A probability table read from a file.

    P : (n_instances, n_classifiers) float64 (a ``scipy.sparse.csr_array``, stored entries = observed, for a
    sparse ``.npz``); columns : classifier names;
    labels : (n,) array of the labels as read (:func:`label_values`: NaN or
    None where a cell is empty or marked by ``read_table``'s ``unlabeled``), or None;
    ids : (n,) array or None; id_name : name of the id column (None without
    ids); classes : the sorted classes of the labeled rows and codes : (n,)
    float64, each row's index in ``classes``, NaN where unlabeled (both
    None without labels).
    """

    P: np.ndarray
    columns: list
    labels: np.ndarray | None
    ids: np.ndarray | None
    id_name: str | None
    classes: np.ndarray | None = None
    codes: np.ndarray | None = None


def _suffix(path):
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {SUFFIXES}")
    return suffix


def _pyarrow():
    try:
        import pyarrow
    except ImportError:
        raise ImportError("CSV and Parquet files need pyarrow: pip install pyarrow") from None
    return pyarrow


# ------------------------------------------------------------ the columns
def _pick(path, names, wanted, default, what):
    """The column or member to use as label / id: ``wanted`` must exist; the default is used when present."""
    if wanted is None:
        return default if default in names else None
    if wanted not in names:
        raise ValueError(f"{path}: no {what} column {wanted!r}; the columns are {list(names)[:20]}")
    return wanted


def _warn_label_like(path, columns, labels_found):
    suspicious = [name for name in columns if str(name).strip().lower() in LABEL_LIKE]
    if suspicious:
        warnings.warn(f"{path}: column(s) {suspicious} look like a label but are read as classifiers; "
                      "name the label column (--label-col) if one of them is it", UserWarning, stacklevel=4)
    elif not labels_found:
        binary = [name for name, values in columns.items() if values.size and np.isin(values, (0.0, 1.0)).all()]
        if binary:
            warnings.warn(f"{path}: no label column, and classifier column(s) {binary[:5]} hold only 0 and 1; "
                          "name the label column (--label-col) if one of them is it", UserWarning, stacklevel=4)


def _bad_cell(path, name, rows, values, why):
    row = int(rows[0])
    return ValueError(f"{path}: column {name!r}, data row {row + 1}: {values[row]!r} {why}")


def _check_probabilities(path, name, values):
    """``values`` of classifier column ``name``: every entry a probability or NaN (not observed), or an error
    naming the row."""
    bad = np.flatnonzero(~((values >= 0) & (values <= 1)) & ~np.isnan(values))
    if bad.size:
        raise _bad_cell(path, name, bad, values.tolist(), "is not a probability in [0, 1]")
    return values


def _numbers(path, name, column):
    """A pyarrow column as float64 (nulls are NaN), or an error naming the first cell that is not a number."""
    pa = _pyarrow()
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
            or pa.types.is_null(kind) or pa.types.is_decimal(kind):
        return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    cells = column.to_pylist()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = np.empty(len(cells))
        for row, cell in enumerate(cells):
            try:
                values[row] = np.nan if cell is None or not cell.strip() else float(cell)
            except ValueError:
                raise _bad_cell(path, name, [row], cells, "is not a number") from None
        return values
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        row = next(row for row, cell in enumerate(cells) if cell is not None)
        raise _bad_cell(path, name, [row], cells, "is not UTF-8 text")
    raise ValueError(f"{path}: column {name!r} holds {kind} values, not numbers")


def class_text(value):
    """How a class is written in a table: an integral number without ".0", anything else as ``str``."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _blank(cell):
    return cell is None or (isinstance(cell, float) and cell != cell) or (isinstance(cell, str) and not cell.strip())


def label_values(values, unlabeled=None, name="labels"):
    """Labels as read from a column or member: numbers as float64 (NaN where a cell is empty), anything else
    (text, booleans) as an object array (None where a cell is empty); a cell that says ``unlabeled`` (as
    written, :func:`class_text`) is empty too. Numbers written as text are numbers.

    Raises
    ------
    ValueError
        Text that mixes numbers and words, naming both.
    """
    values = np.asarray(values)
    if values.dtype.kind in "iuf":
        values = values.astype(np.float64)
        if unlabeled is not None:
            values[[class_text(value) == unlabeled for value in values.tolist()]] = np.nan
        return values
    cells = [None if _blank(cell) or (unlabeled is not None and class_text(cell) == unlabeled) else cell
             for cell in values.tolist()]
    text = [cell for cell in cells if isinstance(cell, str)]
    numbers = [cell for cell in text if _is_number(cell)]
    if numbers and len(numbers) < len(text):
        words = list(dict.fromkeys(cell for cell in text if not _is_number(cell)))
        raise ValueError(f"{name} mixes numbers ({numbers[0]!r}) and text ({words[:5]}); use one kind of label")
    if numbers:
        return np.array([np.nan if cell is None else float(cell) for cell in cells])
    return np.array(cells, dtype=object)


def _arrow_labels(path, name, column, unlabeled):
    """The labels of a pyarrow column (:func:`label_values`)."""
    pa = _pyarrow()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
        values = np.array(column.to_pylist(), dtype=object)
    else:
        values = _numbers(path, name, column)
    return label_values(values, unlabeled, f"{path}: label column {name!r}")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _labels(path, name, read, n, ignore_bad, unlabeled):
    """(labels, classes, codes) from ``read()`` (:func:`label_values`), checked (see :class:`Table`); three
    None with a warning when ``ignore_bad`` and they are not labels.

    ``unlabeled``: the text of a label that marks unlabeled rows, or None: NaN and empty cells, and -1 among
    numeric labels.
    """
    try:
        labels = read()
        classes, codes = encode_labels(labels, n, AUTO_UNLABELED if unlabeled is None else None,
                                       f"{path}: label column {name!r}", max_classes=None)
        return labels, classes, codes
    except (TypeError, ValueError) as error:
        if not ignore_bad:
            raise
        warnings.warn(f"{error}; the label column is ignored", UserWarning, stacklevel=4)
        return None, None, None


def _from_arrow(path, table, label_col, id_col, ignore_bad_labels, unlabeled):
    """Table from a pyarrow table (CSV or Parquet)."""
    names = table.column_names
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate column name(s) {duplicates}")
    label = _pick(path, names, label_col, DEFAULT_LABEL, "label")
    ident = _pick(path, names, id_col, DEFAULT_ID, "id")
    if table.num_rows == 0:
        raise ValueError(f"{path}: no data rows (only the header)")
    labels, classes, codes = (None, None, None) if label is None else _labels(
        path, label, lambda: _arrow_labels(path, label, table.column(label), unlabeled), table.num_rows,
        ignore_bad_labels, unlabeled)
    ids = None if ident is None else np.asarray(table.column(ident).to_numpy(zero_copy_only=False))
    columns = {name: _check_probabilities(path, name, _numbers(path, name, table.column(name)))
               for name in names if name not in (label, ident)}
    if not columns:
        raise ValueError(f"{path}: no classifier column (only the label/id columns)")
    _warn_label_like(path, columns, label is not None)
    return Table(np.column_stack(list(columns.values())), list(columns), labels, ids, ident, classes, codes)


def _read_csv(path, label_col, id_col, ignore_bad_labels, unlabeled):
    pa = _pyarrow()
    from pyarrow import csv as arrow_csv

    with open(path, "rb") as file:
        header = file.readline()
    try:
        header.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: the header is not UTF-8 text ({error})") from None
    text_columns = {id_col or DEFAULT_ID: pa.string()}  # ids stay text ("007" is not 7)

    def read(threads):
        return arrow_csv.read_csv(path, read_options=arrow_csv.ReadOptions(use_threads=threads),
                                  convert_options=arrow_csv.ConvertOptions(column_types=text_columns))

    try:
        try:
            table = read(True)
        except pa.ArrowInvalid:
            table = read(False)  # reads again on one thread, whose errors name the row
    except pa.ArrowInvalid as error:
        raise ValueError(f"{path}: not a readable CSV file ({error})") from None
    return _from_arrow(path, table, label_col, id_col, ignore_bad_labels, unlabeled)


def _read_parquet(path, label_col, id_col, ignore_bad_labels, unlabeled):
    pa = _pyarrow()
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    return _from_arrow(path, table, label_col, id_col, ignore_bad_labels, unlabeled)


def _matrix(path, P, what):
    """P as a checked float64 matrix (NaN: not observed); an entry that is not a probability is named by row
    and column."""
    if P.ndim != 2 or P.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {what} must be a 2-D numeric matrix (instances x classifiers), "
                         f"got shape {P.shape} and dtype {P.dtype}")
    P = P.astype(np.float64, copy=False)
    bad = np.argwhere(~((P >= 0) & (P <= 1)) & ~np.isnan(P))
    if bad.size:
        row, column = bad[0]
        raise ValueError(f"{path}: {what}, row {row + 1}, column {column + 1} (classifier_{column}): "
                         f"{float(P[row, column])!r} is not a probability in [0, 1]")
    return P


def _read_npy(path):
    try:
        P = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: cannot be read without unpickling ({error})") from None
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy file ({error})") from None
    P = _matrix(path, np.asarray(P), "the matrix")
    return Table(P, [f"classifier_{j}" for j in range(P.shape[1])], None, None, None)


#: the members of a sparse matrix of each format, as ``scipy.sparse.save_npz`` writes them (besides
#: ``format`` and ``shape``; ``_is_array``, which it adds for a sparse array, is ignored)
SPARSE_MEMBERS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
                  "coo": ("data", "row", "col")}
_SPARSE_OWN = ("format", "shape", "_is_array")


def _sparse_member(path, reader, name, kinds, what, ndim=1):
    """Member ``name`` of a sparse matrix: an ``ndim``-D array of a dtype kind in ``kinds``, or an error naming it."""
    array = reader.read(name)
    if array.ndim != ndim or array.dtype.kind not in kinds:
        raise ValueError(f"{path}: member {name!r} of the sparse matrix must be a {ndim}-D array of {what}, "
                         f"got shape {array.shape} and dtype {array.dtype}")
    return array


def _sparse_indices(path, name, index, bound, axis):
    """``index`` (one per stored entry), each in [0, ``bound``), or an error naming the member and the entry."""
    bad = np.flatnonzero((index < 0) | (index >= bound))
    if bad.size:
        raise ValueError(f"{path}: member {name!r}, stored entry {bad[0]}: {axis} {int(index[bad[0]])} is outside "
                         f"the {bound} {axis}s of member 'shape'; {bad.size} such entries")
    return index


def read_sparse_matrix(path, reader, members):
    """The sparse probability matrix of an open :class:`~.npz.NpzReader` as a ``scipy.sparse.csr_array``
    (float64), every member checked before the matrix is built; ``members``: the names of the file's
    members that are not a label or id, which must all be the matrix's.

    The members are those ``scipy.sparse.save_npz`` writes (:data:`SPARSE_MEMBERS`): ``format`` ("csr",
    "csc" or "coo"), ``shape`` (n_instances, n_classifiers) and the format's arrays. The indices must lie
    within ``shape``, the pointers of CSR/CSC must start at 0, never decrease and end at the number of
    stored entries, and each stored value must be a probability in [0, 1] or NaN (unobserved); every
    error names the file and the member (and the row and column of a value). Duplicate entries are
    summed, as scipy does.

    Raises
    ------
    ValueError
        A member missing, of the wrong shape or dtype, or holding values outside its range.
    """
    import scipy.sparse

    form = _sparse_member(path, reader, "format", "SU", "text ('csr', 'csc' or 'coo')", ndim=0)
    form = form.item().decode("ascii", "replace") if form.dtype.kind == "S" else form.item()
    if form not in SPARSE_MEMBERS:
        raise ValueError(f"{path}: member 'format' says {form!r}; a sparse matrix is read in format 'csr', "
                         "'csc' or 'coo' (convert it with .tocsr() before scipy.sparse.save_npz)")
    missing = [name for name in ("shape", *SPARSE_MEMBERS[form]) if name not in members]
    if missing:
        raise ValueError(f"{path}: a sparse matrix in format {form!r} needs the member(s) {missing}; it holds "
                         f"{reader.names}")
    unknown = [name for name in members if name not in (*_SPARSE_OWN, *SPARSE_MEMBERS[form])]
    if unknown:
        raise ValueError(f"{path}: member(s) {unknown} are neither the sparse matrix's {list(SPARSE_MEMBERS[form])} "
                         "nor a label or id (name those with --label-col / --id-col)")
    shape = _sparse_member(path, reader, "shape", "iu", "2 integers (n_instances, n_classifiers)")
    if shape.size != 2 or not (shape > 0).all():
        raise ValueError(f"{path}: member 'shape' must hold 2 positive integers (n_instances, n_classifiers), "
                         f"got {shape.tolist()}")
    n, m = (int(v) for v in shape)
    largest = config.NPZ_MEMBER_MAX_BYTES // 8
    if max(n, m) > largest:  # the pointers of a CSR or CSC matrix of that shape would exceed a member's limit
        raise ValueError(f"{path}: member 'shape' declares {n} x {m}; a sparse matrix is read with at most "
                         f"{largest} rows and columns (cfe_fast.config.NPZ_MEMBER_MAX_BYTES / 8)")
    data = _sparse_member(path, reader, "data", "biuf", "numbers (the stored probabilities)").astype(np.float64)
    first, second = SPARSE_MEMBERS[form][1:]
    index = {name: _sparse_member(path, reader, name, "iu", "integers") for name in (first, second)}
    lengths = {"data": data.size, **({first: index[first].size} if form != "coo" else
                                     {name: index[name].size for name in (first, second)})}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: the members {list(lengths)} hold one value per stored entry, but their "
                         f"lengths differ: {lengths}")
    if form == "coo":
        rows = _sparse_indices(path, "row", index["row"], n, "row")
        columns = _sparse_indices(path, "col", index["col"], m, "column")
    else:
        major, minor = (n, m) if form == "csr" else (m, n)
        pointers = index["indptr"]
        if pointers.size != major + 1 or pointers[0] != 0 or pointers[-1] != data.size \
                or (np.diff(pointers.astype(np.int64)) < 0).any():
            lines = "rows" if form == "csr" else "columns"
            raise ValueError(f"{path}: member 'indptr' must hold {major + 1} pointers ({lines} of member 'shape' + 1) "
                             f"that start at 0, never decrease and end at the {data.size} "
                             f"stored entries; got {pointers.size} from {int(pointers[0]) if pointers.size else None} "
                             f"to {int(pointers[-1]) if pointers.size else None}")
        minors = _sparse_indices(path, "indices", index["indices"], minor, "column" if form == "csr" else "row")
        majors = np.repeat(np.arange(major), np.diff(pointers.astype(np.int64)))
        rows, columns = (majors, minors) if form == "csr" else (minors, majors)
    bad = np.flatnonzero(~((data >= 0) & (data <= 1)) & ~np.isnan(data))
    if bad.size:
        row, column = int(rows[bad[0]]), int(columns[bad[0]])
        raise ValueError(f"{path}: member 'data', row {row + 1}, column {column + 1} (classifier_{column}): "
                         f"{float(data[bad[0]])!r} is not a probability in [0, 1]; {bad.size} such entries")
    if form == "csr":
        return scipy.sparse.csr_array((data, index["indices"], index["indptr"]), shape=(n, m))
    if form == "csc":
        return scipy.sparse.csc_array((data, index["indices"], index["indptr"]), shape=(n, m)).tocsr()
    return scipy.sparse.coo_array((data, (rows, columns)), shape=(n, m)).tocsr()


def _read_npz(path, label_col, id_col, ignore_bad_labels, unlabeled):
    with NpzReader(path) as reader:
        names = reader.names
        label = _pick(path, names, label_col, DEFAULT_LABEL, "label")
        ident = _pick(path, names, id_col, DEFAULT_ID, "id")
        others = [name for name in names if name not in (label, ident)]
        if "P" not in names and "format" in names:  # a matrix of scipy.sparse.save_npz
            P = read_sparse_matrix(path, reader, others)
        else:
            key = "P" if "P" in names else others[0] if len(others) == 1 else None
            if key is None:
                raise ValueError(f"{path}: expected a member 'P' (the probability matrix), or the members of a "
                                 f"sparse matrix of scipy.sparse.save_npz; found {sorted(names)}")
            P = _matrix(path, reader.read(key), f"member {key!r}")
        labels, classes, codes = (None, None, None) if label is None else _labels(
            path, label, lambda: label_values(reader.read(label), unlabeled, f"{path}: label member {label!r}"),
            P.shape[0], ignore_bad_labels, unlabeled)
        ids = None if ident is None else reader.read(ident)
    if ids is not None and ids.ndim != 1:
        raise ValueError(f"{path}: id member {ident!r} must be 1-D, got shape {ids.shape}")
    return Table(P, [f"classifier_{j}" for j in range(P.shape[1])], labels, ids, ident, classes, codes)


def read_table(path, label_col=None, id_col=None, *, ignore_bad_labels=False, unlabeled=None):
    """Read a probability table (see the module docstring for the formats).

    Parameters
    ----------
    path : str or Path
    label_col, id_col : str or None
        The label and id column (or ``.npz`` member); a name given must be
        there. None: ``"label"`` and ``"id"`` where present.
    ignore_bad_labels : bool, default=False
        A label column that does not hold labels is ignored with a warning
        instead of being an error (prediction, which does not need labels).
    unlabeled : str or None, default=None
        The label (as written, :func:`class_text`) that marks unlabeled rows,
        besides empty cells and NaN. None: empty cells and NaN, and -1 among
        numeric labels.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".csv":
        table = _read_csv(path, label_col, id_col, ignore_bad_labels, unlabeled)
    elif suffix == ".parquet":
        table = _read_parquet(path, label_col, id_col, ignore_bad_labels, unlabeled)
    elif suffix == ".npz":
        table = _read_npz(path, label_col, id_col, ignore_bad_labels, unlabeled)
    else:
        if label_col is not None or id_col is not None:
            raise ValueError(f"{path}: a .npy file holds the matrix only; it has no label or id column")
        table = _read_npy(path)
    if table.ids is not None and len(table.ids) != table.P.shape[0]:
        raise ValueError(f"{path}: {len(table.ids)} ids for {table.P.shape[0]} instances")
    return table


def select_columns(table, names, path):
    """The table's P with columns reordered to ``names`` (the classifiers of a fitted model)."""
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing classifier column(s) {missing[:5]} that the model was fitted on")
    index = [table.columns.index(name) for name in names]
    return np.asarray(table.P)[:, index]


def stacking_columns(table, path):
    """The table with its classifier columns in StackingClassifier's layout, for K >= 3 ``table.classes``.

    Each classifier column's name ends with its class as written
    (:func:`class_text`), e.g. ``rf_cat``, ``rf_dog``, ``rf_emu``
    (StackingClassifier's own names, ``..._rf0``, ``..._rf1``, ``..._rf2``,
    where the classes are 0, 1, 2); the rest of the name is the classifier.
    Columns may come in any order; the result holds each classifier's columns
    together (classifiers in order of first appearance), its classes in
    ``table.classes`` order. A column without a class at its end, or a
    classifier without a column of every class, is an error naming them.
    """
    texts = [class_text(value) for value in table.classes]
    columns = {}
    for j, name in enumerate(table.columns):
        name = str(name)
        ends = [text for text in texts if name.endswith(text) and len(name) > len(text)]
        if not ends:
            raise ValueError(f"{path}: column {name!r} does not end with one of the {len(texts)} classes {texts} of "
                             f"the label column: with more than two classes each classifier column is named by "
                             f"its classifier and class, e.g. 'rf_{texts[0]}', 'rf_{texts[1]}', ... (any order)")
        text = max(ends, key=len)  # classes 1 and 11: 'rf11' is rf's column of class 11
        columns.setdefault(name[: -len(text)], {})[text] = j
    for classifier, found in columns.items():
        missing = [text for text in texts if text not in found]
        if missing:
            raise ValueError(f"{path}: classifier {classifier!r} has no column of class(es) {missing} (its columns: "
                             f"{[table.columns[j] for j in found.values()]}); every classifier needs one column "
                             "per class")
    order = [found[text] for found in columns.values() for text in texts]
    return table._replace(P=table.P[:, order], columns=[table.columns[j] for j in order])


def _class_array(classes):
    """The classes as the values of a prediction column: integral numbers as integers."""
    classes = np.asarray(classes)
    if classes.dtype.kind == "f" and (classes == np.round(classes)).all():
        return classes.astype(np.int64)
    return classes


def write_predictions(path, proba, classes, ids=None, id_name=None, *, threshold=0.5, overwrite=False):
    """Write the class probabilities and the predicted class per instance as CSV or Parquet (by suffix), atomically.

    ``proba``: (n,), the probability of ``classes[1]`` of a two-class model,
    written as ``probability``, the prediction being ``classes[1]`` where
    it is >= ``threshold``; or (n, K), written as one column
    ``probability_<class>`` per class, the prediction being the most probable class.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: predictions are written as .csv or .parquet, not {suffix!r}")
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:
        probabilities = {"probability": proba}
        picked = (proba >= threshold).astype(np.intp)
    else:
        probabilities = {f"probability_{class_text(value)}": proba[:, k] for k, value in enumerate(classes)}
        picked = np.argmax(proba, axis=1)
    if id_name in probabilities or id_name == "prediction":
        raise ValueError(f"{path}: the id column {id_name!r} has the name of a prediction column")
    columns = {} if ids is None else {id_name: list(np.asarray(ids).tolist())}
    columns.update(probabilities)
    columns["prediction"] = _class_array(classes)[picked]
    if suffix == ".parquet":
        pa = _pyarrow()
        import pyarrow.parquet as pq

        table = pa.table({name: list(values.tolist()) if name == "prediction" else values
                          for name, values in columns.items()})
        write = lambda file: pq.write_table(table, file)  # noqa: E731
    else:
        cells = {name: [repr(float(v)) for v in values] if name in probabilities else
                 [class_text(v) for v in values.tolist()] if name == "prediction" else values
                 for name, values in columns.items()}

        def write(file):
            text = io.TextIOWrapper(file, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(list(cells))
            writer.writerows(zip(*cells.values()))
            text.flush()
            text.detach()
    atomic_write(path, write, overwrite=overwrite, hint="use --force to overwrite it")
