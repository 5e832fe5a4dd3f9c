"""Array modules and data placement of the CuPy backend: NumPy or CuPy, device residency, streaming.

Where the data live decides where results go: CuPy R gives CuPy results
(device-resident across iterations); NumPy R on a GPU is *streamed*: chunks
go host -> device through pinned, double-buffered memory on a side stream,
overlapped with the compute of the previous chunk, and results come back to
the host, so n is bounded by host memory, not by the GPU. CuPy is never
imported unless it is installed and asked for.
"""

import os
import sys
import warnings
from functools import lru_cache

import numpy as np

from ... import config


def array_module(*arrays):
    """CuPy if any argument is a CuPy array, NumPy otherwise (never imports CuPy)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and any(isinstance(a, cupy.ndarray) for a in arrays):
        return cupy
    return np


@lru_cache(maxsize=1)
def gpu_module():
    """The ``cupy`` module when it imports and sees a CUDA device, else None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except (ImportError, RuntimeError):  # not installed, or no driver / device
        return None
    return cupy


def compute_module(*arrays):
    """The module the kernels compute with: CuPy for CuPy input or when a GPU is usable."""
    xp = array_module(*arrays)
    if xp is np:
        xp = gpu_module() or np
    return xp


def is_numpy(xp):
    return xp is np


def c_type(dtype):
    """The CUDA C name of a float32 or float64 dtype, for the kernels' typedefs."""
    return {"float32": "float", "float64": "double"}[np.dtype(dtype).name]


def cuda_kernels(xp):
    """Whether ``xp`` is CuPy on a usable device, where cfe_fast's own CUDA kernels run."""
    return not is_numpy(xp) and xp is gpu_module()


def as_module(xp, a, dtype=None):
    """``a`` as an ``xp`` array (moved to the host when xp is NumPy)."""
    return xp.asarray(to_host(a) if is_numpy(xp) else a, dtype=dtype)


def to_host(a):
    """A NumPy array for a CuPy array; anything else is returned unchanged."""
    return a.get() if array_module(a) is not np else a


def to_device(*arrays):
    """Place host arrays on the GPU for device-resident iterations.

    Returns the arrays as CuPy arrays when a GPU is usable and together they fit
    in ``config.DEVICE_FRACTION`` of its free memory; otherwise unchanged, and the
    kernels then stream them from the host chunk by chunk. ``None`` entries
    (e.g. factors not computed yet) stay ``None``.
    """
    cupy = gpu_module()
    if cupy is None:
        return arrays
    free = cupy.cuda.Device().mem_info[0] + cupy.get_default_memory_pool().free_bytes()
    if sum(a.nbytes for a in arrays if a is not None) > config.DEVICE_FRACTION * free:
        return arrays
    return tuple(None if a is None else cupy.asarray(a) for a in arrays)


def warn_if_tf32(dtype):
    """Warn when CuPy would run float32 GEMMs in TF32 (``CUPY_TF32`` set)."""
    try:
        tf32 = int(os.environ.get("CUPY_TF32", "0")) > 0
    except ValueError:
        tf32 = False
    if tf32 and np.dtype(dtype) == np.float32:
        warnings.warn(
            "CUPY_TF32 is set: CuPy computes float32 Gram matrices in TF32 (10-bit mantissa, "
            "~1e-3 relative error); unset CUPY_TF32 for full float32 accuracy, or use float64",
            RuntimeWarning,
            stacklevel=3,
        )


def _module_name(xp):
    return "numpy" if is_numpy(xp) else "cupy"


def chunk_size(xp, bytes_per_instance, chunk):
    """Instances per chunk: ``chunk`` if given, else what fits the working-memory budget."""
    if chunk is not None:
        return max(1, int(chunk))
    return max(1, config.CHUNK_BYTES[_module_name(xp)] // max(int(bytes_per_instance), 1))


def _bounds(n, size):
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def stream_columns(arrays, size, xp):
    """Iterate over blocks of ``size`` columns (last axis) of several arrays.

    Yields ``(start, stop, blocks)`` with the blocks as ``xp`` arrays: slices of
    arrays already in ``xp``; host arrays moved to the GPU when ``xp`` is CuPy
    (double-buffered through pinned memory on a side stream, the copy of block
    k + 1 overlapping the compute of block k). A yielded block is valid until
    the next iteration.
    """
    n = arrays[0].shape[-1]
    bounds = _bounds(n, size)
    host = [i for i, a in enumerate(arrays) if array_module(a) is not xp]
    if not host or is_numpy(xp):
        for s, e in bounds:
            yield s, e, [as_module(xp, a[..., s:e]) for a in arrays]
        return
    yield from _staged_columns(xp, arrays, host, bounds)


def _order(a):
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _staged_columns(cupy, arrays, host, bounds):
    """Host -> device double buffering for :func:`stream_columns` (CuPy only)."""
    import cupyx

    width = max(e - s for s, e in bounds)
    copy_stream = cupy.cuda.Stream(non_blocking=True)
    compute_stream = cupy.cuda.get_current_stream()
    sizes = {i: arrays[i].size // arrays[i].shape[-1] * width for i in host}
    slots = [
        {i: (cupyx.empty_pinned(sizes[i], arrays[i].dtype), cupy.empty(sizes[i], arrays[i].dtype)) for i in host}
        for _ in range(2)
    ]
    # The pool hands out memory freed on the compute stream at once, ordered for that stream
    # only: kernels still queued there may read it. The side stream copies after them.
    copy_stream.wait_event(compute_stream.record())
    copied, released = [None, None], [None, None]

    def issue(k):
        s, e = bounds[k]
        slot = k % 2
        if copied[slot] is not None:
            copied[slot].synchronize()  # the pinned buffer's previous copy is done
        if released[slot] is not None:
            copy_stream.wait_event(released[slot])  # the device buffer's previous block is consumed
        blocks = []
        for i, a in enumerate(arrays):
            if i not in slots[slot]:
                blocks.append(a[..., s:e])
                continue
            shape, order = a[..., s:e].shape, _order(a[..., s:e])
            count = a.size // a.shape[-1] * (e - s)
            pinned, device = slots[slot][i]
            staged = pinned[:count].reshape(shape, order=order)
            staged[...] = a[..., s:e]
            block = device[:count].reshape(shape, order=order)
            block.set(staged, stream=copy_stream)
            blocks.append(block)
        copied[slot] = copy_stream.record()
        return blocks

    pending = issue(0)
    for k, (s, e) in enumerate(bounds):
        blocks, event = pending, copied[k % 2]
        if k + 1 < len(bounds):
            pending = issue(k + 1)
        compute_stream.wait_event(event)
        yield s, e, blocks
        released[k % 2] = compute_stream.record()


class Output:
    """A (k, n) result filled block by block: on the host when R is, else in ``xp``."""

    def __init__(self, xp, R, k, dtype):
        self.host = array_module(R) is np
        self.array = (np if self.host else xp).empty((k, R.shape[1]), dtype=dtype)

    def put(self, s, e, block):
        self.array[:, s:e] = to_host(block) if self.host else block
