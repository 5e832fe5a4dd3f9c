"""Per-sweep seconds of the Numba ALS half-steps against the NumPy reference.

One ALS sweep = classifier step + instance step. The reference solves one
system per instance in a Python loop; at n = 1e5 it is timed on a slice of
instances and extrapolated linearly (its cost is exactly linear in n), which
the output says. Also reports the JIT compile time of a first call and whether
Numba's on-disk cache was used (a second process loads the compiled kernels).

    python benchmarks/sweep_speed.py [--n 100000] [--repeat 3] [--reference-n 2000]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

SHAPES = [(10, 20), (100, 64)]


def _median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _compile_time(cache_dir):
    """Seconds of the first kernel calls in a fresh process using ``cache_dir`` as Numba's cache."""
    code = (
        "import time, numpy as np; t = time.perf_counter(); import cfe_fast.numba_backend as nb;"
        "r = np.random.default_rng(0); X = r.random((3, 5)); R = r.random((5, 9));"
        "nb.update_classifier_factors(nb.update_instance_factors(X, R, R, 1.0), R, R, 1.0);"
        "X = r.random((3, 2)); R = r.random((2, 9)); nb.update_instance_factors(X, R, R, 1.0);"
        "print(time.perf_counter() - t)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(run.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-n", type=int, default=2000, help="instances timed for the reference")
    args = parser.parse_args()

    import cfe_fast.numba_backend as nb
    from cfe_fast import reference as ref

    with tempfile.TemporaryDirectory() as cache_dir:  # an empty Numba cache: the first process compiles
        first = _compile_time(cache_dir)
        second = _compile_time(cache_dir)
    print(f"JIT compile, first call in a fresh process with an empty cache: {first:.2f} s; in a second process: "
          f"{second:.2f} s ({'the on-disk cache is used' if second < 0.5 * first else 'no cache benefit seen'})\n")
    print(f"n = {args.n}, median of {args.repeat}; reference timed on {args.reference_n} instances and scaled to n")
    print("| m | d | dtype | numba sweep s | reference sweep s (extrapolated) | speed-up |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for m, d in SHAPES:
        for dtype in (np.float64, np.float32):
            R = rng.random((m, args.n)).astype(dtype)
            C = rng.random((m, args.n)).astype(dtype)
            X = rng.standard_normal((d, m)).astype(dtype)
            Y = rng.standard_normal((d, args.n)).astype(dtype)
            nb.update_classifier_factors(Y[:, :50], R[:, :50], C[:, :50], 0.1)
            nb.update_instance_factors(X, R[:, :50], C[:, :50], 0.1)

            def fast():
                nb.update_instance_factors(nb.update_classifier_factors(Y, R, C, 0.1), R, C, 0.1)

            k = args.reference_n
            with threadpool_limits(1):  # the reference is one system at a time

                def slow():
                    ref.update_instance_factors(ref.update_classifier_factors(Y[:, :k], R[:, :k], C[:, :k], 0.1),
                                                R[:, :k], C[:, :k], 0.1)

                t_ref = _median_time(slow, 1) * args.n / k
            t_fast = _median_time(fast, args.repeat)
            print(f"| {m} | {d} | {np.dtype(dtype).name} | {t_fast:.3f} | {t_ref:.1f} | {t_ref / t_fast:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
