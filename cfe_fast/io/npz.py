"""Reading ``.npz`` archives member by member, headers before data.

``np.load`` on an ``.npz`` decompresses whatever member is asked for, and a
small file can declare a member of many gigabytes. :class:`NpzReader` looks
at the zip directory and at each member's ``.npy`` header first: the names,
the declared shape and dtype, and the declared size, which must be the
header's size exactly and at most :data:`cfe_fast.config.NPZ_MEMBER_MAX_BYTES`.
Only then is a member decompressed (the zip module stops at the declared size
and checks the CRC). Object (pickled) members are refused before reading.
Every refusal is an ``error`` (``ValueError`` by default) naming the file and
the member.
"""

import zipfile
import zlib

import numpy as np

from .. import config

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
#: the largest .npy header accepted (numpy's own limit for untrusted files)
_MAX_HEADER_BYTES = 10_000


def _is_npy(path):
    with open(path, "rb") as file:
        return file.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX


def _size(nbytes):
    """``nbytes`` in readable units."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes} bytes"


class NpzReader:
    """An open ``.npz`` file whose members are checked before they are read.

    Parameters
    ----------
    path : str or Path
    error : type of exception
        Raised (with a message naming ``path``) for anything unreadable or refused.
    """

    def __init__(self, path, error=ValueError):
        self.path, self.error = path, error
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError) as cause:
            if isinstance(cause, FileNotFoundError):
                raise FileNotFoundError(f"{path}: no such file") from None
            if _is_npy(path):
                raise self._fail("is a single .npy array, not an .npz archive") from None
            raise self._fail(f"is truncated or corrupt, or not an .npz archive ({cause})") from None
        self._infos = {}
        for info in self._zip.infolist():
            name = info.filename.removesuffix(".npy")
            if name in self._infos:
                self.close()
                raise self._fail(f"holds member {name!r} twice")
            self._infos[name] = info
        self._headers = {}

    def _fail(self, message):
        return self.error(f"{self.path} {message}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()

    @property
    def names(self):
        """The member names (without ``.npy``), in archive order."""
        return list(self._infos)

    def header(self, name):
        """(shape, dtype) of member ``name`` from its ``.npy`` header, checked against its declared size."""
        if name not in self._headers:
            self._headers[name] = self._read_header(name)
        return self._headers[name][:2]

    def _read_header(self, name):
        info = self._infos.get(name)
        if info is None:
            raise self._fail(f"has no member {name!r}; it holds {self.names}")
        try:
            with self._zip.open(info) as file:
                version = np.lib.format.read_magic(file)
                read = _HEADER_READERS.get(version)
                if read is None:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, fortran, dtype = read(file, max_header_size=_MAX_HEADER_BYTES)
                header_bytes = file.tell()
        except (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError, OSError) as cause:
            raise self._fail(f"is truncated or corrupt (member {name!r}: {cause})") from None
        except Exception as cause:  # noqa: BLE001 - a corrupt header raises ValueError, SyntaxError, TokenError, ...
            raise self._fail(f"member {name!r} has a corrupt .npy header ({type(cause).__name__}: {cause})") from None
        if dtype.hasobject:
            raise self._fail(f"holds a pickled object array ({name!r}); pickles can run code, so this file is refused")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if info.file_size != header_bytes + nbytes:
            raise self._fail(f"member {name!r} declares {info.file_size} bytes but its header {shape} {dtype} "
                             f"needs {header_bytes + nbytes}: the file is corrupt")
        if nbytes > config.NPZ_MEMBER_MAX_BYTES:
            raise self._fail(f"member {name!r} would decompress to {_size(nbytes)} (shape {shape}, {dtype}), more "
                             f"than the limit of {_size(config.NPZ_MEMBER_MAX_BYTES)} "
                             "(cfe_fast.config.NPZ_MEMBER_MAX_BYTES)")
        return shape, dtype, fortran

    def read(self, name):
        """The array of member ``name`` (its header checked first)."""
        self.header(name)
        try:
            with self._zip.open(self._infos[name]) as file:
                return np.lib.format.read_array(file, allow_pickle=False, max_header_size=_MAX_HEADER_BYTES)
        except (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError, OSError, ValueError) as cause:
            raise self._fail(f"is truncated or corrupt (member {name!r}: {cause})") from None
