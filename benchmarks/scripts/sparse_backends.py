"""A sparse P fitted by each backend that takes one: wall and CPU seconds of a whole fit, interleaved, medians.

The Dask fit runs on an in-process cluster (one worker, threads = the cores
Numba uses) from a ``scipy.sparse`` P it splits itself (``--chunk-mb`` of
stored entries per chunk); "cupy" without a GPU is its array-module generic
code on NumPy/scipy.sparse. The fits are checked to give the same
probabilities as the Numba fit (the largest absolute difference is printed).

    python benchmarks/scripts/sparse_backends.py   # --n 200000 --m 200 --observed 0.05 --d 16 --repeat 3
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as sp


def sparse_ensemble(n, m, observed, seed=0):
    rng = np.random.default_rng(seed)
    nnz = int(n * m * observed)
    rows, cols = rng.integers(0, n, nnz), rng.integers(0, m, nnz)
    keys = np.unique(rows.astype(np.int64) * m + cols)
    truth = (rng.random(n) < 0.3).astype(float)
    rows, cols = keys // m, keys % m
    values = np.clip(0.5 + 0.3 * (truth[rows] - 0.5) + 0.2 * rng.standard_normal(keys.size), 0, 1)
    P = sp.csr_array((values.astype(np.float32), (rows, cols)), shape=(n, m))
    labels = np.where(rng.random(n) < 0.01, truth, np.nan)
    return P, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--m", type=int, default=200)
    parser.add_argument("--observed", type=float, default=0.05)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-mb", type=float, default=16)
    parser.add_argument("--backends", default="numba,dask,cupy")
    args = parser.parse_args()

    import distributed
    import numba

    from cfe_fast import CFEnsembleClassifier, config

    warnings.simplefilter("ignore")
    config.DASK_CHUNK_BYTES = int(args.chunk_mb * 2**20)
    P, labels = sparse_ensemble(args.n, args.m, args.observed)
    print(f"n={args.n} m={args.m} nnz={P.nnz} d={args.d} float32, {args.iters} iterations; "
          f"load average {os.getloadavg()[0]:.1f}")
    backends = args.backends.split(",")
    params = dict(latent_dim=args.d, dtype="float32", max_iter=args.iters, tol=0.0, random_state=0)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=numba.get_num_threads(),
                            dashboard_address=":0") as client:
        def fit(backend):
            extra = dict(client=client) if backend == "dask" else {}
            return CFEnsembleClassifier(backend=backend, **params, **extra).fit(P, labels)

        reference = {b: np.asarray(fit(b).transductive_proba_) for b in backends}  # also compiles
        wall, cpu = {b: [] for b in backends}, {b: [] for b in backends}
        for _ in range(args.repeat):
            for b in backends:
                w, c = time.perf_counter(), time.process_time()
                fit(b)
                wall[b].append(time.perf_counter() - w)
                cpu[b].append(time.process_time() - c)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("| backend | wall s (median) | CPU s (median) | wall / numba | max |p - p_numba| |")
    print("|---|---|---|---|---|")
    base = statistics.median(wall["numba"]) if "numba" in wall else None
    for b in backends:
        w = statistics.median(wall[b])
        ratio = f"{w / base:.2f}" if base else "-"
        diff = np.abs(reference[b] - reference["numba"]).max() if "numba" in reference else float("nan")
        print(f"| {b} | {w:.2f} | {statistics.median(cpu[b]):.2f} | {ratio} | {diff:.1e} |")


if __name__ == "__main__":
    main()
