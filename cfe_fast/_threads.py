"""Keep BLAS single-threaded while Numba's threads compute.

Every Numba kernel that calls BLAS (``np.dot``) from inside a ``prange`` loop
runs under :func:`single_threaded_blas`: nested BLAS threads oversubscribe the
cores and were measured 5-20x slower under load. The estimator also holds it
for a whole fit: after any multi-threaded BLAS call (a NumPy
``x @ x`` of 540,000 numbers was enough) OpenBLAS's idle threads spin for a
while and take the cores from the next Numba kernel (the instance step at
m = 18, n = 60,000, d = 9 took 13 ms after such a call against 7.5 ms).
"""

import os
import threading
from contextlib import contextmanager
from functools import lru_cache

# Numba's default threading layer here is OpenMP (libgomp), whose idle threads
# spin between parallel regions: with a busy machine the spinning threads take
# the cores the working ones need (measured on 2 loaded cores: the classifier
# Gram at m=18, n=60,000 took 0.09-0.86 s with 2 threads against 0.016 s
# with passive waiting). Read once when libgomp loads; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
