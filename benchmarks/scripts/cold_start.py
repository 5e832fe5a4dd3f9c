"""Cold start: the import time and the first default fit of a fresh process.

Each figure is measured in a fresh Python process, so nothing is imported or
compiled beforehand:

* ``import cfe_fast`` beyond ``numpy`` and ``scipy`` (imported first, timed apart);
* the default ``CFEnsembleClassifier().fit(P, labels)`` then ``predict_proba(P)``
  (the estimator imported beforehand; the Numba backend loads in the fit) on the data ``cfe-fast demo`` uses (:func:`cfe_fast.make_ensemble` with
  10 classifiers and 5,000 instances), with an empty Numba cache
  (``NUMBA_CACHE_DIR`` a new temporary folder): the compile included;
* the same in a second process that reuses that cache.

The CPU time of the cold run (user + system, all threads) is printed too: a
busy machine stretches the wall time of a compile more than its CPU time.

Medians of ``--repeat`` runs (each cold run with a cache folder of its own),
written as markdown to stdout and, with ``--output``, to a file.

    python benchmarks/scripts/cold_start.py [--repeat 3] [--output benchmarks/results/cold_start_cpu2.md]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "suite"))  # for _common
from _common import cpu_model  # noqa: E402

IMPORT_CODE = """
import json, time
t0 = time.perf_counter()
import numpy, scipy
t1 = time.perf_counter()
import cfe_fast
t2 = time.perf_counter()
print(json.dumps({"numpy_scipy": t1 - t0, "cfe_fast": t2 - t1}))
"""

FIT_CODE = """
import json, resource, time
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
t0 = time.perf_counter()
from cfe_fast import CFEnsembleClassifier, make_ensemble
data = make_ensemble(n_classifiers=10, n_instances=5000, random_state=0)
t1, c1 = time.perf_counter(), cpu()
model = CFEnsembleClassifier().fit(data.P, data.labels)
t2 = time.perf_counter()
model.predict_proba(data.P)
t3 = time.perf_counter()
print(json.dumps({"setup": t1 - t0, "fit": t2 - t1, "predict_proba": t3 - t2, "first_run": t3 - t1,
                  "first_run_cpu": cpu() - c1}))
"""


def run_child(code, cache_dir):
    """The JSON line a fresh process running ``code`` prints, with Numba's cache in ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode:
        raise RuntimeError(f"the child process failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine():
    """The CPU model, its logical cores and the Python version."""
    return f"{cpu_model()}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def measure(repeat):
    """Per-run figures: the import, the cold and the warm first run."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as cache_dir:
            imports = run_child(IMPORT_CODE, cache_dir)
            cold = run_child(FIT_CODE, cache_dir)
            warm = run_child(FIT_CODE, cache_dir)
        runs.append({"import": imports, "cold": cold, "warm": warm})
    return runs


def table(runs):
    """Markdown table: median and every run of each figure."""
    rows = [
        ("import numpy + scipy", lambda r: r["import"]["numpy_scipy"]),
        ("import cfe_fast (beyond numpy + scipy)", lambda r: r["import"]["cfe_fast"]),
        ("first fit + predict_proba, empty Numba cache", lambda r: r["cold"]["first_run"]),
        ("  its CPU time (all threads)", lambda r: r["cold"]["first_run_cpu"]),
        ("  of which fit", lambda r: r["cold"]["fit"]),
        ("first fit + predict_proba, warm Numba cache", lambda r: r["warm"]["first_run"]),
        ("  of which fit", lambda r: r["warm"]["fit"]),
    ]
    lines = ["| figure | median s | runs s |", "|---|---|---|"]
    for name, pick in rows:
        values = [pick(r) for r in runs]
        lines.append(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per figure (default %(default)s)")
    parser.add_argument("--output", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    runs = measure(args.repeat)
    text = (f"Machine: {machine()}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.\n"
            f"Data: make_ensemble(n_classifiers=10, n_instances=5000), the default CFEnsembleClassifier.\n"
            f"Medians of {args.repeat} fresh processes.\n\n{table(runs)}\n")
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
