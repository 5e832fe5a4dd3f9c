"""Keep BLAS single-threaded while Numba's threads compute.

Every Numba kernel that calls BLAS (``np.dot``) from inside a ``prange`` loop
or from the task threads of ``backends.numba.common.run_tasks`` runs under
:func:`single_threaded_blas`: nested BLAS threads oversubscribe the
cores. The estimator also holds it for a whole fit: after any multi-threaded
BLAS call OpenBLAS's idle threads spin for a while and take the cores from
the next Numba kernel.
"""

import threading
from contextlib import contextmanager
from functools import lru_cache

import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS that Numba's np.dot calls)
from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
_depth = 0
_limiter = None


@lru_cache(maxsize=1)
def _controller():
    # created after SciPy's BLAS is loaded, so that the snapshot includes it
    return ThreadpoolController()


@contextmanager
def single_threaded_blas():
    """Context manager limiting every loaded BLAS library to one thread.

    Re-entrant and shared by threads: the limit is set by the outermost entry
    and restored when the last one leaves, so nested uses cost nothing.
    """
    global _depth, _limiter
    with _lock:
        if _depth == 0:
            _limiter = _controller().limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None
