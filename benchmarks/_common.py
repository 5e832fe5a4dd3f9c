"""Shared helpers of the asv suite: the profile, random problems, JIT warm-up.

``CFE_ASV_PROFILE=quick`` shrinks every benchmark to a few thousand instances
(CI smoke run); the default ``full`` profile uses n = 1e6 for the kernels.
"""

import os
import time

import numpy as np

QUICK = os.environ.get("CFE_ASV_PROFILE", "full") == "quick"
N = 4_000 if QUICK else 1_000_000
SHAPES = ["10x20", "100x20"] if QUICK else ["10x20", "10x64", "100x20", "100x64"]
LAM = 0.1


def shape(text):
    """'m x d' parameter -> (m, d)."""
    m, d = (int(v) for v in text.split("x"))
    return m, d


def problem(m, d, n, dtype, seed=0):
    """Instance-major Rt, Ct (n, m), X (d, m), Yt (n, d) of the given dtype."""
    rng = np.random.default_rng(seed)
    Rt = rng.random((n, m)).astype(dtype)
    Ct = rng.random((n, m)).astype(dtype)
    X = rng.standard_normal((d, m)).astype(dtype)
    Yt = rng.standard_normal((n, d)).astype(dtype)
    return Rt, Ct, X, Yt


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
