"""Dask backend: per-sweep overhead against in-memory Numba, and an out-of-core fit.

Part 1 (``--n``, default 1e6 instances; m=10 and m=100 classifiers, d=20,
float64): seconds per ALS sweep (classifier step + instance step) of the
in-memory Numba kernels (all cores) and of :class:`DaskEngine` on LocalClusters
of 1 worker x 1 thread, 1 worker x 2 threads and 2 workers x 1 thread, with R
and C persisted on the workers; median of ``--repeat`` sweeps after one warm-up
sweep. Peak RSS per worker process is sampled every 0.1 s.

Part 2 (``--ooc-n`` instances, m=100, d=20): R and C written to a Zarr store
(uncompressed, chunks of ``--ooc-chunk`` rows) in a temporary directory, then
``CFEnsembleClassifier(backend="dask")`` fitted for ``--ooc-iter`` iterations
on 2 workers limited to ``--memory-limit`` each, reading R and C from disk every
sweep. Reports whether a worker was lost, seconds per iteration, and peak RSS
per worker. The store is deleted afterwards.

    python benchmarks/scripts/dask_scaling.py [--n 1000000] [--ooc-n 2500000] [--memory-limit 1GB]

Current results: ``benchmarks/results/dask_scaling_cpu2.md``.
"""

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from functools import partial

import numpy as np
import psutil


@contextmanager
def peak_rss(client):
    """Yield a dict worker address -> peak RSS (bytes) sampled while the block runs."""
    pids = client.run(lambda: __import__("os").getpid())
    peaks = {address: 0 for address in pids}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for address, pid in pids.items():
                try:
                    peaks[address] = max(peaks[address], psutil.Process(pid).memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            stop.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


def gib(value):
    return f"{value / 2**30:.2f}"


def problem(n, m, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.random((n, m))
    labels = np.where(rng.random(n) < 0.2, 1.0, 0.0)
    labels[rng.random(n) > 0.1] = np.nan  # 10 % labeled
    return P, np.abs(P - 0.5), labels


def numba_sweep(P, C, d, repeat):
    from cfe_fast.backends.numba.classifier_step import solve_classifiers
    from cfe_fast.backends.numba.instance_step import solve_instances

    X = np.random.default_rng(1).standard_normal((d, P.shape[1]))
    solve_instances(X, P[:100], C[:100], 0.1)  # compile / load the cache
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        Yt = solve_instances(X, P, C, 0.1)
        X = solve_classifiers(Yt, P, C, 0.1)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def dask_sweep(P, C, labels, d, repeat, workers, threads, chunk_rows):
    from distributed import Client, LocalCluster

    from cfe_fast.backends.dask.data import as_instance_chunks
    from cfe_fast.backends.dask.engine import DaskEngine
    from cfe_fast.core.losses import class_weights
    from cfe_fast.training.state import initial_instance_factors

    with LocalCluster(n_workers=workers, threads_per_worker=threads, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        Pd = as_instance_chunks(P, "P", client, chunks=chunk_rows)
        Cd = as_instance_chunks(C, "C", client, chunks=chunk_rows)
        omega = class_weights(labels[~np.isnan(labels)])
        engine = DaskEngine(client, Pd, labels, omega, 0.1, Cd)
        engine.init_instance_factors(np.random.default_rng(0), partial(initial_instance_factors, d=d, dtype=P.dtype))
        times = []
        with peak_rss(client) as peaks:
            for _ in range(repeat + 1):
                start = time.perf_counter()
                engine.instance_step(engine.classifier_step())
                times.append(time.perf_counter() - start)
        return statistics.median(times[1:]), max(peaks.values())


def part_one(args):
    print(f"## Per-sweep seconds at n = {args.n:.0e}, d = 20, float64 (median of {args.repeat}, "
          f"after a warm-up sweep; chunks of {args.chunk} rows)\n")
    print("| m | in-memory numba | dask 1w x 1t | dask 1w x 2t | dask 2w x 1t | overhead (2w x 1t / numba) "
          "| peak RSS per worker GiB (1x1, 1x2, 2x1) |")
    print("|---|---|---|---|---|---|---|")
    for m in (10, 100):
        P, C, labels = problem(args.n, m)
        t_numba = numba_sweep(P, C, 20, args.repeat)
        results = [dask_sweep(P, C, labels, 20, args.repeat, w, t, args.chunk) for w, t in ((1, 1), (1, 2), (2, 1))]
        cells = " | ".join(f"{t:.2f}" for t, _ in results)
        rss = ", ".join(gib(r) for _, r in results)
        print(f"| {m} | {t_numba:.2f} | {cells} | {results[2][0] / t_numba:.2f} | {rss} |", flush=True)


def write_zarr(path, n, m, chunk_rows):
    import zarr

    rng = np.random.default_rng(7)
    R = zarr.create_array(f"{path}/P.zarr", shape=(n, m), chunks=(chunk_rows, m), dtype="f8", compressors=None)
    C = zarr.create_array(f"{path}/C.zarr", shape=(n, m), chunks=(chunk_rows, m), dtype="f8", compressors=None)
    labels = np.full(n, np.nan)
    for s in range(0, n, chunk_rows):
        e = min(n, s + chunk_rows)
        block = rng.random((e - s, m))
        R[s:e] = block
        C[s:e] = np.abs(block - 0.5)
        chunk_labels = np.where(rng.random(e - s) < 0.2, 1.0, 0.0)
        chunk_labels[rng.random(e - s) > 0.1] = np.nan
        labels[s:e] = chunk_labels
    return labels


def part_two(args):
    import dask.array as da
    from distributed import Client, LocalCluster

    from cfe_fast import CFEnsembleClassifier

    m, n = 100, args.ooc_n
    print(f"\n## Out-of-core fit: n = {n:.2e}, m = {m}, d = 20, float64, R + C on disk = "
          f"{gib(2 * n * m * 8)} GiB (Zarr, uncompressed, {args.ooc_chunk} rows per chunk)\n")
    print(f"free disk at {tempfile.gettempdir()}: {gib(shutil.disk_usage(tempfile.gettempdir()).free)} GiB")
    path = tempfile.mkdtemp(prefix="cfe_dask_ooc_")
    try:
        start = time.perf_counter()
        labels = write_zarr(path, n, m, args.ooc_chunk)
        print(f"writing the store: {time.perf_counter() - start:.1f} s")
        with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=args.memory_limit,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            limit = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
            print(f"2 workers x 1 thread, memory limit {args.memory_limit} each: total {gib(limit)} GiB "
                  f"< R + C = {gib(2 * n * m * 8)} GiB")
            before = set(client.scheduler_info()["workers"])
            model = CFEnsembleClassifier(latent_dim=20, confidence=da.from_zarr(f"{path}/C.zarr"), max_iter=args.ooc_iter,
                                         tol=0.0, random_state=0, backend="dask", client=client)
            with peak_rss(client) as peaks:
                start = time.perf_counter()
                model.fit(da.from_zarr(f"{path}/P.zarr"), labels)
                total = time.perf_counter() - start
            after = set(client.scheduler_info()["workers"])
            per_iteration = np.diff([0.0] + model.history_["time"])
            print(f"fit: {total:.1f} s in all (validation of R and C = 1 read of each, pass 0 = 1 read, then 1 read "
                  f"per iteration); seconds per iteration: {', '.join(f'{t:.1f}' for t in per_iteration)}")
            print(f"loss per iteration: {', '.join(f'{v:.6g}' for v in model.history_['loss'])}")
            print("peak RSS per worker: " + ", ".join(f"{gib(v)} GiB" for v in peaks.values())
                  + f"; workers lost or restarted: {len(before - after)}")
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=100_000, help="rows per chunk in part 1")
    parser.add_argument("--ooc-n", type=int, default=2_500_000)
    parser.add_argument("--ooc-chunk", type=int, default=50_000)
    parser.add_argument("--ooc-iter", type=int, default=3)
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--skip", choices=("sweeps", "ooc"), help="skip one part")
    args = parser.parse_args()
    if args.skip != "sweeps":
        part_one(args)
    if args.skip != "ooc":
        part_two(args)


if __name__ == "__main__":
    main()
