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


def as_float_array(a, name, ndim, dtype=None):
    """Return ``a`` as a finite floating array with ``ndim`` dimensions.

    Integer and boolean input is converted to float64; complex, object and
    string input is refused. ``dtype`` (float32/float64) forces the result type.
    """
    if scipy.sparse.issparse(a):
        raise TypeError(f"{name} is a sparse matrix; sparse input is not supported: pass a dense array")
    arr = _numeric(as_array(a, name), name)
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.float64
    arr = arr.astype(dtype, copy=False)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):  # NaN propagates: no mask of arr
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_probabilities(R, name="R", dtype=None):
    """Check a probability matrix: finite, 2-D, every entry in [0, 1]."""
    return check_probability_range(as_float_array(R, name, 2, dtype), name)


def check_probability_range(R, name="R"):
    """Check that a finite 2-D float array is non-empty with entries in [0, 1]."""
    if R.size == 0:
        raise ValueError(
            f"{name} is empty: {R.shape[0]} sample(s), {R.shape[1]} feature(s) (shape={R.shape}) "
            "while a minimum of 1 is required."
        )
    lo, hi = R.min(), R.max()
    if lo < 0:
        raise ValueError(f"Negative values in data passed to {name}: it must hold probabilities in [0, 1]; "
                         f"found values in [{lo:g}, {hi:g}]")
    if hi > 1:
        raise ValueError(f"{name} must hold probabilities in [0, 1]; found values in [{lo:g}, {hi:g}]")
    return R


def check_confidence(C, shape, name="C", dtype=None):
    """Check a confidence matrix: finite, non-negative, of the given shape."""
    C = as_float_array(C, name, 2, dtype)
    if C.shape != tuple(shape):
        raise ValueError(f"{name} has shape {C.shape}, expected {tuple(shape)} (the shape of R)")
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
    what, count = ("instance", C.shape[0]) if axis == 0 else ("classifier", C.shape[1])
    if count < latent_dim:
        raise ValueError(
            f"lam=0 with latent_dim={latent_dim} > {count} (the number of terms in each "
            f"{what} system) makes every {what} system singular; use lam > 0"
        )
    empty = ~(C > 0).any(axis=axis)  # also a lazy reduction when C is a dask array
    if empty.any():
        raise ValueError(
            f"lam=0 and {what} {int(np.argmax(empty))} has zero confidence everywhere, so its ridge "
            "system is singular; use lam > 0 or give it non-zero confidence"
        )


def check_labels(labels, n, name="y"):
    """Normalise labels to float64 with NaN for unlabeled.

    Accepts 0/1 for labeled and NaN or -1 (the scikit-learn semi-supervised
    convention) for unlabeled instances; anything else is refused.
    """
    if labels is None:
        raise ValueError(f"this estimator requires y to be passed, but the target {name} is None")
    arr = as_array(labels, name)
    if arr.dtype.kind not in "fiub" and arr.dtype != object:
        raise TypeError(f"{name} must be numeric (0, 1, and NaN or -1 for unlabeled), got dtype {arr.dtype}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"Unknown label type: {name} must hold 0, 1, and NaN or -1 for unlabeled") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected; it is raveled",
            DataConversionWarning,
            stacklevel=3,
        )
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} instances")
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values")
    arr = np.where(arr == -1, np.nan, arr)
    bad = ~np.isnan(arr) & (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])
        kind = "continuous values" if np.any(values != np.round(values)) else (
            "more than two classes (Only binary classification is supported.)"
        )
        raise ValueError(f"{name} must hold 0, 1, or NaN/-1 for unlabeled; found {kind}: {values[:5]}")
    return arr


def check_positive_int(value, name):
    """Check a parameter that must be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
