"""Backend registry: every backend module exposes the same kernel functions.

``update_instance_factors(X, R, C, lam)``, ``update_classifier_factors(Y, R, C, lam)``,
``fold_in(X, R, C, lam)``, ``reconstruction_loss(X, Y, R, C, lam)`` and
``aggregator_terms(X, Y_labeled, y_labeled, omega, w, b, focal_gamma, focal_variant, hessian)``,
with the layout of SPEC.md (R, C: (m, n); X: (d, m); Y: (d, n)).
"""

import importlib

from .cupy_backend import to_host  # noqa: F401  (re-exported: GPU arrays -> NumPy)

_MODULES = {
    "cupy": "cfe_fast.cupy_backend",
    "numba": "cfe_fast.numba_backend",
    "numpy": "cfe_fast.reference",
}

BACKENDS = tuple(_MODULES)


def get_backend(name):
    """Return the kernel module of a backend by name."""
    try:
        module = _MODULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}") from None
    return importlib.import_module(module)


def to_device(kernels, *arrays):
    """The arrays placed where a backend computes, for device-resident iterations.

    The "cupy" backend moves them to the GPU (when one is usable and they fit);
    every other backend returns them unchanged.
    """
    place = getattr(kernels, "to_device", None)
    return arrays if place is None else place(*arrays)
