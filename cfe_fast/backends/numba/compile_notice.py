"""One line on the ``cfe_fast`` logger when the kernels compile: a first run's wait, not a hang.

Numba compiles a kernel on its first call with new argument types and keeps
the machine code in its cache on disk; a later process loads it from there
and nothing is said. The line is a logging warning, so it shows on stderr
without any logging set up, and ``logging.getLogger("cfe_fast")`` silences
or redirects it.
"""

import logging

from numba.core import event

MESSAGE = "compiling kernels (first run only; Numba caches them on disk)"

logger = logging.getLogger("cfe_fast")


class _FirstCompile(event.Listener):
    """Logs :data:`MESSAGE` once per process, when a kernel of this package starts compiling."""

    def __init__(self):
        self.said = False

    def on_start(self, ev):
        if not self.said and ev.data["dispatcher"].py_func.__module__.startswith(__package__):
            self.said = True
            logger.warning(MESSAGE)

    def on_end(self, ev):
        pass


def install():
    """Listen to Numba's compile events (a cache hit raises none)."""
    event.register("numba:compile", _FirstCompile())
