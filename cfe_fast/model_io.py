"""Model files that cannot run code: the ``.npz`` + JSON format of cfe_fast.

Format (``format_version`` 1)
-----------------------------
A model file is a NumPy ``.npz`` archive written with ``allow_pickle=False``
and read back with ``allow_pickle=False``, so loading it can never execute
code. It holds:

``__metadata__``
    A 0-d unicode array with a JSON object: ``format`` ("cfe_fast.model", or
    "cfe_fast.checkpoint" for the checkpoints of :mod:`cfe_fast.checkpoint`),
    ``format_version``, ``package_version`` (the cfe_fast that wrote it),
    ``estimator`` (class name), ``params`` (every ``get_params()`` value; an
    array parameter such as a user confidence matrix appears as
    ``{"__array__": member}``), ``attributes`` (fitted scalars, e.g.
    ``intercept_``, ``n_iter_``, ``aggregator_``), ``arrays`` (the member names
    of the fitted array attributes) and ``history`` (key order and, per key,
    whether its entries are scalars or vectors).
``param/<name>``, ``attr/<name>``, ``history/<key>``
    The arrays: array parameters, fitted array attributes, and one array per
    ``history_`` key (one row per iteration).

Loading checks the format name and version, refuses pickled (object) members,
unknown members, unknown parameters, and missing or inconsistent fitted
arrays, and reports a truncated or corrupt archive as such; every refusal is a
:class:`ModelFileError` naming the file.
"""

import json
import numbers
import warnings
import zipfile
import zlib

import numpy as np

from ._fileio import atomic_write

FORMAT_VERSION = 1
MODEL_FORMAT = "cfe_fast.model"
METADATA_KEY = "__metadata__"

#: Fitted arrays that predict_proba needs: name -> (ndim, shape in terms of m, d, n).
_REQUIRED_ARRAYS = {
    "classifier_factors_": ("d", "m"),
    "coef_": ("m",),
    "classes_": (2,),
}
_OPTIONAL_ARRAYS = {
    "instance_factors_": ("d", "n"),
    "transductive_proba_": ("n",),
    "classifier_quality_": ("m",),
}
_REQUIRED_SCALARS = ("intercept_", "n_features_in_", "latent_dim_", "aggregator_")


class ModelFileError(ValueError):
    """A model or checkpoint file is not a valid, compatible cfe_fast file."""


def _package_version():
    from . import __version__

    return __version__


# ----------------------------------------------------------------- writing
def _json_scalar(value, what):
    """A JSON-safe Python scalar, or TypeError naming ``what``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"cannot store {what} of type {type(value).__name__} in a safe model file")


def _safe_array(value, what):
    """An array without Python objects (strings become a unicode array)."""
    arr = np.asarray(value)
    if arr.dtype == object:
        if all(isinstance(item, str) for item in arr.ravel()):
            return arr.astype(str)
        raise TypeError(f"cannot store {what}: it holds Python objects (ragged or mixed values)")
    return arr


def params_payload(estimator):
    """(JSON params, arrays) of ``estimator.get_params()``."""
    params, arrays = {}, {}
    for name, value in estimator.get_params(deep=False).items():
        if isinstance(value, np.random.Generator):
            warnings.warn(
                f"{name} is a numpy Generator, which a safe file cannot hold; it is stored as None "
                "(refitting the loaded model will not repeat this fit; use an int seed)",
                UserWarning,
                stacklevel=3,
            )
            value = None
        if isinstance(value, (np.ndarray, list, tuple)):
            arrays[f"param/{name}"] = _safe_array(value, f"parameter {name}")
            params[name] = {"__array__": f"param/{name}"}
        else:
            params[name] = _json_scalar(value, f"parameter {name}")
    return params, arrays


def history_payload(history):
    """(JSON description, arrays) of a ``history_`` dict of per-iteration lists."""
    kinds, arrays = {}, {}
    for key, values in history.items():
        arr = _safe_array(values, f"history_[{key!r}]")
        kinds[key] = "vector" if arr.ndim == 2 else "scalar"
        arrays[f"history/{key}"] = arr
    return {"keys": list(history), "kinds": kinds}, arrays


def write_archive(path, fmt, metadata, arrays, overwrite):
    """Write ``arrays`` and the JSON ``metadata`` (plus format fields) atomically."""
    header = {"format": fmt, "format_version": FORMAT_VERSION, "package_version": _package_version()}
    members = {METADATA_KEY: np.array(json.dumps({**header, **metadata}))}
    members.update(arrays)
    atomic_write(path, lambda file: np.savez(file, allow_pickle=False, **members), overwrite=overwrite)


def save_model(estimator, path, *, overwrite=False):
    """Save a fitted :class:`~cfe_fast.CFEnsembleClassifier` to ``path`` (safe ``.npz``).

    Parameters
    ----------
    estimator : fitted CFEnsembleClassifier
    path : str or Path
        Written as given (no suffix is added), atomically.
    overwrite : bool, default=False
        Replace an existing file.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "classifier_factors_")
    params, arrays = params_payload(estimator)
    attributes, array_names, history = {}, [], None
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if name == "history_":
            history, history_arrays = history_payload(value)
            arrays.update(history_arrays)
        elif isinstance(value, np.ndarray):
            arrays[f"attr/{name}"] = _safe_array(value, f"attribute {name}")
            array_names.append(name)
        else:
            attributes[name] = _json_scalar(value, f"attribute {name}")
    metadata = {
        "estimator": type(estimator).__name__,
        "params": params,
        "attributes": attributes,
        "arrays": array_names,
        "history": history,
    }
    write_archive(path, MODEL_FORMAT, metadata, arrays, overwrite)


# ----------------------------------------------------------------- reading
def _read_members(path, fmt):
    """Every member of an .npz archive, read with allow_pickle=False."""
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path} is a single .npy array, not a cfe_fast {fmt} file")
    with archive:
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as error:
                if "allow_pickle" not in str(error):
                    raise
                raise ModelFileError(
                    f"{path} holds a pickled object array ({key!r}); pickles can run code, so this file is refused"
                ) from None
    return arrays


def read_archive(path, fmt):
    """(metadata, arrays) of a safe archive, checked for format name and version."""
    try:
        arrays = _read_members(path, fmt)
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise ModelFileError(f"{path} is truncated or corrupt, or not a cfe_fast {fmt} file ({error})") from None
    if METADATA_KEY not in arrays:
        raise ModelFileError(f"{path} has no {METADATA_KEY} member: not a cfe_fast {fmt} file")
    try:
        metadata = json.loads(str(arrays.pop(METADATA_KEY)))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: its metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != fmt:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise ModelFileError(f"{path} is not a {fmt} file (its format is {found!r})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has {fmt} format version {version!r}, written by cfe_fast "
            f"{metadata.get('package_version', '?')}; this cfe_fast ({_package_version()}) reads "
            f"version {FORMAT_VERSION} only: use a matching cfe_fast version"
        )
    return metadata, arrays


def _require(condition, path, message):
    if not condition:
        raise ModelFileError(f"{path}: {message}")


def restore_params(path, metadata, arrays, cls):
    """get_params() dict from a file, checked against ``cls``'s parameters."""
    params = metadata.get("params")
    _require(isinstance(params, dict), path, "missing 'params' in the metadata")
    known = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    _require(
        not unknown, path,
        f"parameter(s) {unknown} unknown to this cfe_fast ({_package_version()}); the file was "
        f"written by cfe_fast {metadata.get('package_version', '?')}",
    )
    restored = {}
    for name, value in params.items():
        if isinstance(value, dict):
            member = value.get("__array__")
            _require(member in arrays, path, f"parameter {name} refers to missing member {member!r}")
            value = arrays.pop(member)
        restored[name] = value
    return restored


def restore_history(path, description, arrays):
    """The ``history_`` dict of lists (scalars as Python numbers, vectors as arrays)."""
    if description is None:
        return None
    history = {}
    for key in description["keys"]:
        member = f"history/{key}"
        _require(member in arrays, path, f"missing history member {member!r}")
        values = arrays.pop(member)
        vector = description["kinds"][key] == "vector"
        _require(values.ndim == (2 if vector else 1), path, f"history member {member!r} has shape {values.shape}")
        history[key] = list(values) if vector else values.tolist()
    return history


def _check_fitted_arrays(path, attributes, arrays):
    """Shapes and dtypes of the fitted arrays against m, d and n."""
    for name in _REQUIRED_SCALARS:
        _require(name in attributes, path, f"missing fitted attribute {name}")
    sizes = {"m": attributes["n_features_in_"], "d": attributes["latent_dim_"], 2: 2}
    if "instance_factors_" in arrays:
        sizes["n"] = arrays["instance_factors_"].shape[-1]
    for name, dims in {**_REQUIRED_ARRAYS, **_OPTIONAL_ARRAYS}.items():
        if name not in arrays:
            _require(name not in _REQUIRED_ARRAYS, path, f"missing fitted array {name}")
            continue
        arr = arrays[name]
        expected = tuple(sizes.get(dim) for dim in dims)
        _require(arr.shape == expected, path, f"fitted array {name} has shape {arr.shape}, expected {expected}")
        _require(arr.dtype.kind in "fi", path, f"fitted array {name} has dtype {arr.dtype}, expected numbers")


def load_model(path, cls=None):
    """Load a model saved by :func:`save_model`; it predicts bit-identically.

    Raises
    ------
    ModelFileError
        Not a cfe_fast model file, an incompatible format version, a truncated
        or corrupt archive, pickled members, or inconsistent content.
    """
    if cls is None:
        from .estimator import CFEnsembleClassifier as cls
    metadata, arrays = read_archive(path, MODEL_FORMAT)
    _require(
        metadata.get("estimator") == cls.__name__, path,
        f"holds a {metadata.get('estimator')!r}, not a {cls.__name__}",
    )
    estimator = cls(**restore_params(path, metadata, arrays, cls))
    history = restore_history(path, metadata.get("history"), arrays)
    fitted = {}
    for name in metadata.get("arrays", []):
        member = f"attr/{name}"
        _require(member in arrays, path, f"missing member {member!r}")
        fitted[name] = arrays.pop(member)
    _require(not arrays, path, f"unexpected member(s) {sorted(arrays)}")
    attributes = metadata.get("attributes", {})
    _check_fitted_arrays(path, attributes, fitted)
    _require(
        fitted["classifier_factors_"].dtype == np.dtype(estimator.dtype), path,
        f"classifier_factors_ has dtype {fitted['classifier_factors_'].dtype} but dtype={estimator.dtype!r}",
    )
    for name, value in attributes.items():
        setattr(estimator, name, value)
    for name, value in fitted.items():
        # string arrays (feature_names_in_) are object arrays in scikit-learn
        setattr(estimator, name, value.astype(object) if value.dtype.kind == "U" else value)
    if history is not None:
        estimator.history_ = history
    return estimator
