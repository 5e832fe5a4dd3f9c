"""The GPU batch job: every device check of the CuPy backend in one run, its results named by the device.

Four steps, each writing one file under ``--out`` (``<device>`` as in gpu_sweep.py):

1. ``gpu_tests_<device>.log``: the suite's ``gpu``-marked tests, then every test of the CuPy
   backend (test_cupy_backend.py and the ``cupy`` cases of the contract, missing-entry and
   multi-class suites, which compute on the device where there is one): the device, CuPy
   and CUDA versions and each run's pytest summary, then their output.
2. ``gpu_sweep_<device>.md``: :mod:`gpu_sweep` at (m, d, n) = (100, 64, 1e7), float32 and
   float64: the sweep time and the Gram GEMMs' rate against the measured cuBLAS rate.
3. ``gpu_trainers_<device>.md``: fits with each trainer on ``backend="cupy"`` in float32 and
   float64: seconds per iteration and the probabilities' error against the float64 Numba
   fit of the same data (Numba's kernels are tested against the reference).
4. ``gpu_batch_<device>.md``: ``cfe-fast fit --backend cupy`` of an n x m float32 .npy
   (no labels: the reconstruction alone) in a child process: wall time split into read,
   transfer to the device, fit and write, and the child's peak resident memory against
   the input's size.

    python benchmarks/scripts/gpu_job.py --out "$OUT"          # with CuPy and a CUDA device: about 8 minutes
    python benchmarks/scripts/gpu_job.py --smoke --out /tmp/j  # the same logic on the CPU: tiny sizes, NumPy

``--smoke`` runs every step with NumPy as the array module (the CuPy backend computes with
NumPy where no GPU is usable); its figures say nothing about a GPU. Linux only: the batch
step reads its child's memory from /proc.
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SIZES = {  # the job's sizes on a GPU, and on the CPU with --smoke
    "gpu": dict(sweep=["--shapes", "100x64", "--ns", "1e7", "--streamed-ns", "--cpu-n", "20000"],
                trainers=dict(n=200_000, m=100, d=20, iters=3), batch=dict(n=10**7, m=100, d=64, iters=5)),
    "smoke": dict(sweep=["--xp", "numpy", "--shapes", "6x4", "--ns", "400", "--streamed-ns", "--cpu-n", "100",
                         "--gemm-size", "64", "--repeat", "1"],
                  trainers=dict(n=300, m=8, d=3, iters=2), batch=dict(n=3000, m=10, d=3, iters=2)),
}
TEST_RUNS = {  # pytest arguments of each run of step 1
    "gpu": [["-m", "gpu", "tests"],
            ["-m", "not slow and not gpu", "-k", "cupy", "tests/test_cupy_backend.py", "tests/test_backend_contract.py",
             "tests/test_missing.py", "tests/test_multiclass.py", "tests/test_sparse_cupy.py"]],
    "smoke": [["-m", "gpu", "tests/test_cupy_backend.py"]],
}
TRAINERS = ("als", "exact", "joint")
DTYPES = ("float32", "float64")


def _gpu_sweep():
    spec = importlib.util.spec_from_file_location("gpu_sweep", Path(__file__).with_name("gpu_sweep.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slug(device):
    return re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()


def versions(xp):
    """Lines naming the machine, the array module and, on CuPy, the CUDA runtime and driver."""
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, {platform.platform()}"]
    if xp is np:
        lines.append("array module: numpy (no GPU used)")
        return lines
    runtime, driver = xp.cuda.runtime.runtimeGetVersion(), xp.cuda.runtime.driverGetVersion()
    lines.append(f"cupy {xp.__version__}; CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}, "
                 f"driver {driver // 1000}.{driver % 1000 // 10}")
    return lines


# ------------------------------------------------------------------ step 1
def run_tests(path, runs, header, timeout):
    """Run pytest once per argument list; write the header, each run's summary line, then the outputs."""
    summaries, outputs = [], []
    for args in runs:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as expired:
            output, code = f"{expired.stdout or ''}{expired.stderr or ''}", f"timed out after {timeout} s"
        summary = next((line.strip(" =") for line in reversed(output.splitlines())
                        if re.search(r"\d+ (passed|failed|skipped|deselected|error)", line)), "no summary")
        summaries.append(f"pytest {' '.join(args)}: {summary} (exit {code}, {time.perf_counter() - start:.0f} s)")
        outputs.append(f"$ {' '.join(command[1:])}\n{output}")
    path.write_text("\n".join(header + [""] + summaries + ["", *outputs]))
    return summaries


# ------------------------------------------------------------------ step 3
def _per_iteration(model):
    """(first iteration s, median of the later ones s) from the fit's cumulative ``time`` history."""
    seconds = np.diff(np.concatenate([[0.0], model.history_["time"]]))
    return float(seconds[0]), float(np.median(seconds[1:])) if seconds.size > 1 else float("nan")


def trainer_rows(n, m, d, iters):
    """One row per (trainer, dtype) on backend="cupy", against the float64 Numba fit of the same data."""
    from cfe_fast import CFEnsembleClassifier, make_ensemble

    data = make_ensemble(n_classifiers=m, n_instances=n, labeled_fraction=0.2, random_state=0)
    params = dict(latent_dim=d, max_iter=iters, tol=0.0, random_state=0)
    rows = []
    for trainer in TRAINERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quality and collapse warnings of short fits; cupy without a GPU
            want = CFEnsembleClassifier(backend="numba", trainer=trainer, **params).fit(data.P, data.labels)
            for dtype in DTYPES:
                got = CFEnsembleClassifier(backend="cupy", trainer=trainer, dtype=dtype, **params).fit(
                    data.P, data.labels)
                error = got.transductive_proba_ - want.transductive_proba_
                rows.append(dict(trainer=trainer, dtype=dtype, cupy=_per_iteration(got),
                                 numba=_per_iteration(want), max_error=float(np.abs(error).max()),
                                 rel_error=float(np.linalg.norm(error) / np.linalg.norm(want.transductive_proba_))))
    return rows


def write_trainers(path, device, rows, sizes):
    lines = [f"# Trainers on the CuPy backend — {device}", "",
             f"Produced by `python benchmarks/scripts/gpu_job.py`: make_ensemble(n_classifiers={sizes['m']}, "
             f"n_instances={sizes['n']}, labeled_fraction=0.2), latent_dim={sizes['d']}, max_iter={sizes['iters']}, "
             "tol=0, random_state=0. Seconds per iteration from `history_['time']`: the first (compiles "
             "kernels), then the median of the others. Error: the transductive probabilities against the "
             "float64 Numba fit (its per-iteration times for comparison, on this machine's cores).", "",
             "| trainer | dtype | cupy first s | cupy s / iter | numba float64 s / iter | max abs error | "
             "relative error |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['trainer']} | {r['dtype']} | {r['cupy'][0]:.3g} | {r['cupy'][1]:.3g} | "
                     f"{r['numba'][1]:.3g} | {r['max_error']:.1e} | {r['rel_error']:.1e} |")
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ step 4
def write_input(path, n, m, seed=0):
    """An n x m float32 .npy of classifier probabilities, written in blocks of rows (never whole in memory)."""
    rng = np.random.default_rng(seed)
    P = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, m))
    skill = rng.uniform(0.5, 2.0, m)
    for start in range(0, n, 1_000_000):
        stop = min(n, start + 1_000_000)
        signs = np.where(rng.random(stop - start) < 0.1, 1.0, -1.0)
        logits = signs[:, None] * skill + rng.standard_normal((stop - start, m))
        P[start:stop] = 1.0 / (1.0 + np.exp(-logits))
    P.flush()
    del P
    return path.stat().st_size


def _memory(field):
    """A memory figure of this process from /proc/self/status (Linux), in bytes: VmRSS now, VmHWM its peak.

    Not ``getrusage``: its peak survives ``exec`` and would be the parent's.
    """
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) * 1024


def cli_child(result_path, argv):
    """Run ``cfe-fast`` with timers around reading, device placement, the fit and the writers; save them as JSON."""
    from cfe_fast import CFEnsembleClassifier, cli, report
    from cfe_fast.backends import get_backend
    from cfe_fast.backends.cupy.arrays import gpu_module
    from cfe_fast.io import outputs, tables

    cupy = gpu_module()
    if cupy is not None:
        cupy.zeros(1)  # the CUDA context: part of the baseline, not of the data
    baseline = _memory("VmRSS")
    seconds = {"read": 0.0, "transfer": 0.0, "fit_total": 0.0, "write": 0.0}

    def timed(owner, name, key):
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                if cupy is not None:
                    cupy.cuda.Device().synchronize()
                seconds[key] += time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(tables, "read_table", "read")
    timed(get_backend("cupy"), "place", "transfer")
    timed(CFEnsembleClassifier, "fit", "fit_total")
    for owner, name in ((tables, "write_predictions"), (CFEnsembleClassifier, "save"), (report, "write_report"),
                        (outputs.OutputSet, "commit")):
        timed(owner, name, "write")
    start = time.perf_counter()
    code = cli.main(argv)
    seconds["wall"] = time.perf_counter() - start
    seconds["fit"] = seconds.pop("fit_total") - seconds["transfer"]
    peak = _memory("VmHWM")
    Path(result_path).write_text(json.dumps(dict(seconds=seconds, peak_rss=peak, baseline_rss=baseline, code=code)))
    return code


def run_batch(work, n, m, d, iters, timeout):
    """Write the input, run the CLI fit in a child process; returns (input bytes, command, child's result)."""
    source, result = work / "batch_input.npy", work / "batch_timings.json"
    size = write_input(source, n, m)
    options = ["--backend", "cupy", "--dtype", "float32", "--latent-dim", str(d), "--max-iter", str(iters),
               "--tol", "0", "--no-report", "--quiet", "--force"]
    argv = ["fit", str(source), "-o", str(work / "batch_output"), *options]
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, __file__, "--cli-child", str(result), "--", *argv], cwd=ROOT, check=True,
                   timeout=timeout, env={**os.environ, "PYTHONPATH": path})
    return size, ["fit", "INPUT.npy", "-o", "OUTPUT_DIR", *options], json.loads(result.read_text())


def write_batch(path, device, size, argv, result, n, m):
    s, gib = result["seconds"], 2.0**30
    lines = [f"# `cfe-fast fit --backend cupy` of a {n} x {m} float32 .npy — {device}", "",
             f"Produced by `python benchmarks/scripts/gpu_job.py` (`cfe-fast {' '.join(argv)}`), "
             "the CLI in a child process with timers around its reader, the backend's placement on the device "
             "(synchronised), the estimator's fit and the writers. The input has no labels: the fit is the "
             f"reconstruction alone. Exit code {result['code']}.", "",
             "| read s | transfer s | fit s | write s | wall s | input GiB | peak RSS GiB | RSS before reading GiB "
             "| peak / input | (peak - before) / input |", "|---|---|---|---|---|---|---|---|---|---|",
             f"| {s['read']:.3g} | {s['transfer']:.3g} | {s['fit']:.3g} | {s['write']:.3g} | {s['wall']:.3g} | "
             f"{size / gib:.2f} | {result['peak_rss'] / gib:.2f} | {result['baseline_rss'] / gib:.2f} | "
             f"{result['peak_rss'] / size:.2f} | {(result['peak_rss'] - result['baseline_rss']) / size:.2f} |", "",
             "fit = the estimator's fit less the transfer (data checks, confidence, iterations, the final "
             "probabilities); write = predictions, model file, report.md and their publication. RSS before "
             "reading: the interpreter, the imports and (on a GPU) the CUDA context."]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, NumPy as the array module (no GPU)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results (default %(default)s)")
    parser.add_argument("--work", type=Path, help="folder for the batch step's input (default: a temporary one)")
    parser.add_argument("--steps", nargs="+", choices=["tests", "sweep", "trainers", "batch"],
                        default=["tests", "sweep", "trainers", "batch"])
    parser.add_argument("--test-timeout", type=int, default=180, help="seconds per pytest run")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cli-child"]:  # the batch step's child: --cli-child RESULT.json -- CLI ARGUMENTS
        return cli_child(argv[1], argv[3:])
    args = parser.parse_args(argv)

    from cfe_fast.backends.cupy.arrays import gpu_module

    mode = "smoke" if args.smoke else "gpu"
    xp = np if args.smoke else gpu_module()
    if xp is None:
        parser.exit(2, "gpu_job.py: CuPy with a CUDA device is needed (or run with --smoke)\n")
    sweep, sizes = _gpu_sweep(), SIZES[mode]
    device = sweep.device_name(xp)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []

    def done(path, say=True):
        written.append(path)
        if say:
            print(f"wrote {path}", flush=True)

    if "tests" in args.steps:
        path = args.out / f"gpu_tests_{_slug(device)}.log"
        header = [f"# pytest on {device}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", *versions(xp)]
        for line in run_tests(path, TEST_RUNS[mode], header, args.test_timeout):
            print(line, flush=True)
        done(path)
    if "sweep" in args.steps:
        done(sweep.main([*sizes["sweep"], "--dtypes", *DTYPES, "--out", str(args.out)]), say=False)  # it says so
    if "trainers" in args.steps:
        path = args.out / f"gpu_trainers_{_slug(device)}.md"
        write_trainers(path, device, trainer_rows(**sizes["trainers"]), sizes["trainers"])
        done(path)
    if "batch" in args.steps:
        b = sizes["batch"]
        with tempfile.TemporaryDirectory(dir=args.work) as work:
            size, cli_argv, result = run_batch(Path(work), b["n"], b["m"], b["d"], b["iters"], timeout=400)
        path = args.out / f"gpu_batch_{_slug(device)}.md"
        write_batch(path, device, size, cli_argv, result, b["n"], b["m"])
        done(path)
    return written


if __name__ == "__main__":
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
