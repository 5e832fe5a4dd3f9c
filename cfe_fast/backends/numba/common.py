"""Shared pieces of the Numba kernels: the jit options, thread gating, task threads, float64 views, ordered sums."""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import numpy as np
from numba import config as numba_config
from numba import get_num_threads, njit, set_num_threads, types
from numba.extending import overload

from ... import config
from ..._threads import single_threaded_blas

#: every kernel: cached on disk, and NumPy's error model (a float division by
#: zero gives inf/nan, as in NumPy, instead of raising): Python's model puts a
#: zero test before every division, which keeps the loops over systems with a
#: division (pivots, triangular solves) from vectorising
jit = partial(njit, cache=True, error_model="numpy")

_executor = None


def _tasks_executor():
    """The threads :func:`run_tasks` hands ranges to (one fewer than Numba's thread limit), made on first use."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=max(1, numba_config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix="cfe_fast")
    return _executor


def _forget_executor():
    global _executor
    _executor = None  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_forget_executor)


def run_tasks(kernel, n_tasks, *args):
    """``kernel(*args, first, stop)`` for contiguous ranges splitting ``range(n_tasks)``, one per thread.

    The kernel is serial and compiled with ``nogil=True``, so the ranges run
    at once on ``numba.get_num_threads()`` threads (the calling thread takes
    the first range). A task's work depends only on its index, so results
    do not depend on the number of threads. A serial kernel compiles in a
    fraction of the time of the same loop as a ``prange`` (whose body Numba
    lowers and optimises once per wrapper of its parallel region).

    Parameters
    ----------
    kernel : Numba dispatcher
        Takes ``*args`` then the range ``first <= task < stop`` it runs.
    n_tasks : int
    *args
        The kernel's arguments before the range.
    """
    threads = max(1, min(get_num_threads(), n_tasks))
    bounds = [t * n_tasks // threads for t in range(threads + 1)]
    futures = [_tasks_executor().submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    try:
        kernel(*args, bounds[0], bounds[1])
    finally:
        for future in futures:
            future.result()


@contextmanager
def kernel_threads(flops):
    """BLAS on one thread, and Numba's parallel loops and :func:`run_tasks` on one thread for small work.

    Results do not depend on the thread count, so this changes speed only.
    """
    before = get_num_threads()
    with single_threaded_blas():
        if flops < config.PARALLEL_MIN_FLOPS:
            set_num_threads(1)
        try:
            yield
        finally:
            set_num_threads(before)


def as_float64(a):
    """``a`` as float64 in a kernel: ``a`` itself when it already is (astype always copies)."""
    return a.astype(np.float64)


@overload(as_float64)
def _as_float64_overload(a):
    if a.dtype == types.float64:
        return lambda a: a
    return lambda a: a.astype(np.float64)


def assign(out, a):
    """``out[...] = a`` for 1-D or 2-D arrays of one shape, element by element.

    The kernels write arrays into slices with this (and add them in place
    through a view, ``v = part[k]; v += a``), never with a slice assignment
    from an array: Numba compiles the assignment's shape-mismatch message for
    each kernel that has one, seconds of the first run's compile.
    """
    out[...] = a


@overload(assign)
def _assign_overload(out, a):
    if out.ndim == 1:
        def assign_1d(out, a):
            for i in range(a.shape[0]):
                out[i] = a[i]
        return assign_1d

    def assign_2d(out, a):
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                out[i, j] = a[i, j]
    return assign_2d


@jit
def tri(i):
    """Offset of row i in a packed lower triangle (row-major)."""
    return i * (i + 1) // 2


@jit
def ordered_sum(parts):
    """parts[0] + parts[1] + ... in this order, as a new float64 array.

    A serial function on purpose: in a parallel kernel every array expression
    outside the prange loop (``g += part[c]``, ``np.zeros``) is a parallel
    region of its own, one launch per term of a loop -- 64 per classifier
    step and 60 per aggregator pass, each a thread wake-up.
    The parallel kernels therefore allocate their per-task partials with
    np.empty, fill them inside the loop, and add them up here (as do the
    callers of :func:`run_tasks`, with the partials their tasks filled).
    """
    total = np.zeros(parts.shape[1:])
    for k in range(parts.shape[0]):
        total += parts[k]
    return total


@jit
def block_range(b, n_blocks, n_chunks):
    """Chunks [c0, c1) of reduction block b: n_chunks split into n_blocks contiguous runs."""
    return b * n_chunks // n_blocks, (b + 1) * n_chunks // n_blocks
