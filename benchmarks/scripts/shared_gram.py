"""Uniform confidence: the shared-Gram half-steps against the per-system kernels, and the closed-form start.

With confidence 1 at every entry every system of a half-step is the same
(``cfe_fast/backends/shared_gram.py``, docs/method.md "ALS half-steps"). In one
run, alternating: the Numba backend's half-steps with C = 1 given as an array
(the per-system kernels) and with C None (the shared Gram), per shape and
dtype, median seconds scaled to n = 1e6; then a default fit on
``make_ensemble`` (m = 18, n = 60,000, half labeled) against the same fit with
C = 1 given as an array (the per-system kernels from a random start, as
before the closed-form start): iterations, L_rec at the end, seconds.

    PYTHONPATH=. python benchmarks/scripts/shared_gram.py [--n 60000] [--repeat 7] [--rounds 3]

Current results: ``benchmarks/results/shared_gram_cpu2.md``.
"""

import argparse
import os
import pathlib
import sys
import time
import warnings

import numpy as np

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast._threads import single_threaded_blas
from cfe_fast.backends import get_backend

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "suite"))  # for _common
from _common import median_seconds  # noqa: E402

SHAPES = ((18, 17), (100, 20), (1000, 32))


def kernel_rows(n, repeat):
    backend = get_backend("numba")
    rng = np.random.default_rng(0)
    rows = []
    for m, d in SHAPES:
        n_shape = max(2000, n * 18 // m)  # about the same bytes of R per shape
        for dtype in (np.float64, np.float32):
            P = rng.random((n_shape, m)).astype(dtype)
            R, ones = P.T, np.ones_like(P).T
            X = rng.standard_normal((d, m)).astype(dtype)
            Y = rng.standard_normal((n_shape, d)).astype(dtype).T
            steps = {
                "instance step (with L_rec)": lambda C: backend.update_instance_factors(X, R, C, 0.1, with_loss=True),
                "classifier step": lambda C: backend.update_classifier_factors(Y, R, C, 0.1),
            }
            with single_threaded_blas():  # as in a fit: the kernels parallelise themselves
                for name, step in steps.items():
                    step(ones), step(None)  # compiled, warm
                    general = median_seconds(lambda: step(ones), repeat)
                    shared = median_seconds(lambda: step(None), repeat)
                    scale = 1e6 / n_shape
                    rows.append(f"| {m}, {d}, {np.dtype(dtype).name} | {name} | {general * scale:.3g} | "
                                f"{shared * scale:.3g} | {general / shared:.1f}x |")
    return rows


def fit_rows(n, rounds):
    data = make_ensemble(n_classifiers=18, n_instances=n, labeled_fraction=0.5, random_state=0)
    P, y = np.ascontiguousarray(data.R.T), data.labels
    versions = {"shared Gram, closed-form start": "uniform", "per-system kernels, random start": np.ones(P.shape)}
    results = {name: [] for name in versions}
    for _ in range(rounds):
        for name, confidence in versions.items():
            model = CFEnsembleClassifier(confidence=confidence, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                model.fit(P, y)
                results[name].append((time.perf_counter() - start, model))
    rows = []
    for name, runs in results.items():
        seconds = float(np.median([s for s, _ in runs]))
        model = runs[-1][1]
        rows.append(f"| {name} | {model.n_iter_} | {model.converged_} | {model.history_['reconstruction'][-1]:.4g} | "
                    f"{seconds:.3f} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.1f}\n")
    print("| m, d, dtype | half-step | per-system kernels s per 1e6 | shared Gram s per 1e6 | speed-up |")
    print("|---|---|---|---|---|")
    print("\n".join(kernel_rows(args.n, args.repeat)))
    print(f"\nDefault fit, m = 18, n = {args.n:,}, median of {args.rounds} alternating rounds:\n")
    print("| version | n_iter_ | converged_ | L_rec at the end | fit s |")
    print("|---|---|---|---|---|")
    print("\n".join(fit_rows(args.n, args.rounds)))
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
