"""asv benchmarks of a whole fit and of fold-in prediction (CFEnsembleClassifier),
and the peak memory of a fit relative to its data.

Full profile: the real-size case of the project (m = 18 classifiers,
n = 60,000 instances, d = 9, 50 iterations; fold-in of 60,000 new instances)
and large ones for memory (m = 18, n = 1e6; thousands of classifiers at the n of
``MANY_CLASSIFIERS``, d = 32). Quick profile: n = 3,000, 5 iterations, and a few
thousand instances for memory.
"""

import json
import subprocess
import sys

from ._common import MANY_CLASSIFIERS, QUICK, shape

N_FIT = 3_000 if QUICK else 60_000
ITERS = 5 if QUICK else 50
N_MEMORY = 20_000 if QUICK else 1_000_000


def _model(dtype, solver, max_iter):
    from cfe_fast import CFEnsembleClassifier

    return CFEnsembleClassifier(latent_dim=9, max_iter=max_iter, tol=0.0, random_state=0, dtype=dtype, solver=solver)


class Fit:
    """Fit (all ALS iterations, aggregator, losses) and fold-in of new instances."""

    params = (["float64", "float32"], ["auto", "cg"])
    param_names = ["dtype", "solver"]
    number = 1
    repeat = (1, 3, 120.0)
    timeout = 600

    def setup(self, dtype, solver):
        from cfe_fast import make_ensemble

        self.data = make_ensemble(n_classifiers=18, n_instances=2 * N_FIT, random_state=0)
        self.P, self.labels = self.data.P[:N_FIT], self.data.labels[:N_FIT]
        self.P_new = self.data.P[N_FIT:]
        _model(dtype, solver, 2).fit(self.P[:300], self.labels[:300])  # JIT warm-up
        self.model = _model(dtype, solver, ITERS).fit(self.P, self.labels)

    def time_fit(self, dtype, solver):
        _model(dtype, solver, ITERS).fit(self.P, self.labels)

    def peakmem_fit(self, dtype, solver):
        _model(dtype, solver, ITERS).fit(self.P, self.labels)

    def time_predict_proba(self, dtype, solver):
        self.model.predict_proba(self.P_new)


_MEMORY_PROBE = """
import json, resource, sys
import numpy as np
from cfe_fast import CFEnsembleClassifier, make_ensemble

def rss():  # current resident set size, bytes
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

n, m, d, dtype, solver, confidence, iters = sys.argv[1:]
n, m, d, iters = int(n), int(m), int(d), int(iters)
kw = dict(latent_dim=d, dtype=dtype, solver=solver, confidence=confidence)
small = make_ensemble(n_classifiers=m, n_instances=400, random_state=0)
CFEnsembleClassifier(max_iter=2, **kw).fit(small.P, small.labels)  # JIT
base = rss()
rng = np.random.default_rng(0)
P = rng.random((n, m), dtype=np.dtype(dtype).type)  # no float64 copy of P
labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
model = CFEnsembleClassifier(max_iter=iters, tol=0.0, **kw).fit(P, labels)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak, "base": base, "data": P.nbytes}))
"""


def fit_memory_ratio(n, m, d, dtype, solver="auto", confidence="uniform", iters=3):
    """Peak memory of a fit over (bytes of R and C + the factors), measured in a fresh process.

    The numerator is the peak resident set size minus that of the process
    after imports and JIT warm-up, before R was created: R itself, C (where
    it is stored), the factors and every temporary of the fit. The target is
    <= 1.5. R is random in [0, 1), half of the instances labeled (30 % of
    them positive); ``iters`` outer iterations.
    """
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(n), str(m), str(d), dtype, solver, confidence,
                          str(iters)], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    itemsize = probe["data"] // (n * m)
    factors = (n + m) * d * itemsize
    return (probe["peak"] - probe["base"]) / (2 * probe["data"] + factors)


class FitMemory:
    """:func:`fit_memory_ratio` at m = 18, d = 9, n = ``N_MEMORY``, 3 iterations."""

    params = (["float64", "float32"], ["auto", "cg"])
    param_names = ["dtype", "solver"]
    timeout = 600
    unit = "ratio"

    def track_fit_memory_ratio(self, dtype, solver):
        return fit_memory_ratio(N_MEMORY, 18, 9, dtype, solver)

    track_fit_memory_ratio.unit = "ratio"


class ManyClassifiersFitMemory:
    """:func:`fit_memory_ratio` with thousands of classifiers, float32, d = 32, 2 iterations, at the n of
    ``MANY_CLASSIFIERS``: the default confidence and "label_aware", whose C the Numba kernels compute
    per chunk (C is never stored, so the ratio is about 0.5)."""

    params = (list(MANY_CLASSIFIERS), ["uniform", "label_aware"])
    param_names = ["m x d", "confidence"]
    timeout = 1800
    unit = "ratio"

    def track_fit_memory_ratio(self, mxd, confidence):
        m, d = shape(mxd)
        return fit_memory_ratio(MANY_CLASSIFIERS[mxd], m, d, "float32", confidence=confidence, iters=2)

    track_fit_memory_ratio.unit = "ratio"
