"""Safe archives: NumPy ``.npz`` files with a JSON metadata member, never pickled.

An archive is written with ``allow_pickle=False`` and read back with
``allow_pickle=False``, so reading one can never execute code. It holds a
0-d unicode member ``__metadata__`` with a JSON object (``format``,
``format_version``, ``package_version``, ``members``: the names of the
other members, ``checksum``: the SHA-256 of :func:`content_digest`, and the
writer's own fields) and the listed plain numeric or string arrays. Reading
refuses unlisted members before decompressing anything, checks every
member's header and declared size first (:mod:`.npz`), and refuses a
checksum that does not match, so an edited or damaged file is not
loaded. Model files (:mod:`.model_file`) and checkpoints (:mod:`.checkpoint`)
are archives.
"""

import hashlib
import json
import numbers
import warnings

import numpy as np

from .atomic import atomic_write
from .npz import NpzReader

#: version 2: the metadata lists the members and holds a checksum of the content
FORMAT_VERSION = 2
METADATA_KEY = "__metadata__"
#: the largest metadata member read (JSON text; the arrays are members of their own)
METADATA_MAX_BYTES = 16 * 2**20


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


def history_payload(history, prefix=""):
    """(JSON description, arrays) of a ``history_`` dict of per-iteration lists; members ``<prefix>history/<key>``."""
    kinds, arrays = {}, {}
    for key, values in history.items():
        arr = safe_array(values, f"history_[{key!r}]")
        kinds[key] = "vector" if arr.ndim == 2 else "scalar"
        arrays[f"{prefix}history/{key}"] = arr
    return {"keys": list(history), "kinds": kinds}, arrays


def content_digest(metadata, arrays):
    """SHA-256 of the metadata (less its ``checksum``) and of every member's name, dtype, shape and data."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in metadata.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        digest.update(arr.reshape(-1).view(np.uint8) if arr.size else b"")
    return "sha256:" + digest.hexdigest()


def write_archive(path, fmt, metadata, arrays, overwrite):
    """Write ``arrays`` and the JSON ``metadata`` (plus format fields, member list and checksum) atomically."""
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    header = {"format": fmt, "format_version": FORMAT_VERSION, "package_version": _package_version()}
    metadata = {**header, **metadata, "members": sorted(arrays)}
    metadata["checksum"] = content_digest(metadata, arrays)
    members = {METADATA_KEY: np.array(json.dumps(metadata))}
    members.update(arrays)
    atomic_write(path, lambda file: np.savez(file, allow_pickle=False, **members), overwrite=overwrite)


# ----------------------------------------------------------------- reading
def _read_metadata(path, fmt, reader):
    if METADATA_KEY not in reader.names:
        raise ModelFileError(f"{path} has no {METADATA_KEY} member: not a cfe_fast {fmt} file")
    shape, dtype = reader.header(METADATA_KEY)
    require(shape == () and dtype.kind == "U" and dtype.itemsize <= METADATA_MAX_BYTES, path,
            f"its {METADATA_KEY} member is not a JSON text of at most {METADATA_MAX_BYTES} bytes")
    try:
        metadata = json.loads(str(reader.read(METADATA_KEY)))
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
    return metadata


def read_archive(path, fmt):
    """(metadata, arrays) of a safe archive, checked for format name and version, members and checksum.

    The metadata is read first; a member it does not list is refused before
    any data is decompressed, and every member's header is checked (see
    :class:`~.npz.NpzReader`) before its data is.
    """
    with NpzReader(path, ModelFileError) as reader:
        metadata = _read_metadata(path, fmt, reader)
        listed = metadata.get("members")
        require(isinstance(listed, list) and all(isinstance(n, str) for n in listed), path,
                "its metadata has no list of members")
        present = [name for name in reader.names if name != METADATA_KEY]
        require(not set(present) - set(listed), path, f"unexpected member(s) {sorted(set(present) - set(listed))}")
        require(not set(listed) - set(present), path, f"missing member(s) {sorted(set(listed) - set(present))}")
        for name in present:
            reader.header(name)  # every header and size before any data
        arrays = {name: reader.read(name) for name in present}
    require(metadata.get("checksum") == content_digest(metadata, arrays), path,
            "its content does not match its checksum: the file was changed after it was written, or is corrupt")
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


def restore_history(path, description, arrays, required=(), prefix=""):
    """The ``history_`` dict of lists (scalars as Python numbers, vectors as arrays), taken from ``arrays``.

    Every entry must be numeric with one value per iteration, and the keys
    ``required`` must be there; the members are ``<prefix>history/<key>``.
    """
    if description is None:
        return None
    keys = description.get("keys") if isinstance(description, dict) else None
    kinds = description.get("kinds") if isinstance(description, dict) else None
    require(isinstance(keys, list) and isinstance(kinds, dict) and all(isinstance(k, str) for k in keys), path,
            "its history description is malformed")
    missing = [key for key in required if key not in keys]
    require(not missing, path, f"its history lacks the entries {missing}")
    history, length = {}, None
    for key in keys:
        member = f"{prefix}history/{key}"
        require(member in arrays, path, f"missing history member {member!r}")
        require(kinds.get(key) in ("vector", "scalar"), path, f"history entry {key!r} has no kind")
        values = arrays.pop(member)
        vector = kinds[key] == "vector"
        require(values.ndim == (2 if vector else 1) and values.dtype.kind in "biuf", path,
                f"history member {member!r} has shape {values.shape} and dtype {values.dtype}")
        require(length is None or len(values) == length, path,
                f"history member {member!r} has {len(values)} entries, the others {length}")
        length = len(values)
        history[key] = list(values) if vector else values.tolist()
    return history
