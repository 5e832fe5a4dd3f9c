"""Before/after timings of two versions of cfe_fast, interleaved in one process.

A shared machine drifts by 10-20 % within minutes, so timings of two versions
taken in separate runs cannot be compared. This script imports the working
tree's ``cfe_fast`` (that of the repository holding this script, whatever is
installed) and another commit's (extracted with ``git archive`` under the
package name ``cfe_fast_base``) side by side and times them in alternation
on the same arrays: the ALS half-steps per shape (seconds scaled to n = 1e6)
and the end-to-end fit (m = 18, n = 60,000, 50 iterations, the default
latent_dim unless ``--latent-dim`` is given). It prints
a markdown table with the speed-up and the largest difference of the fitted
probabilities. Either version may have the package layout of before or after
the backends package (``_common.numba_kernels`` finds the kernels of each).

Usage::

    python benchmarks/scripts/ab_compare.py BASE_COMMIT [--n 100000] [--rounds 2] [--no-sweeps] [--latent-dim D]
"""

import argparse
import importlib
import io
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "suite"))  # for _common
from _common import median_seconds, numba_kernels  # noqa: E402

SHAPES = ((10, 20), (10, 64), (100, 20), (100, 64))
BASE_NAME = "cfe_fast_base"
ROOT = pathlib.Path(subprocess.run(["git", "-C", str(pathlib.Path(__file__).resolve().parent), "rev-parse",
                                    "--show-toplevel"], check=True, capture_output=True, text=True).stdout.strip())


def import_base(commit):
    """Import ``cfe_fast`` of ``commit`` as the package ``cfe_fast_base``.

    The copy is kept in the temporary directory, one per commit, so that its
    Numba cache serves the next run.
    """
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], check=True, capture_output=True,
                         text=True).stdout.strip()
    workdir = pathlib.Path(tempfile.gettempdir()) / "cfe_fast_ab" / sha
    package = workdir / BASE_NAME
    if not package.exists():
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "cfe_fast"], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(workdir, filter="data")
        for source in (workdir / "cfe_fast").rglob("*.py"):  # module names in strings point to the copy
            source.write_text(source.read_text().replace('"cfe_fast.', f'"{BASE_NAME}.'))
        (workdir / "cfe_fast").rename(package)
    sys.path.insert(0, str(workdir))
    return importlib.import_module(BASE_NAME)


def sweep_rows(versions, n, rounds):
    """Classifier / instance step seconds per 1e6 instances for every shape and dtype, interleaved."""
    rows = []
    for m, d in SHAPES:
        for dtype in (np.float64, np.float32):
            rng = np.random.default_rng(0)
            Rt = rng.random((n, m)).astype(dtype)
            Ct = rng.random((n, m)).astype(dtype)
            X = rng.standard_normal((d, m)).astype(dtype)
            Yt = rng.standard_normal((n, d)).astype(dtype)
            times = {name: [[], []] for name in versions}
            for _ in range(rounds):
                for name, package in versions.items():
                    nb = numba_kernels(package.__name__)
                    nb.solve_classifiers(Yt[:1000], Rt[:1000], Ct[:1000], 0.1)  # JIT warm-up
                    nb.solve_instances(X, Rt[:1000], Ct[:1000], 0.1)
                    times[name][0].append(median_seconds(lambda: nb.solve_classifiers(Yt, Rt, Ct, 0.1), 3))
                    times[name][1].append(median_seconds(lambda: nb.solve_instances(X, Rt, Ct, 0.1), 3))
            scale = 1e6 / n
            cells = []
            for name in versions:
                cls, inst = (scale * float(np.median(t)) for t in times[name])
                cells.append((cls, inst, cls + inst))
            (_, _, before), (_, _, after) = cells
            rows.append(f"| {m}, {d}, {np.dtype(dtype).name} | "
                        + " | ".join(f"{c:.3g} / {i:.3g} / {s:.3g}" for c, i, s in cells)
                        + f" | {before / after:.2f}x |")
    return rows


def fit_rows(versions, rounds, latent_dim=None):
    """End-to-end fit seconds (median over interleaved rounds) and the probability difference."""
    rows = []
    for dtype in ("float64", "float32"):
        times = {name: [] for name in versions}
        proba = {}
        for _ in range(rounds):
            for name, package in versions.items():
                data = package.make_ensemble(n_classifiers=18, n_instances=60_000, random_state=0)
                model = package.CFEnsembleClassifier(max_iter=2, tol=0.0, random_state=0, dtype=dtype)
                if latent_dim is not None:
                    model.set_params(latent_dim=latent_dim)
                model.fit(data.P[:500], data.labels[:500])  # JIT warm-up
                model.set_params(max_iter=50)
                times[name].append(median_seconds(lambda: model.fit(data.P, data.labels), 3))
                proba[name] = model.transductive_proba_
        before, after = (float(np.median(times[name])) for name in versions)
        gap = np.abs(np.subtract(*proba.values())).max()
        rows.append(f"| {dtype} | {before:.3f} | {after:.3f} | {before / after:.2f}x (probabilities differ by "
                    f"{gap:.1e} max abs) |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit to compare the working tree against")
    parser.add_argument("--n", type=int, default=100_000, help="instances of the sweep problems")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median over them)")
    parser.add_argument("--no-sweeps", action="store_true", help="only the end-to-end fit")
    parser.add_argument("--latent-dim", type=int, default=None, help="of the fit (default: the estimator's)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # the working tree's cfe_fast, not an installed one
    import cfe_fast

    if pathlib.Path(cfe_fast.__file__).resolve().parent != ROOT / "cfe_fast":
        raise SystemExit(f"ab_compare.py: imported {cfe_fast.__file__}, not the working tree's cfe_fast")
    versions = {args.base: import_base(args.base), "working tree": cfe_fast}
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Interleaved A/B: {args.base} against the working tree, load average {load} at the start\n")
    if not args.no_sweeps:
        print(f"Seconds per sweep scaled to n = 1,000,000 (measured at n = {args.n:,}, solver auto, "
              f"median of 3 in each of {args.rounds} interleaved rounds)\n")
        print("| m, d, dtype | before: classifier / instance / sweep s | after: classifier / instance / "
              "sweep s | speed-up |")
        print("|---|---|---|---|")
        print("\n".join(sweep_rows(versions, args.n, args.rounds)))
        print()
    latent_dim = "the default latent_dim" if args.latent_dim is None else f"d = {args.latent_dim}"
    print(f"End-to-end fit, m = 18, n = 60,000, {latent_dim}, 50 iterations (median of 3 in each of {args.rounds} "
          "interleaved rounds, after JIT warm-up)\n")
    print("| fit | before s | after s | speed-up |")
    print("|---|---|---|---|")
    print("\n".join(fit_rows(versions, args.rounds, args.latent_dim)))


if __name__ == "__main__":
    main()
