"""Input checks shared by the functional API, the estimator and the CLI.

Every check raises ``TypeError`` (wrong kind of object or dtype) or
``ValueError`` (wrong values or shapes) naming the offending argument; none
modifies its input.
"""

import numbers
import warnings

import numpy as np
import scipy.sparse
from sklearn.exceptions import DataConversionWarning
from sklearn.preprocessing import LabelEncoder

FLOAT_DTYPES = (np.float32, np.float64)


def as_array(a, name):
    """``np.asarray(a)``, with a ragged nested list refused by name (NumPy's own message names nothing)."""
    try:
        return np.asarray(a)
    except ValueError as error:
        raise ValueError(f"{name} is ragged or not array-like: its rows have different lengths ({error})") from None


def check_real(value, name):
    """Check a scalar that must be a finite real number (not a bool, a string or None)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _numeric(arr, name):
    """A numeric array; an object array is converted to float64 if it holds numbers."""
    if arr.dtype == object:
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must hold real numbers ({error})") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def as_float_array(a, name, ndim, dtype=None, missing=False):
    """Return ``a`` as a finite floating array with ``ndim`` dimensions.

    Integer and boolean input is converted to float64 (pandas' missing values
    become NaN); complex, object and string input is refused. ``dtype``
    (float32/float64) forces the result type. ``missing``: NaN is allowed
    (an unobserved entry); infinite values are refused either way.
    """
    arr = _as_float(a, name, ndim, dtype)
    if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):  # NaN propagates: no mask of arr
        if not missing:
            raise ValueError(f"{name} contains NaN or infinite values")
        _refuse_at(np.isinf(arr), arr, name, "is infinite (a missing entry is NaN or empty)")
    return arr


def _as_float(a, name, ndim, dtype):
    """:func:`as_float_array` without the check of finite values."""
    if scipy.sparse.issparse(a):
        raise TypeError(f"{name} is a sparse matrix; sparse input is not supported here: pass a dense array "
                        "(CFEnsembleClassifier with backend='numba' fits a sparse P)")
    arr = _numeric(_with_nan_for_na(a, name), name)
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.float64
    arr = arr.astype(dtype, copy=False)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    return arr


def _with_nan_for_na(a, name):
    """``a`` as an array; pandas' missing values (pd.NA of the nullable dtypes) become NaN."""
    arr = as_array(a, name)
    if arr.dtype == object and hasattr(a, "to_numpy"):
        try:
            return a.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            pass  # not numbers: refused by _numeric with the dtype's name
    return arr


def _refuse_at(bad, arr, name, why):
    """Raise ValueError naming the first (row, column) where the mask ``bad`` is true, if any."""
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        where = f"row {first[0]}" + (f", column {first[1]}" if arr.ndim == 2 else "")
        raise ValueError(f"{name} at {where} holds {arr[first]:g}, which {why}; "
                         f"{int(np.count_nonzero(bad))} such entries")


def refuse_1d(X, name="X"):
    """Refuse a 1-D X (one instance or one classifier?) with scikit-learn's advice; other shapes pass."""
    if (X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim) == 1:  # no array function: array-likes pass
        raise ValueError(f"Expected 2D array, got 1D array instead: {name} has shape {np.shape(X)}. Reshape your "
                         "data either using array.reshape(-1, 1) if it holds a single classifier or "
                         "array.reshape(1, -1) if it holds a single instance.")
    return X


def check_probabilities(R, name="R", dtype=None, missing=False):
    """Check a probability matrix: finite, 2-D, every entry in [0, 1] (or NaN, unobserved, with ``missing``)."""
    return check_probability_range(as_float_array(R, name, 2, dtype, missing), name)


def check_not_empty(R, name="R"):
    """Check that a 2-D array has at least one row and one column."""
    if R.size == 0:
        raise ValueError(
            f"{name} is empty: {R.shape[0]} sample(s), {R.shape[1]} feature(s) (shape={R.shape}) "
            "while a minimum of 1 is required."
        )
    return R


def check_probability_range(R, name="R"):
    """Check that a 2-D float array without infinite values is non-empty with entries in [0, 1] or NaN (unobserved)."""
    check_not_empty(R, name)
    lo, hi = R.min(), R.max()
    if lo != lo:  # NaN: some entries are unobserved; the range of the others
        lo, hi = _observed_range(R)
    if lo < 0:
        raise ValueError(f"Negative values in data passed to {name}: it must hold probabilities in [0, 1]; "
                         f"found values in [{lo:g}, {hi:g}]{_first_outside(R)}")
    if hi > 1:
        raise ValueError(f"{name} must hold probabilities in [0, 1]; found values in [{lo:g}, {hi:g}]"
                         f"{_first_outside(R)}")
    return R


def _observed_range(R):
    observed = R[~np.isnan(R)]
    return (observed.min(), observed.max()) if observed.size else (0.0, 0.0)


def _first_outside(R):
    """' (first at row i, column j)' of the first entry outside [0, 1]."""
    row, column = np.argwhere((R < 0) | (R > 1))[0]
    return f" (first at row {row}, column {column})"


def check_observed_classifiers(P, names=None, name="X"):
    """Refuse a classifier (column of P) with no observed entry, naming it (by ``names`` when given)."""
    refuse_empty_classifiers(np.isnan(P).all(axis=0), names, name)
    return P


def refuse_empty_classifiers(empty, names=None, name="X"):
    """Refuse the classifiers where the mask ``empty`` (m,) holds (no observed entry), naming the first."""
    if empty.any():
        raise ValueError(f"classifier {classifier_label(int(np.argmax(empty)), names)} of {name} has no observed "
                         f"entry (all NaN, or none stored): it cannot be fitted; drop it ({int(empty.sum())} such "
                         "classifier(s))")


def classifier_label(j, names=None):
    """How a message names classifier (column) j: by its name in ``names`` when given, and its position."""
    return f"{names[j]!r} (column {j})" if names is not None else f"column {j}"


def check_confidence(C, shape, name="C", dtype=None, missing=None):
    """Check a confidence matrix: finite, non-negative, of the given shape.

    ``missing`` (a mask of that shape, or None): the unobserved entries,
    where C is 0 whatever it holds (any value, NaN included, is ignored there).
    """
    C = as_float_array(C, name, 2, dtype) if missing is None else _as_float(C, name, 2, dtype)
    if C.shape != tuple(shape):
        raise ValueError(f"{name} has shape {C.shape}, expected {tuple(shape)} (the shape of R)")
    if missing is not None:
        with np.errstate(invalid="ignore"):
            C = np.where(missing, np.zeros((), C.dtype), C)
        if C.size and not (np.isfinite(C.min()) and np.isfinite(C.max())):
            _refuse_at(~np.isfinite(C), C, name, "is not finite at an observed entry")
    if C.size and C.min() < 0:
        raise ValueError(f"{name} must be non-negative; found minimum {C.min():g}")
    return C


def check_lam(lam):
    """Check the ridge penalty: a finite real number >= 0."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not np.isfinite(lam):
        raise TypeError(f"lam must be a finite real number, got {lam!r}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    return float(lam)


def check_solvable(C, lam, latent_dim, axis):
    """Refuse ridge systems that are singular by construction (``lam == 0``).

    ``axis=0`` checks the instance systems (one per column of C, size
    ``latent_dim``), ``axis=1`` the classifier systems (one per row).
    """
    if lam > 0:
        return
    if scipy.sparse.issparse(C):  # stored confidences: an unstored entry is 0
        positive = np.asarray((C > 0).sum(axis=axis)).ravel()
    else:
        positive = (C > 0).any(axis=axis)  # also a lazy reduction when C is a dask array
    check_solvable_counts(positive, C.shape[axis], lam, latent_dim, axis)


def check_solvable_counts(positive, terms, lam, latent_dim, axis):
    """:func:`check_solvable` from the counts (or any) of positive confidences of every system, ``positive``
    (None: every confidence is 1, C None in the backend contract), and the number of ``terms`` in each (m for
    the instance systems, ``axis=0``; n for the classifier ones)."""
    if lam > 0:
        return
    what = "instance" if axis == 0 else "classifier"
    if terms < latent_dim:
        raise ValueError(
            f"lam=0 with latent_dim={latent_dim} > {terms} (the number of terms in each "
            f"{what} system) makes every {what} system singular; use lam > 0"
        )
    if positive is None:
        return
    empty = np.asarray(positive) == 0
    if empty.any():
        raise ValueError(
            f"lam=0 and {what} {int(np.argmax(empty))} has zero confidence everywhere, so its ridge "
            "system is singular; use lam > 0 or give it non-zero confidence"
        )


def _column(values, n, name):
    """``values`` as a 1-D array of n entries (any number for n=None; a column vector is raveled with a warning)."""
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected; it is raveled",
            DataConversionWarning,
            stacklevel=4,
        )
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} instances")
    return arr


def check_labels(labels, n, name="y"):
    """Normalise 0/1 labels to float64 with NaN for unlabeled.

    Accepts 0/1 for labeled and NaN or -1 (the scikit-learn semi-supervised
    convention) for unlabeled instances; anything else is refused. Labels of
    any other kind are encoded to this form by :func:`encode_labels`.
    """
    if labels is None:
        raise ValueError(f"this estimator requires y to be passed, but the target {name} is None")
    arr = as_array(labels, name)
    if arr.dtype.kind not in "fiub" and arr.dtype != object:
        raise TypeError(f"{name} must be numeric (0, 1, and NaN or -1 for unlabeled), got dtype {arr.dtype}")
    try:
        arr = arr.astype(np.float64, copy=False)  # the caller's codes are not copied (they live through a fit)
    except (TypeError, ValueError):
        raise TypeError(f"Unknown label type: {name} must hold 0, 1, and NaN or -1 for unlabeled") from None
    arr = _column(arr, n, name)
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values")
    if (arr == -1).any():
        arr = np.where(arr == -1, np.nan, arr)
    bad = ~np.isnan(arr) & (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])
        kind = "continuous values" if np.any(values != np.round(values)) else (
            "more than two classes (Only binary classification is supported.)"
        )
        raise ValueError(f"{name} must hold 0, 1, or NaN/-1 for unlabeled; found {kind}: {values[:5]}")
    return arr


#: the ``unlabeled`` value that marks NaN and None, and -1 among numeric labels, as unlabeled
AUTO_UNLABELED = "auto"


def _label_values(y, name):
    """y as a NumPy array (a ragged list refused by name); pandas' missing values (NA, NaN, NaT) become None."""
    arr = as_array(y, name)
    if arr.dtype == object and hasattr(y, "to_numpy"):  # a pandas Series of a nullable or categorical dtype
        arr = y.to_numpy(dtype=object, na_value=None)
    return arr


def _is_missing(value):
    return value is None or (isinstance(value, (float, np.floating)) and value != value)


def _show_labels(values, limit=5):
    """Up to ``limit`` distinct values for a message."""
    shown = list(dict.fromkeys(values.tolist()))
    return f"{shown[:limit]}{' ...' if len(shown) > limit else ''}"


def _matches(arr, value):
    """Where the entries of ``arr`` equal the scalar ``value`` (never across numbers and text)."""
    number = isinstance(value, (numbers.Number, np.bool_))
    if arr.dtype.kind in "biuf":
        return arr == value if number else np.zeros(arr.shape, bool)
    if arr.dtype.kind in "US":
        return arr == value if isinstance(value, str) else np.zeros(arr.shape, bool)
    return np.fromiter((v == value for v in arr.ravel()), bool, arr.size).reshape(arr.shape)


def unlabeled_mask(y, unlabeled=AUTO_UNLABELED, name="y"):
    """(labels, mask): y as an array of one kind of label, and where it marks an unlabeled instance.

    Unlabeled are NaN and None, and: -1 among numeric labels when
    ``unlabeled="auto"``; the value ``unlabeled`` otherwise (None: NaN and
    None only, so that -1 can be a class). An object array of numbers
    becomes a numeric array (its unlabeled entries then hold a labeled value).
    """
    if y is None:
        raise ValueError(f"this estimator requires y to be passed, but the target {name} is None")
    arr = _label_values(y, name)
    if arr.dtype.kind not in "biufUSO":
        raise TypeError(f"Unknown label type: {name} must hold class labels (numbers, strings or booleans), "
                        f"got dtype {arr.dtype}")
    if arr.dtype == object:
        missing = np.fromiter((_is_missing(v) for v in arr.ravel()), bool, arr.size).reshape(arr.shape)
        labeled = arr[~missing]
        is_number = [isinstance(v, (numbers.Number, np.bool_)) for v in labeled]
        if labeled.size and all(is_number):  # a numeric array of the labels' own type (bool, int or float)
            arr = np.asarray(np.where(missing, labeled[0], arr).tolist())
        elif any(is_number):
            raise TypeError(f"Unknown label type: {name} mixes numbers and other labels, e.g. "
                            f"{_show_labels(labeled)}; use one kind of label")
    else:
        missing = np.isnan(arr) if arr.dtype.kind == "f" else np.zeros(arr.shape, bool)
    if isinstance(unlabeled, str) and unlabeled == AUTO_UNLABELED:
        if arr.dtype.kind in "iuf":
            missing = missing | (arr == -1)
    elif unlabeled is not None:
        missing = missing | _matches(arr, unlabeled)
    return arr, missing


def encode_labels(y, n=None, unlabeled=AUTO_UNLABELED, name="y", max_classes=2):
    """(classes, codes): the sorted classes of the labeled instances, and y as their indices.

    Labels are anything :class:`sklearn.preprocessing.LabelEncoder` accepts
    (numbers, strings, booleans); unlabeled instances are marked as
    :func:`unlabeled_mask` says. ``codes`` is float64 (n,): the index of each
    label in ``classes``, NaN where unlabeled. ``n``: the number of instances
    (None: any; the caller checks it). ``max_classes``: the most classes
    allowed (None: any number).

    Raises
    ------
    TypeError
        Labels of mixed or unknown kind.
    ValueError
        Continuous values, more than ``max_classes`` classes, infinite values or a wrong
        shape; the message names the offending values.
    """
    arr, missing = unlabeled_mask(y, unlabeled, name)
    arr = _column(arr, n, name)
    missing = missing.reshape(arr.shape)
    values = arr[~missing]
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ValueError(f"{name} contains infinite values")
        fractional = values[values != np.round(values)]
        if fractional.size:
            raise ValueError(f"Unknown label type: continuous. {name} must hold class labels; found continuous "
                             f"values {_show_labels(fractional)}")
    encoder = LabelEncoder()
    try:
        codes = encoder.fit_transform(values)
    except TypeError as error:
        raise TypeError(f"Unknown label type: {name} holds labels of mixed kinds ({error})") from None
    if max_classes is not None and encoder.classes_.size > max_classes:
        raise ValueError(f"{name} has {encoder.classes_.size} classes {_show_labels(encoder.classes_, 10)} "
                         f"besides the unlabeled ones: at most {max_classes} are supported here.")
    auto = isinstance(unlabeled, str) and unlabeled == AUTO_UNLABELED
    if encoder.classes_.size == 1 and auto and arr.dtype.kind in "iuf" and (arr == -1).any():
        raise ValueError(f"{name} has labeled instances of one class only ({encoder.classes_.tolist()[0]!r}) "
                         "besides -1, which marks unlabeled instances by default; pass unlabeled=None "
                         "if -1 is a class")
    full = np.full(arr.shape[0], np.nan)
    full[~missing] = codes
    return encoder.classes_, full


def check_sample_weight(sample_weight, n, labeled, name="sample_weight"):
    """The weights (n_labeled,) of the ``labeled`` instances (a mask over n), checked finite and non-negative
    over all n; None gives ones."""
    if sample_weight is None:
        return np.ones(int(np.count_nonzero(labeled)))
    weights = as_float_array(sample_weight, name, 1, np.float64)
    if weights.shape[0] != n:
        raise ValueError(f"{name} has {weights.shape[0]} entries but there are {n} instances")
    if weights.size and weights.min() < 0:
        rows = np.flatnonzero(weights < 0)
        raise ValueError(f"{name} must be non-negative; found {weights[rows[0]]:g} at row {rows[0]} "
                         f"({rows.size} negative)")
    return weights[labeled]


def check_positive_int(value, name):
    """Check a parameter that must be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
