"""The backends, behind one contract (:mod:`.contract`), and their registry.

=========  ===========================================================
"numba"    compiled CPU kernels (the default)
"numpy"    the reference implementation, for checking (slow)
"cupy"     an NVIDIA GPU; NumPy where no GPU is usable
"dask"     a dask cluster, data in memory or out of core
=========  ===========================================================

A backend's package is imported when it is first asked for, so NumPy-only
use never loads Numba, CuPy or Dask; what each supports is declared here
(:data:`CAPABILITIES`), so parameters can be checked without importing it.
"""

import importlib

from .contract import SOLVERS, TRAINERS, Backend, Capabilities

_PACKAGES = {
    "numba": "cfe_fast.backends.numba",
    "numpy": "cfe_fast.backends.numpy",
    "cupy": "cfe_fast.backends.cupy",
    "dask": "cfe_fast.backends.dask",
}

BACKENDS = tuple(_PACKAGES)

#: what each backend supports (:class:`~.contract.Capabilities`)
CAPABILITIES = {
    "numba": Capabilities(trainers=TRAINERS, solvers=SOLVERS, inputs=("numpy", "sparse"), sparse_trainers=TRAINERS),
    "numpy": Capabilities(trainers=TRAINERS, solvers=SOLVERS),  # exact: every solver name, ignored
    "cupy": Capabilities(trainers=TRAINERS, solvers=("auto",), inputs=("numpy", "sparse")),
    "dask": Capabilities(trainers=("als",), solvers=("auto",), inputs=("numpy", "sparse", "dask"),
                         focal_variants=("exact",), checkpoints=False),
}


def get_backend(name):
    """The backend object of a name in :data:`BACKENDS`."""
    try:
        package = _PACKAGES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}") from None
    return importlib.import_module(package).BACKEND


__all__ = ["BACKENDS", "CAPABILITIES", "SOLVERS", "TRAINERS", "Backend", "Capabilities", "get_backend"]
