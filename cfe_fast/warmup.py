"""Compile every Numba kernel ahead of the first fit (for batch jobs and container images).

Numba compiles a kernel on its first call with new argument types and keeps
it in its cache on disk (``NUMBA_CACHE_DIR``, else next to the package); a
process that finds it there loads it in milliseconds. :func:`warm_up` fits
tiny models through every path the Numba backend has -- each trainer and
solver, both dtypes, the dual and the primal instance step -- so that the
cache holds every kernel a fit can call.
"""

import time
import warnings

import numpy as np

from .backends import CAPABILITIES
from .parameters import DTYPES

#: (classifiers, latent dimension): the first takes the dual instance step, the second the primal
SHAPES = ((6, 5), (6, 2))


def configurations():
    """Keyword arguments of one tiny CFEnsembleClassifier per path of the Numba backend."""
    capabilities = CAPABILITIES["numba"]
    for dtype in DTYPES:
        for m, d in SHAPES:
            for trainer in capabilities.trainers:
                solvers = capabilities.solvers if trainer == "als" else ("auto",)  # only "als" takes a solver
                for solver in solvers:
                    yield {"n_classifiers": m, "latent_dim": d, "trainer": trainer, "solver": solver,
                           "dtype": dtype}


def warm_up(report=None):
    """Fit and predict with a tiny model per path of :func:`configurations`; returns the seconds taken.

    Parameters
    ----------
    report : callable (str) or None
        Called with a line per configuration (the CLI prints them).
    """
    from .datasets import make_ensemble
    from .estimator import CFEnsembleClassifier

    start = time.perf_counter()
    for config in configurations():
        config = dict(config)
        data = make_ensemble(n_classifiers=config.pop("n_classifiers"), n_instances=200, random_state=0)
        model = CFEnsembleClassifier(max_iter=2, random_state=0, **config)
        with warnings.catch_warnings():  # two iterations of a tiny fit: its quality warnings mean nothing here
            warnings.simplefilter("ignore")
            model.fit(data.P, data.labels).predict_proba(np.ascontiguousarray(data.P[:50]))
        if report is not None:
            report(", ".join(f"{key}={value}" for key, value in config.items()))
    return time.perf_counter() - start
