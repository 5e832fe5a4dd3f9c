"""CuPy backend: the kernels on an NVIDIA GPU, and on NumPy where no GPU is usable.

See :mod:`.kernels` for the design, :mod:`.arrays` for data placement and
streaming, :mod:`.solve` for the batched SPD solves. It runs every trainer
("als", "exact", "joint"), the ALS half-steps with the exact solvers chosen
by its own rule (:func:`.kernels.choose_solver`); a sparse P (``scipy.sparse``,
stored entries = observed) is fitted by "als" on its stored entries (:mod:`.sparse`).
"""

import warnings
from functools import lru_cache

from .. import CAPABILITIES
from ...core.sparse import is_sparse
from ..in_memory import ModuleBackend
from . import kernels, sparse
from .arrays import gpu_module, to_device, to_host


@lru_cache(maxsize=1)
def _warn_without_gpu():
    """Warn once per process that backend="cupy" computes with NumPy, and why."""
    try:
        import cupy  # noqa: F401

        why = "CuPy sees no CUDA device"
    except ImportError:
        why = "CuPy is not installed (pip install 'cfe_fast[gpu]')"
    warnings.warn(f'backend="cupy": {why}; computing with NumPy on the CPU instead', RuntimeWarning, stacklevel=4)


class CupyBackend(ModuleBackend):
    """The contract on :mod:`.kernels`; results are float32 for float32 R, else float64."""

    name = "cupy"
    capabilities = CAPABILITIES["cupy"]
    kernels = kernels

    def choose_solver(self, m, d, lam):
        return kernels.choose_solver(m, d, lam)

    def start_fit(self, data):
        if gpu_module() is None:
            _warn_without_gpu()
        return sparse.start_fit(self, data) if is_sparse(data.P) else super().start_fit(data)

    def fold_in_block(self, X, rows, C, lam):
        return sparse.fold_in_block(X, rows, C, lam) if is_sparse(rows) else super().fold_in_block(X, rows, C, lam)

    def place(self, *arrays):
        return to_device(*arrays)

    def to_host(self, array):
        return to_host(array)


BACKEND = CupyBackend()
