"""Each trainer on a sparse P against the same trainer on the dense P with NaN at the unstored entries (Numba):
wall seconds of a whole fit, interleaved, medians, and the largest difference of their probabilities.

    python benchmarks/scripts/sparse_trainers.py   # --n 50000 --m 200 --observed 0.05 --d 8 --iters 3 --repeat 3
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np

from sparse_backends import sparse_ensemble


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--m", type=int, default=200)
    parser.add_argument("--observed", type=float, default=0.05)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trainers", default="als,exact,joint")
    args = parser.parse_args()

    from cfe_fast import CFEnsembleClassifier

    warnings.simplefilter("ignore")
    S, labels = sparse_ensemble(args.n, args.m, args.observed)
    S = S.astype(np.float64)
    dense = np.full(S.shape, np.nan)
    dense[np.repeat(np.arange(S.shape[0]), np.diff(S.indptr)), S.indices] = S.data
    print(f"n={args.n} m={args.m} nnz={S.nnz} d={args.d} float64, {args.iters} iterations; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| trainer | sparse wall s | dense-NaN wall s | dense / sparse | max abs(p_sparse - p_dense) |")
    print("|---|---|---|---|---|")
    for trainer in args.trainers.split(","):
        params = dict(latent_dim=args.d, max_iter=args.iters, tol=0.0, random_state=0, trainer=trainer,
                      joint_steps_per_iter=5)
        times = {"sparse": [], "dense": []}
        fitted = {}
        for round_ in range(args.repeat + 1):  # the first round compiles
            for kind, X in (("sparse", S), ("dense", dense)):
                start = time.perf_counter()
                fitted[kind] = CFEnsembleClassifier(**params).fit(X, labels)
                if round_:
                    times[kind].append(time.perf_counter() - start)
        sparse, dense_s = statistics.median(times["sparse"]), statistics.median(times["dense"])
        gap = np.abs(fitted["sparse"].transductive_proba_ - fitted["dense"].transductive_proba_).max()
        print(f"| {trainer} | {sparse:.2f} | {dense_s:.2f} | {dense_s / sparse:.1f} | {gap:.1e} |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
