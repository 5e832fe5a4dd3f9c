"""One ALS sweep on a sparse P (stored entries = observed): time, share of the GEMM peak, the dense masked
path on the same data, and the peak memory of a fit.

P is (n, m) with each entry observed with probability ``--observed``
(random, float values in [0, 1]); "uniform" confidence. Measured in one
process, one after the other, so that the ratios hold on a shared machine:

* the sparse sweep: the classifier half-step (CSC entries) and the instance
  half-step with its loss (CSR entries) of :mod:`cfe_fast.backends.numba.sparse_steps`,
  median of ``--repeat``;
* model flops of an exact sweep on the observed entries, the count of
  ``compare.py`` with nnz in place of m n: ``2 nnz d^2`` (both symmetric
  Gram builds) ``+ (m + n) d^3 / 3`` (Cholesky), and that over the GEMM peak
  of this machine (``compare.gemm_peak``, all threads) as the time the
  model would take at peak;
* the dense masked path (NaN at the unobserved entries: confidence 0 there,
  :func:`cfe_fast.backends.numba.instance_step.solve_instances` and
  ``classifier_step.solve_classifiers``, solver "auto") on the first
  ``--dense-n`` instances of the same P, scaled linearly to n (its cost is
  linear in n) where ``--dense-n`` < n;
* with ``--cpu``: the sparse half-steps' CPU seconds (all threads), which
  a loaded machine distorts less than wall seconds;
* with ``--memory``: a full fit of CFEnsembleClassifier (``--fit-iter``
  iterations, ~2000 random labels, the defaults otherwise) on the sparse P:
  the peak resident memory above the resident
  memory before ``fit`` (sampled every 5 ms), next to the sparse storage
  (P's values and column indices and row pointers, as given) and the factors
  ((n + m) d values).

    python benchmarks/scripts/sparse_sweep.py [--m 1000] [--n 1000000] [--observed 0.05] [--d 32]
        [--dtype float32] [--dense-n 20000] [--repeat 3] [--memory] [--fit-iter 3] [--cpu]

Current results: ``benchmarks/results/sparse_sweep_cpu2.md``.
"""

import argparse
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "suite"))  # for _common
from _common import cpu_model, median_seconds  # noqa: E402
from compare import LAM, gemm_peak  # noqa: E402

from cfe_fast import CFEnsembleClassifier  # noqa: E402
from cfe_fast.backends.numba import classifier_step, instance_step  # noqa: E402
from cfe_fast.backends.numba.sparse_steps import solve_sparse_classifiers, solve_sparse_instances  # noqa: E402
from cfe_fast.backends.numba.sparse import layouts  # noqa: E402


def random_sparse(n, m, observed, dtype, seed=0):
    """A canonical CSR (n, m) with each entry stored with probability ``observed``, values uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    columns, counts = [], []
    for s in range(0, n, 1 << 14):
        stored = rng.random((min(n, s + (1 << 14)) - s, m), dtype=np.float32) < observed
        columns.append(np.nonzero(stored)[1].astype(np.int32))  # row-major: sorted within each row
        counts.append(stored.sum(axis=1))
    columns = np.concatenate(columns)
    pointers = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    pointers = pointers.astype(np.int32 if pointers[-1] < 2**31 else np.int64)  # scipy's index dtype
    values = rng.random(columns.size, dtype=np.float32).astype(dtype)
    return sp.csr_array((values, columns, pointers), shape=(n, m))


def median_cpu_seconds(fn, repeat):
    """Median CPU time of the process (all its threads) over ``repeat`` calls of ``fn()``: on a shared
    machine the wall time also counts the waits for a core, the CPU time hardly."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return float(np.median(times))


def sparse_sweep(P, d, repeat, timer=median_seconds):
    """Median seconds (of ``timer``) of the classifier and the instance half-step (with its loss) on P's entries."""
    by_instance, by_classifier = layouts(P, np.empty(0, dtype=P.dtype))  # uniform confidence
    rng = np.random.default_rng(1)
    Yt = (rng.standard_normal((P.shape[0], d)) / np.sqrt(d)).astype(P.dtype)
    X = solve_sparse_classifiers(Yt, by_classifier, LAM)  # JIT warm-up too
    solve_sparse_instances(X, by_instance, LAM, loss=True)
    t_cls = timer(lambda: solve_sparse_classifiers(Yt, by_classifier, LAM), repeat)
    t_inst = timer(lambda: solve_sparse_instances(X, by_instance, LAM, loss=True), repeat)
    return t_cls, t_inst


def dense_sweep(P, d, repeat):
    """Median seconds of the dense masked half-steps on P's rows (NaN -> confidence 0, value 0.5)."""
    Rt = np.full(P.shape, 0.5, dtype=P.dtype)
    Ct = np.zeros(P.shape, dtype=P.dtype)
    rows = np.repeat(np.arange(P.shape[0]), np.diff(P.indptr))
    Rt[rows, P.indices] = P.data
    Ct[rows, P.indices] = 1.0
    rng = np.random.default_rng(1)
    Yt = (rng.standard_normal((P.shape[0], d)) / np.sqrt(d)).astype(P.dtype)
    X = classifier_step.solve_classifiers(Yt, Rt, Ct, LAM)
    instance_step.solve_instances(X, Rt, Ct, LAM, loss=True)
    t_cls = median_seconds(lambda: classifier_step.solve_classifiers(Yt, Rt, Ct, LAM), repeat)
    t_inst = median_seconds(lambda: instance_step.solve_instances(X, Rt, Ct, LAM, loss=True), repeat)
    return t_cls, t_inst


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fit_peak_memory(P, d, iterations, seed=0):
    """(peak resident bytes above the start during a fit, seconds of the fit)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(P.shape[0]) < 2000 / P.shape[0], (rng.random(P.shape[0]) < 0.3).astype(float), np.nan)
    model = CFEnsembleClassifier(latent_dim=d, max_iter=iterations, tol=0.0, dtype=P.dtype.name, random_state=0)
    small = P[:2000]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CFEnsembleClassifier(latent_dim=d, max_iter=1, dtype=P.dtype.name).fit(small, y[:2000])  # JIT warm-up
        start = resident_bytes()
        peak, done = [start], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], resident_bytes())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        model.fit(P, y)
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
    return peak[0] - start, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--observed", type=float, default=0.05)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--dense-n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--fit-iter", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="also the sparse steps' CPU seconds (all threads)")
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    P = random_sparse(args.n, args.m, args.observed, dtype)
    n, m, d, nnz = args.n, args.m, args.d, P.nnz
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the start")
    print(f"P: n = {n}, m = {m}, {100 * nnz / (n * m):.2f} % observed (nnz = {nnz}), d = {d}, {dtype.name}\n")
    peak = gemm_peak(dtype, os.cpu_count())
    t_cls, t_inst = sparse_sweep(P, d, args.repeat)
    sweep = t_cls + t_inst
    gflop = (2.0 * nnz * d * d + (m + n) * d**3 / 3.0) / 1e9
    at_peak = gflop / peak
    dense_n = min(args.dense_n, n)
    dense_cls, dense_inst = dense_sweep(P[:dense_n], d, args.repeat)
    scale = n / dense_n
    dense = (dense_cls + dense_inst) * scale
    print("| | seconds |")
    print("|---|---|")
    print(f"| sparse classifier step | {t_cls:.3g} |")
    print(f"| sparse instance step (with L_rec) | {t_inst:.3g} |")
    print(f"| **sparse sweep** | **{sweep:.3g}** |")
    print(f"| model flops at the GEMM peak ({gflop:.1f} GFLOP at {peak:.0f} GFLOP/s) | {at_peak:.3g} |")
    scaled = f", measured on {dense_n} instances x {scale:.0f}" if scale > 1 else ""
    print(f"| dense masked sweep (classifier {dense_cls * scale:.3g} + instance {dense_inst * scale:.3g}{scaled}) "
          f"| {dense:.3g} |")
    print(f"\nSparse sweep: {sweep / at_peak:.2f}x the model time at peak ({100 * at_peak / sweep:.0f} % of peak, "
          f"{gflop / sweep:.1f} GFLOP/s); {dense / sweep:.1f}x faster than the dense masked path.")
    if args.cpu:
        cpu_cls, cpu_inst = sparse_sweep(P, d, args.repeat, median_cpu_seconds)
        print(f"\nCPU seconds (all threads): classifier step {cpu_cls:.3g}, instance step {cpu_inst:.3g}, "
              f"sweep {cpu_cls + cpu_inst:.3g}.")
    if args.memory:
        storage = P.data.nbytes + P.indices.nbytes + P.indptr.nbytes
        factors = (n + m) * d * dtype.itemsize
        extra, seconds = fit_peak_memory(P, d, args.fit_iter)
        print(f"\nFit ({args.fit_iter} iterations, {seconds:.3g} s): peak resident memory above the start "
              f"{extra / 2**20:.0f} MiB; sparse storage {storage / 2**20:.0f} MiB + factors "
              f"{factors / 2**20:.0f} MiB = {(storage + factors) / 2**20:.0f} MiB; P given plus the fit's peak: "
              f"{(storage + extra) / (storage + factors):.2f}x (storage + factors).")


if __name__ == "__main__":
    main()
