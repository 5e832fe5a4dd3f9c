"""Atomic file output: write to a temporary file beside the target, then rename.

A reader never sees a half-written model, checkpoint or prediction file, and a
process killed mid-write leaves the previous file (if any) intact.
"""

import os
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, *, overwrite=False, hint="pass overwrite=True to replace it"):
    """Write a file through ``write(binary_file)`` and move it into place atomically.

    Parameters
    ----------
    path : str or Path
        Target file; its folder must exist.
    write : callable
        Receives an open binary file and writes the content.
    overwrite : bool, default=False
        Replace an existing file; otherwise an existing ``path`` raises
        ``FileExistsError`` before anything is written.
    hint : str
        How to allow the overwrite, appended to the error message.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; {hint}")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
