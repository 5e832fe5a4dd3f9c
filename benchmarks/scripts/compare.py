"""One-run speed comparison of an ALS sweep: roofline, original algorithm, cfe_fast, implicit.

Everything is measured in the same process, one after the other, so that the
ratios hold on a shared, noisy machine. Printed as markdown:

* the GEMM roofline of this machine: ``np.dot`` from Numba (SciPy's OpenBLAS,
  the BLAS the kernels call), best of several square products, 1 and all threads;
* the original per-instance algorithm: :mod:`cfe_fast.reference` (one NumPy
  solve per instance / classifier, BLAS single-threaded). It is timed on
  ``--reference-n`` instances and extrapolated linearly (its cost is exactly
  linear in n); the table says so;
* cfe_fast's Numba kernels for every solver (``auto`` = the documented rule,
  and each variant the rule can pick, plus the approximate ``cg``);
* implicit's CPU ALS (``implicit.cpu._als.least_squares`` exact Cholesky and
  ``least_squares_cg`` with 3 conjugate-gradient steps) when implicit is
  installed. implicit factorises an implicit-feedback objective: the dense R is
  passed the confidence matrix C as a CSR matrix with every entry stored, so
  it solves ``sum_ui c_ui (1 - x_u^T y_i)^2 + reg (|X|^2 + |Y|^2)``: the same
  confidence-weighted ridge systems ``sum_i c_ui y_i y_i^T + reg I`` as
  CF-Ensemble's, with preference 1 in place of the targets r_ui on the
  right-hand side. The objective differs, the work of a sweep does not: one
  d x d system per row and per column of a dense m x n matrix. It is a fair speed anchor, not an
  accuracy comparison. implicit keeps the matrix in float32 whatever the
  factor dtype.

Times are seconds per full sweep (classifier step + instance step) scaled to
``--per`` instances (default 1e6, linear in n); medians of ``--repeat`` runs.
GFLOP/s use the model flop count of an exact sweep (SPEC.md):
``2 m n d^2`` (both symmetric Gram builds) ``+ (m + n) d^3 / 3`` (Cholesky),
the same count for every method, so the column is a speed figure, not the
work a method actually did (the dual form and CG do less).

With ``--fit`` also: a full fit of CFEnsembleClassifier (m = 18,
n = 60,000, 50 iterations, after JIT warm-up) and the JIT compile time of a
fresh process with an empty Numba cache and a second one that reuses it.

    python benchmarks/scripts/compare.py [--n 1000000] [--shapes 10x20,10x64,100x20,100x64]
                                 [--dtypes float64,float32] [--repeat 3] [--fit]

A shape may name the n it is measured at (``m x d @ n``). Thousands of classifiers (the shapes of
the asv ``ManyClassifiers`` benchmark and of issue 19), each at its real n, float32, exact solver
only (``--skip`` leaves out implicit, whose copy of C as a CSR matrix would not fit in memory
there, and the approximate CG)::

    python benchmarks/scripts/compare.py --shapes 1000x32@1000000,5000x32@200000 --dtypes float32 --repeat 3 \
        --reference-n 200 --skip implicit,cg

(results: ``benchmarks/results/thousands_of_classifiers_cpu2.md``; the rows "C by rule" time the
half-steps with C computed per chunk from R, as a fit with a named confidence strategy does).

Current results: ``benchmarks/results/compare_cpu2.md``.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from cfe_fast.backends import SOLVERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "suite"))  # for _common
from _common import cpu_model, median_seconds, numba_kernels  # noqa: E402

LAM = 0.1
EXACT_SOLVERS = tuple(s for s in SOLVERS if s not in ("auto", "cg"))  # ("dual", "primal")


def model_gflop(m, n, d):
    """Model flops (GFLOP) of one exact ALS sweep: symmetric Grams + Cholesky factorisations."""
    return (2.0 * m * n * d * d + (m + n) * d**3 / 3.0) / 1e9


def gemm_peak(dtype, threads, size=1536, repeat=7):
    """Best GFLOP/s of a square GEMM through Numba's np.dot (SciPy's OpenBLAS)."""
    from numba import njit

    @njit
    def dot(a, b):
        return np.dot(a, b)

    rng = np.random.default_rng(0)
    a = rng.random((size, size)).astype(dtype)
    b = rng.random((size, size)).astype(dtype)
    with threadpool_limits(threads, user_api="blas"):
        dot(a, b)
        best = min(median_seconds(lambda: dot(a, b), 1) for _ in range(repeat))
    return 2.0 * size**3 / best / 1e9


def _solvers(nb, m, d, skip=()):
    """Solvers to time: "auto", the exact form it does not pick where that form makes sense
    (the dual only for m < d), and "cg" unless ``skip`` names it."""
    other = [s for s in EXACT_SOLVERS if s != nb.choose_solver(m, d) and not (s == "dual" and m >= d)]
    return ["auto", *other, *(["cg"] if "cg" not in skip else [])]


def parse_shape(text, n):
    """(m, d, n) of a shape "m x d" (measured at ``n``) or "m x d @ n"."""
    shape, _, at = text.lower().partition("@")
    m, d = (int(v) for v in shape.split("x"))
    return m, d, int(at) if at else n


def random_problem(rng, m, d, n, dtype):
    """Rt, Ct (n, m), X (d, m), Yt (n, d) drawn in ``dtype`` (no float64 copy of an (n, m) array)."""
    Rt = rng.random((n, m), dtype=dtype)
    Ct = rng.random((n, m), dtype=dtype)
    X = rng.standard_normal((d, m), dtype=dtype)
    Yt = rng.standard_normal((n, d), dtype=dtype)
    return Rt, Ct, X, Yt


def measure_cfe(nb, X, Yt, Rt, Ct, solver, repeat):
    """Median seconds of the classifier and instance half-steps of one solver."""
    kw_c, kw_i = {"solver": solver}, {"solver": solver}
    if solver == "cg":  # warm start from the exact solution of the other half-step's input
        kw_c["init"] = nb.solve_classifiers(Yt, Rt, Ct, LAM)
        kw_i["init"] = Yt
    small = slice(0, 64)
    nb.solve_classifiers(Yt[small], Rt[small], Ct[small], LAM, **kw_c)  # JIT warm-up
    nb.solve_instances(X, Rt[small], Ct[small], LAM, **dict(kw_i, **({"init": Yt[small]} if solver == "cg" else {})))
    t_cls = median_seconds(lambda: nb.solve_classifiers(Yt, Rt, Ct, LAM, **kw_c), repeat)
    t_inst = median_seconds(lambda: nb.solve_instances(X, Rt, Ct, LAM, **kw_i), repeat)
    return t_cls, t_inst


def measure_rule(nb, X, Yt, Rt, repeat):
    """Median seconds of the exact half-steps ("auto") with C as the rule of "label_aware" (half of the
    instances labeled), each chunk's block of C computed from R inside the kernels, as a fit's C is."""
    from cfe_fast.core.confidence import confidence_rule

    n = Rt.shape[0]
    rng = np.random.default_rng(2)
    labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
    small = slice(0, 64)
    warm = confidence_rule(Rt[small], labels[small], "label_aware", 1.0, Rt.dtype)
    nb.solve_classifiers(Yt[small], Rt[small], warm, LAM)  # JIT warm-up
    nb.solve_instances(X, Rt[small], warm, LAM)
    rule = confidence_rule(Rt, labels, "label_aware", 1.0, Rt.dtype)
    t_cls = median_seconds(lambda: nb.solve_classifiers(Yt, Rt, rule, LAM), repeat)
    t_inst = median_seconds(lambda: nb.solve_instances(X, Rt, rule, LAM), repeat)
    return t_cls, t_inst


def _cg_error(nb, X, Yt, Rt, Ct, k=2000):
    """Relative error of one CG half-step (``config.CG_STEPS`` steps from zero) against the exact one,
    first k instances."""
    s = slice(0, k)
    errors = []
    for exact, approx in (
        (nb.solve_instances(X, Rt[s], Ct[s], LAM), nb.solve_instances(X, Rt[s], Ct[s], LAM, solver="cg")),
        (nb.solve_classifiers(Yt[s], Rt[s], Ct[s], LAM),
         nb.solve_classifiers(Yt[s], Rt[s], Ct[s], LAM, solver="cg")),
    ):
        errors.append(np.linalg.norm(approx - exact) / np.linalg.norm(exact))
    return f"rel. error vs exact: instance {errors[0]:.1e}, classifier {errors[1]:.1e} (cold start from 0; a fit warm-starts, see below)"


def gram_row(nb, m, d, n, dtype, args, peak):
    """Markdown row: the classifier Gram build alone (:func:`classifier_sums`: the m packed
    Grams sum_i c_ui y_i y_i^T and right-hand sides as GEMMs over n instances)."""
    Rt, Ct, _, Yt = random_problem(np.random.default_rng(1), m, d, n, dtype)
    nb.classifier_sums(Yt[:64], Rt[:64], Ct[:64])  # JIT warm-up
    seconds = median_seconds(lambda: nb.classifier_sums(Yt, Rt, Ct), args.repeat) * args.per / n
    gflop = m * args.per * d * (d + 1) / 1e9  # 2 m n flops per packed entry, d (d + 1) / 2 entries
    return (f"| {m} | {d} | {n:,} | {np.dtype(dtype).name} | {seconds:.3g} | {gflop / seconds:.1f} | "
            f"{100 * gflop / seconds / peak:.0f} % |")


def measure_reference(ref, X, Y, R, C, k):
    """Seconds of the reference half-steps on the first k instances (one BLAS thread)."""
    with threadpool_limits(1, user_api="blas"):
        t_cls = median_seconds(lambda: ref.update_classifier_factors(Y[:, :k], R[:, :k], C[:, :k], LAM), 1)
        t_inst = median_seconds(lambda: ref.update_instance_factors(X, R[:, :k], C[:, :k], LAM), 1)
    return t_cls, t_inst


def measure_implicit(Ct, d, dtype, use_cg, repeat):
    """Median seconds of implicit's user (classifier) and item (instance) solves.

    Ct (n, m) becomes implicit's user x item confidence matrix (m, n) with every
    entry stored, so its systems are the same confidence-weighted Grams
    ``sum_i c_ui y_i y_i^T + lam I`` (only the right-hand side differs).
    """
    import scipy.sparse as sp
    from implicit.cpu import _als

    n, m = Ct.shape
    data = np.maximum(np.ascontiguousarray(Ct.T), 1e-7).astype(np.float32).ravel()  # explicit zeros would be dropped
    Cui = sp.csr_matrix((data, np.tile(np.arange(n, dtype=np.int32), m), np.arange(0, m * n + 1, n, dtype=np.int64)),
                        shape=(m, n))
    Ciu = Cui.T.tocsr()
    rng = np.random.default_rng(0)
    U = (rng.random((m, d)) * 0.01).astype(dtype)
    V = (rng.random((n, d)) * 0.01).astype(dtype)
    solve = _als.least_squares_cg if use_cg else _als.least_squares
    threads = _num_threads()
    with threadpool_limits(1, user_api="blas"):
        solve(Cui[:, :64].tocsr(), U, V[:64], LAM, num_threads=threads)
        t_user = median_seconds(lambda: solve(Cui, U, V, LAM, num_threads=threads), repeat)
        t_item = median_seconds(lambda: solve(Ciu, V, U, LAM, num_threads=threads), repeat)
    return t_user, t_item


def _num_threads():
    from numba import get_num_threads

    return get_num_threads()


def _implicit_available():
    try:
        import implicit  # noqa: F401
    except ImportError:
        return False
    return True


def _machine():
    cpu = cpu_model()
    blas = "; ".join(f"{i.get('prefix')} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
                     if i.get("user_api") == "blas")
    return f"{cpu}, {os.cpu_count()} logical cores, numba threads {_num_threads()}; BLAS: {blas}"


def shape_rows(args, nb, ref, m, d, n, dtype, peak):
    """Markdown rows of one (m, d, dtype) measured at n: every method, seconds per sweep scaled to args.per."""
    Rt, Ct, X, Yt = random_problem(np.random.default_rng(0), m, d, n, dtype)
    scale = args.per / n
    flop = model_gflop(m, args.per, d)
    results = []
    for solver in _solvers(nb, m, d, args.skip):
        timing = measure_cfe(nb, X, Yt, Rt, Ct, solver, args.repeat)
        label = "cfe_fast " + (f"{solver} -> {nb.choose_solver(m, d)}" if solver == "auto" else solver)
        note = _cg_error(nb, X, Yt, Rt, Ct) if solver == "cg" else ""
        results.append((label + (" (approximate)" if solver == "cg" else ""), timing, note))
    if "rule" not in args.skip:
        results.append(("cfe_fast auto, C by rule", measure_rule(nb, X, Yt, Rt, args.repeat),
                        "label_aware C computed per chunk from R, as in a fit: no C stored"))
    if "implicit" not in args.skip and _implicit_available():
        for use_cg, label in ((False, "implicit exact"), (True, "implicit CG 3 steps (approximate)")):
            results.append((label, measure_implicit(Ct, d, dtype, use_cg, args.repeat), "matrix in float32"))
    k = min(args.reference_n, n)
    t_ref = measure_reference(ref, X, Yt.T, Rt.T, Ct.T, k)
    rows = []
    ref_sweep = sum(t_ref) * args.per / k
    for label, (t_cls, t_inst), note in results:
        sweep = (t_cls + t_inst) * scale
        rows.append(f"| {m} | {d} | {n:,} | {np.dtype(dtype).name} | {label} | {t_cls * scale:.3g} | "
                    f"{t_inst * scale:.3g} | "
                    f"{sweep:.3g} | {flop / sweep:.1f} | {100 * flop / sweep / peak:.0f} % | {ref_sweep / sweep:.1f}x | {note} |")
    rows.append(f"| {m} | {d} | {n:,} | {np.dtype(dtype).name} | original per-instance (reference) | "
                f"{t_ref[0] * args.per / k:.3g} | {t_ref[1] * args.per / k:.3g} | {ref_sweep:.3g} | "
                f"{flop / ref_sweep:.1f} | {100 * flop / ref_sweep / peak:.1f} % | 1x | timed on {k} instances, extrapolated |")
    return rows


def fit_rows():
    """End-to-end fit (m = 18, n = 60,000, 50 iterations) and the JIT compile time with Numba's cache."""
    from cfe_fast import CFEnsembleClassifier, make_ensemble

    data = make_ensemble(n_classifiers=18, n_instances=60_000, random_state=0)
    lines = []
    for dtype, solver in (("float64", "auto"), ("float32", "auto"), ("float64", "cg")):
        model = CFEnsembleClassifier(latent_dim=9, max_iter=50, tol=0.0, random_state=0, dtype=dtype, solver=solver)
        model.set_params(max_iter=2).fit(data.P[:500], data.labels[:500])  # JIT warm-up
        model.set_params(max_iter=50)
        seconds = median_seconds(lambda: model.fit(data.P, data.labels), 3)
        lines.append(f"| fit, m = 18, n = 60,000, d = 9, 50 iterations, {dtype}, solver {solver} | {seconds:.3f} s "
                     f"({model.n_iter_} iterations, {1e3 * seconds / model.n_iter_:.1f} ms each) |")
    fits = {}
    for solver in ("auto", "cg"):
        model = CFEnsembleClassifier(latent_dim=9, max_iter=50, tol=0.0, random_state=0, solver=solver)
        fits[solver] = model.fit(data.P, data.labels)
    exact, cg = fits["auto"], fits["cg"]
    loss_gap = abs(cg.history_["loss"][-1] - exact.history_["loss"][-1]) / exact.history_["loss"][-1]
    proba_gap = np.abs(cg.transductive_proba_ - exact.transductive_proba_).max()
    lines.append(f"| solver='cg' against exact ALS after 50 iterations (float64) | objective {loss_gap:.1e} relative, "
                 f"probabilities {proba_gap:.1e} max abs |")
    with tempfile.TemporaryDirectory() as cache_dir:  # an empty Numba cache: the first process compiles
        first, second = _compile_time(cache_dir), _compile_time(cache_dir)
    lines.append(f"| JIT: first fits in a fresh process, empty Numba cache | {first[1]:.2f} s (imports and data before: "
                 f"{first[0]:.2f} s) |")
    lines.append(f"| JIT: first fits in a second process (cache on disk) | {second[1]:.2f} s (imports and data before: "
                 f"{second[0]:.2f} s) |")
    return lines


def _compile_time(cache_dir):
    """Seconds of (imports, three tiny first fits) in a fresh process using ``cache_dir``.

    The fits cover every kernel of the default fit (primal and dual forms, float64
    and float32): compiled, or loaded from Numba's cache on disk.
    """
    code = (
        "import time; t = time.perf_counter(); import numpy as np; from cfe_fast import CFEnsembleClassifier as M, "
        "make_ensemble as E; d = E(n_classifiers=6, n_instances=300, random_state=0); s = time.perf_counter();"
        "M(latent_dim=3, max_iter=3).fit(d.P, d.labels); M(latent_dim=5, max_iter=3).fit(d.P, d.labels);"
        "M(latent_dim=3, max_iter=3, dtype='float32').fit(d.P, d.labels); print(s - t, time.perf_counter() - s)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return tuple(float(v) for v in run.stdout.split()[-2:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="instances actually measured")
    parser.add_argument("--per", type=int, default=1_000_000, help="report seconds per this many instances")
    parser.add_argument("--shapes", default="10x20,10x64,100x20,100x64",
                        help="m x d pairs, each optionally @ the n it is measured at (default --n)")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-n", type=int, default=2000, help="instances timed for the reference")
    parser.add_argument("--fit", action="store_true", help="also time a full fit and the JIT compile")
    parser.add_argument("--skip", type=lambda text: tuple(filter(None, text.split(","))), default=(),
                        help="methods to leave out: implicit, cg, rule")
    args = parser.parse_args()

    from cfe_fast import reference as ref

    nb = numba_kernels()

    peaks = {dt: (gemm_peak(dt, 1), gemm_peak(dt, _num_threads())) for dt in ("float64", "float32")}
    print(f"Machine: {_machine()}; load average at start {os.getloadavg()[0]:.1f}\n")
    print("GEMM roofline (square 1536, best of 7, Numba np.dot = SciPy's OpenBLAS): "
          + ", ".join(f"{dt} {one:.0f} GFLOP/s on 1 thread, {all_:.0f} on {_num_threads()}"
                      for dt, (one, all_) in peaks.items()) + "\n")
    print(f"Seconds per sweep scaled to n = {args.per:,} (measured at the n of each row; median of {args.repeat}); "
          f"GFLOP/s = model flops of an exact sweep / time; % of the {_num_threads()}-thread GEMM peak; "
          "speed-up against the original per-instance algorithm.\n")
    print("| m | d | n | dtype | method | classifier step s | instance step s | sweep s | GFLOP/s | % peak | "
          "vs original | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    shapes = [parse_shape(shape, args.n) for shape in args.shapes.split(",")]
    for m, d, n in shapes:
        for dtype in args.dtypes.split(","):
            for row in shape_rows(args, nb, ref, m, d, n, np.dtype(dtype).type, peaks[dtype][1]):
                print(row, flush=True)
    print(f"\nClassifier Gram build alone (classifier_sums: packed GEMMs, 2 m n d (d + 1) / 2 flops), "
          f"seconds per {args.per:,} instances, % of the {_num_threads()}-thread GEMM peak:\n")
    print("| m | d | n | dtype | seconds | GFLOP/s | % peak |\n|---|---|---|---|---|---|---|")
    for m, d, n in shapes:
        for dtype in args.dtypes.split(","):
            print(gram_row(nb, m, d, n, np.dtype(dtype).type, args, peaks[dtype][1]), flush=True)
    if args.fit:
        print("\n| end to end | seconds |\n|---|---|")
        for line in fit_rows():
            print(line, flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
