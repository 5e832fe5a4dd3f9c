"""Shared helpers of the asv suite: the profile, random problems, JIT warm-up.

``CFE_ASV_PROFILE=quick`` shrinks every benchmark to a few thousand instances
(CI smoke run); the default ``full`` profile uses n = 1e6 for the kernels.
"""

import importlib
import os
import platform
import time
from types import SimpleNamespace

import numpy as np

QUICK = os.environ.get("CFE_ASV_PROFILE", "full") == "quick"
N = 4_000 if QUICK else 1_000_000
SHAPES = ["10x20", "100x20"] if QUICK else ["10x20", "10x64", "100x20", "100x64"]
#: thousands of classifiers, float32: (m x d, n) -- m = 1,000 at n = 1e6 and m = 5,000 at n = 2e5
MANY_CLASSIFIERS = {"1000x32": 2_000, "5000x32": 400} if QUICK else {"1000x32": 1_000_000, "5000x32": 200_000}
LAM = 0.1


def shape(text):
    """'m x d' parameter -> (m, d)."""
    m, d = (int(v) for v in text.split("x"))
    return m, d


def problem(m, d, n, dtype, seed=0):
    """Instance-major Rt, Ct (n, m), X (d, m), Yt (n, d) of the given dtype."""
    rng = np.random.default_rng(seed)  # drawn in the dtype: no float64 copy of an (n, m) array
    Rt = rng.random((n, m), dtype=dtype)
    Ct = rng.random((n, m), dtype=dtype)
    X = rng.standard_normal((d, m), dtype=dtype)
    Yt = rng.standard_normal((n, d), dtype=dtype)
    return Rt, Ct, X, Yt


#: the instance-major Numba kernels the benchmarks time, by module of ``backends.numba``
_KERNELS = {
    "instance_step": ("solve_instances", "choose_solver"),
    "classifier_step": ("solve_classifiers", "classifier_sums"),
    "losses": ("aggregator_terms_t",),
}


def numba_kernels(package="cfe_fast"):
    """The instance-major Numba kernels of a version of cfe_fast, whatever its layout.

    A namespace with the functions of ``_KERNELS``, taken from
    ``<package>.backends.numba.*``; versions before the backends package
    (e.g. commit 29ecb19) had them all in ``<package>.numba_backend``.
    ``package`` is another name where ``scripts/ab_compare.py`` imports an
    older commit's copy side by side.
    """
    try:
        modules = {name: importlib.import_module(f"{package}.backends.numba.{name}") for name in _KERNELS}
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith(f"{package}.backends"):
            raise  # a missing dependency, not the old layout
        return importlib.import_module(f"{package}.numba_backend")
    return SimpleNamespace(**{f: getattr(modules[name], f) for name, functions in _KERNELS.items() for f in functions})


def solver_kwargs(nb, solver, m, d):
    """Keyword arguments of a solver; NotImplementedError (asv: skip) where it does not apply."""
    if solver == "dual" and nb.choose_solver(m, d) == "primal":
        raise NotImplementedError("the dual form is slower here (m > 1.2 d)")
    if solver == "primal" and nb.choose_solver(m, d) == "primal":
        raise NotImplementedError("same as auto here")
    return {"solver": solver}


def median_seconds(fn, repeat):
    """Median wall time of ``repeat`` calls of ``fn()`` (the scripts' timer; asv times its own)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
