"""A set of output files that appear together or not at all.

The files are written into a hidden staging folder inside the output folder
(:data:`STAGING`), which also shows early that the folder is writable. When
all are written, a list of them (:data:`READY`) is written atomically: from
then on the set is complete, and :meth:`OutputSet.commit` moves each file
into place (a rename within the folder) and removes the staging folder. A
process killed before the list leaves nothing but the staging folder, which
the next run removes; one killed while moving leaves the list, and
:meth:`OutputSet.finish_interrupted` completes the moves. Files the set
replaces (a checkpoint) are removed only once it is in place. Temporary files of
:func:`~.atomic.atomic_write` that a killed process left behind are removed.
"""

import json
import os
import shutil
from pathlib import Path

from .atomic import atomic_write

STAGING = ".cfe-fast-staging"
READY = "ready.json"


class OutputSet:
    """The files ``names`` of ``folder``, written through :meth:`path` and published by :meth:`commit`.

    ``folder`` must exist. ``obsolete``: files of ``folder`` that the
    published set replaces (a checkpoint): removed once the set is in place;
    their stale temporary files are removed too.
    """

    def __init__(self, folder, names, obsolete=()):
        self.folder = Path(folder)
        self.staging = self.folder / STAGING
        self.names = list(names)
        self.obsolete = list(obsolete)

    def interrupted(self):
        """True when a previous run was killed while moving a complete set into place."""
        return (self.staging / READY).is_file()

    def finish_interrupted(self):
        """Move the files of an interrupted, complete set into place; return their paths."""
        names = [name for name in json.loads((self.staging / READY).read_text()) if name in self.names]
        for name in names:
            if (self.staging / name).exists():
                os.replace(self.staging / name, self.folder / name)
        for name in self.obsolete:
            (self.folder / name).unlink(missing_ok=True)
        shutil.rmtree(self.staging)
        return [self.folder / name for name in names]

    def start(self):
        """Remove what killed runs left (an incomplete staging folder, stale temporary files), then stage afresh."""
        if self.staging.exists():
            shutil.rmtree(self.staging)
        for name in self.names + self.obsolete:
            for stale in self.folder.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        self.staging.mkdir()

    def path(self, name):
        """Where to write output ``name`` (in the staging folder)."""
        return self.staging / name

    def commit(self):
        """Publish the set: mark it complete, move the files into place, remove the obsolete ones.

        Returns the final paths. Every one of :attr:`names` must have been written.
        """
        missing = [name for name in self.names if not (self.staging / name).is_file()]
        if missing:
            raise FileNotFoundError(f"outputs {missing} were not written to {self.staging}")
        atomic_write(self.staging / READY, lambda file: file.write(json.dumps(self.names).encode()), overwrite=True)
        return self.finish_interrupted()

    def abort(self):
        """Remove the staging folder and what it holds (the files already in place are kept)."""
        shutil.rmtree(self.staging, ignore_errors=True)
