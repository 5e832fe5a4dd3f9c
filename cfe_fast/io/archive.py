"""Safe archives: NumPy ``.npz`` files with a JSON metadata member, never pickled.

An archive is written with ``allow_pickle=False`` and read back with
``allow_pickle=False``, so reading one can never execute code. It holds a
0-d unicode member ``__metadata__`` with a JSON object (``format``,
``format_version``, ``package_version`` and the writer's own fields) and
any number of plain numeric or string arrays. Model files
(:mod:`.model_file`) and checkpoints (:mod:`.checkpoint`) are archives.
"""

import json
import numbers
import warnings
import zipfile
import zlib

import numpy as np

from .atomic import atomic_write

FORMAT_VERSION = 1
METADATA_KEY = "__metadata__"


class ModelFileError(ValueError):
    """A model or checkpoint file is not a valid, compatible cfe_fast file."""


def _package_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cfe_fast")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


# ----------------------------------------------------------------- writing
def json_scalar(value, what):
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


def safe_array(value, what):
    """An array without Python objects (strings become a unicode array)."""
    arr = np.asarray(value)
    if arr.dtype == object:
        if all(isinstance(item, str) for item in arr.ravel()):
            return arr.astype(str)
        raise TypeError(f"cannot store {what}: it holds Python objects (ragged or mixed values)")
    return arr


def params_payload(parameters):
    """(JSON params, arrays) of a ``get_params()`` dict."""
    params, arrays = {}, {}
    for name, value in parameters.items():
        if isinstance(value, np.random.Generator):
            warnings.warn(
                f"{name} is a numpy Generator, which a safe file cannot hold; it is stored as None "
                "(refitting the loaded model will not repeat this fit; use an int seed)",
                UserWarning,
                stacklevel=3,
            )
            value = None
        if isinstance(value, (np.ndarray, list, tuple)):
            arrays[f"param/{name}"] = safe_array(value, f"parameter {name}")
            params[name] = {"__array__": f"param/{name}"}
        else:
            params[name] = json_scalar(value, f"parameter {name}")
    return params, arrays


def history_payload(history):
    """(JSON description, arrays) of a ``history_`` dict of per-iteration lists."""
    kinds, arrays = {}, {}
    for key, values in history.items():
        arr = safe_array(values, f"history_[{key!r}]")
        kinds[key] = "vector" if arr.ndim == 2 else "scalar"
        arrays[f"history/{key}"] = arr
    return {"keys": list(history), "kinds": kinds}, arrays


def write_archive(path, fmt, metadata, arrays, overwrite):
    """Write ``arrays`` and the JSON ``metadata`` (plus format fields) atomically."""
    header = {"format": fmt, "format_version": FORMAT_VERSION, "package_version": _package_version()}
    members = {METADATA_KEY: np.array(json.dumps({**header, **metadata}))}
    members.update(arrays)
    atomic_write(path, lambda file: np.savez(file, allow_pickle=False, **members), overwrite=overwrite)


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


def require(condition, path, message):
    if not condition:
        raise ModelFileError(f"{path}: {message}")


def restore_params(path, metadata, arrays, known):
    """The get_params() dict stored in a file, checked against the ``known`` parameter names."""
    params = metadata.get("params")
    require(isinstance(params, dict), path, "missing 'params' in the metadata")
    unknown = sorted(set(params) - set(known))
    require(
        not unknown, path,
        f"parameter(s) {unknown} unknown to this cfe_fast ({_package_version()}); the file was "
        f"written by cfe_fast {metadata.get('package_version', '?')}",
    )
    restored = {}
    for name, value in params.items():
        if isinstance(value, dict):
            member = value.get("__array__")
            require(member in arrays, path, f"parameter {name} refers to missing member {member!r}")
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
        require(member in arrays, path, f"missing history member {member!r}")
        values = arrays.pop(member)
        vector = description["kinds"][key] == "vector"
        require(values.ndim == (2 if vector else 1), path, f"history member {member!r} has shape {values.shape}")
        history[key] = list(values) if vector else values.tolist()
    return history
