"""GPU figures of the CuPy backend (issue 5, point 6), written to benchmarks/results/.

Measures, on the current CUDA device:

* the device's cuBLAS GEMM rate (a large square matmul, float32 and float64);
* per (m, d), n and dtype: the ALS sweep time (classifier step + instance step)
  with data resident on the device, and streamed from host memory;
* the achieved rate of the Gram build (the packed-triangle GEMMs of both
  half-steps, timed alone with the kernel's chunking) as a share of the GEMM rate;
* the 2-thread Numba CPU sweep on ``--cpu-n`` instances, scaled linearly to n
  (its cost is linear in n), and the GPU speed-up over it;
* the float32 error: instance factors of a float32 sweep against float64 on the
  same inputs, and whether CuPy's TF32 mode is on (``CUPY_TF32``).

Every timed region ends with a device synchronisation; times are medians.

    python benchmarks/scripts/gpu_sweep.py                      # the issue's figures (needs CuPy + GPU)
    python benchmarks/scripts/gpu_sweep.py --xp numpy --ns 2000 --shapes 10x20 --cpu-n 500   # logic check on CPU

Current results: ``benchmarks/results/gpu_sweep_<device>.md`` (written by the script).
"""

import argparse
import os
import re
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from cfe_fast.backends.cupy import arrays, kernels, solve

SHAPES = ["100x64", "10x20"]
TARGET = {"shape": (100, 64), "n": 10**7, "sweep_s": {"float32": 0.4, "float64": 0.6}, "speedup": 50.0,
          "gemm_share": 0.70}


def _synchronize(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def _median_seconds(xp, fn, repeat):
    times = []
    for _ in range(repeat):
        _synchronize(xp)
        start = time.perf_counter()
        fn()
        _synchronize(xp)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gemm_rate(xp, dtype, size, repeat):
    """Measured GEMM rate (FLOP/s) of a size x size matmul, on random operands (not constants)."""
    _, _, a, b = problem(xp, size, size, size, dtype, seed=3)
    a @ b
    return 2.0 * size**3 / _median_seconds(xp, lambda: a @ b, repeat)


def problem(xp, m, d, n, dtype, seed=0):
    """Random X (d, m), Y (d, n), R, C (m, n) generated directly in module xp."""
    rng = xp.random.default_rng(seed) if xp is np else xp.random.RandomState(seed)
    draw = rng.random if xp is np else rng.random_sample
    R = draw((m, n)).astype(dtype)
    C = (0.1 + draw((m, n))).astype(dtype)
    X = (draw((d, m)) - 0.5).astype(dtype)
    Y = (draw((d, n)) - 0.5).astype(dtype)
    return X, Y, R, C


def gram_seconds(xp, X, Y, C, repeat):
    """Time of the Gram GEMMs alone (instance step primal + classifier step), as the kernels
    compute them (the same functions and chunk sizes)."""
    d, m = X.shape
    dtype = C.dtype
    tril = solve.tril_indices(d, xp)
    PXt = xp.ascontiguousarray(kernels._packed_outer(X, tril).T)
    size_i = arrays.chunk_size(xp, kernels._instance_bytes(m, d, dtype, xp), None)
    size_c = arrays.chunk_size(xp, kernels._classifier_bytes(m, d, dtype), None)

    def grams():
        if m >= d:
            for _, _, (C_c,) in arrays.stream_columns((C,), size_i, xp):
                kernels._primal_grams(PXt, C_c)
        for _, _, (Y_c, C_c) in arrays.stream_columns((Y, C), size_c, xp):
            kernels._classifier_grams(Y_c, C_c, tril)

    flops = 2.0 * PXt.shape[1] * m * C.shape[1] * (2 if m >= d else 1)
    return _median_seconds(xp, grams, repeat), flops


def _sweep(xp, Y, R, C, lam=0.1):
    """One ALS sweep of the CuPy backend computing in module xp."""
    return kernels.update_instance_factors(kernels.update_classifier_factors(Y, R, C, lam, xp=xp), R, C, lam, xp=xp)


def cpu_sweep_seconds(m, d, n, dtype, cpu_n, repeat):
    """2-thread Numba sweep on cpu_n instances, scaled linearly to n."""
    import numba

    from cfe_fast.backends import get_backend

    nb = get_backend("numba")
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    X, Y, R, C = problem(np, m, d, cpu_n, dtype, seed=1)
    nb.update_instance_factors(nb.update_classifier_factors(Y, R, C, 0.1), R, C, 0.1)  # compile

    def sweep():
        nb.update_instance_factors(nb.update_classifier_factors(Y, R, C, 0.1), R, C, 0.1)

    return _median_seconds(np, sweep, repeat) * n / cpu_n


def float32_error(xp, m, d, n):
    """Relative error of float32 instance factors against float64 on the same inputs."""
    X, _, R, C = problem(xp, m, d, n, np.float32, seed=2)
    Y32 = kernels.update_instance_factors(X, R, C, 0.1, xp=xp)
    Y64 = kernels.update_instance_factors(X.astype(np.float64), R.astype(np.float64), C.astype(np.float64), 0.1, xp=xp)
    return float(xp.linalg.norm(Y32.astype(np.float64) - Y64) / xp.linalg.norm(Y64))


def device_name(xp):
    if xp is np:
        return "cpu-numpy"
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def measure(args, xp):
    """Yield the rows of the results table (dicts)."""
    gemm = {dt: gemm_rate(xp, dt, args.gemm_size, args.repeat) for dt in ("float32", "float64")}
    yield {"gemm": gemm}
    for shape in args.shapes:
        m, d = (int(v) for v in shape.split("x"))
        for n in args.ns:
            for dt in args.dtypes:
                X, Y, R, C = problem(xp, m, d, n, dt)
                warm = min(n, 4096)
                _sweep(xp, Y[:, :warm], R[:, :warm], C[:, :warm])
                row = {"m": m, "d": d, "n": n, "dtype": dt,
                       "sweep_s": _median_seconds(xp, partial(_sweep, xp, Y, R, C), args.repeat)}
                row["gram_s"], row["gram_flops"] = gram_seconds(xp, X, Y, C, args.repeat)
                row["gemm_share"] = row["gram_flops"] / row["gram_s"] / gemm[dt]
                if n in args.streamed_ns and xp is not np:
                    host = [arrays.to_host(a) for a in (Y, R, C)]
                    row["streamed_s"] = _median_seconds(xp, partial(_sweep, xp, *host), args.repeat)
                    del host
                del X, Y, R, C
                if xp is not np:
                    xp.get_default_memory_pool().free_all_blocks()
                row["cpu_s"] = cpu_sweep_seconds(m, d, n, dt, min(n, args.cpu_n), args.repeat)
                yield row


def _short(n):
    """1000000 -> '1e6'."""
    return f"{n:.0e}".replace("e+0", "e").replace("e+", "e")


def write_markdown(path, device, rows, args, xp, seconds):
    gemm = rows[0]["gemm"]
    lines = [
        f"# CuPy backend sweep figures — {device}",
        "",
        f"Produced by `python benchmarks/scripts/gpu_sweep.py {' '.join(args.argv)}` in {seconds:.0f} s. "
        f"Array module: {xp.__name__} {xp.__version__}; CUPY_TF32={os.environ.get('CUPY_TF32', '(unset)')}.",
        "",
        f"Measured GEMM rate ({args.gemm_size}^3 matmul): float32 {gemm['float32'] / 1e9:.0f} GFLOP/s, "
        f"float64 {gemm['float64'] / 1e9:.0f} GFLOP/s.",
        "",
        "One sweep = classifier step + instance step (lam = 0.1), median of "
        f"{args.repeat}. Gram = the packed-triangle GEMMs of both steps (instance step only when m >= d), "
        "timed alone with the kernel's chunking; its rate is 2 T m n FLOP per step, T = d(d+1)/2. "
        f"CPU = Numba, 2 threads, timed on {args.cpu_n} instances and scaled linearly to n.",
        "",
        "| m | d | n | dtype | sweep s (device) | sweep s (streamed from host) | Gram GFLOP/s | % of GEMM rate "
        "| CPU sweep s | speed-up vs CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows[1:]:
        streamed = f"{r['streamed_s']:.3g}" if "streamed_s" in r else "—"
        lines.append(
            f"| {r['m']} | {r['d']} | {_short(r['n'])} | {r['dtype']} | {r['sweep_s']:.3g} | {streamed} | "
            f"{r['gram_flops'] / r['gram_s'] / 1e9:.0f} | {100 * r['gemm_share']:.0f} % | {r['cpu_s']:.3g} | "
            f"{r['cpu_s'] / r['sweep_s']:.0f}x |"
        )
    target = [r for r in rows[1:] if (r["m"], r["d"]) == TARGET["shape"] and r["n"] == TARGET["n"]]
    lines += ["", "## Targets (m=100, d=64, n=1e7)", ""]
    for r in target:
        limit = TARGET["sweep_s"][r["dtype"]]
        checks = [
            (f"sweep <= {limit} s", r["sweep_s"] <= limit, f"{r['sweep_s']:.3f} s"),
            (f">= {TARGET['speedup']:.0f}x the CPU path", r["cpu_s"] / r["sweep_s"] >= TARGET["speedup"],
             f"{r['cpu_s'] / r['sweep_s']:.0f}x"),
            (f">= {100 * TARGET['gemm_share']:.0f} % of the GEMM rate in the Gram build",
             r["gemm_share"] >= TARGET["gemm_share"], f"{100 * r['gemm_share']:.0f} %"),
        ]
        lines += [f"- {r['dtype']}, {name}: {value} — {'met' if ok else 'NOT met'}" for name, ok, value in checks]
    if not target:
        lines.append("- not measured in this run")
    err = float32_error(xp, 100, 64, min(max(args.ns), 100_000))
    lines += ["", f"float32 accuracy: instance factors of a float32 step vs float64 on the same inputs "
              f"(m=100, d=64, n={min(max(args.ns), 100_000)}): relative error {err:.1e}.", ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--xp", choices=["cupy", "numpy"], default="cupy")
    parser.add_argument("--shapes", nargs="+", default=SHAPES, help="m x d pairs, e.g. 100x64")
    parser.add_argument("--ns", nargs="+", type=lambda s: int(float(s)), default=[10**6, 10**7])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--streamed-ns", nargs="*", type=lambda s: int(float(s)), default=[10**6],
                        help="n at which the host-streamed sweep is also timed")
    parser.add_argument("--cpu-n", type=int, default=100_000, help="instances timed for the CPU path")
    parser.add_argument("--gemm-size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]

    xp = np if args.xp == "numpy" else arrays.gpu_module()
    if xp is None:
        parser.exit(2, "gpu_sweep.py: CuPy with a CUDA device is needed (or run with --xp numpy)\n")
    start = time.perf_counter()
    rows = []
    for row in measure(args, xp):
        rows.append(row)
        print(row, flush=True)
    device = device_name(xp)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_sweep_{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-').lower()}.md"
    write_markdown(path, device, rows, args, xp, time.perf_counter() - start)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
