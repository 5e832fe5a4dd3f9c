"""The ``cfe-fast`` command line: fit, predict, diagnose, demo.

Errors are one line on stderr with exit code 2 (bad input or files) or 1
(anything else); ``--debug`` shows the traceback instead. Every output is
written atomically and an existing file is only replaced with ``--force``.
"""

import argparse
import inspect
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .backends import BACKENDS
from .reference import CONFIDENCE_STRATEGIES, FOCAL_VARIANTS

#: Estimator parameters with a hand-written option; any other parameter of the
#: estimator gets a generic ``--name`` option (see :func:`_add_estimator_options`).
PARAM_OPTIONS = {
    "latent_dim": dict(type=int, help="latent dimension d (default: max(1, min(20, n_classifiers // 2)))"),
    "rho": dict(type=float, help="weight of the reconstruction term in [0, 1] (default 0.5)"),
    "lam": dict(type=float, help="ridge penalty of the ALS half-steps (default 0.1)"),
    "confidence": dict(
        help=f"confidence strategy {CONFIDENCE_STRATEGIES}, or a .npy file with a matrix C of the "
        "input's shape (default label_aware)"
    ),
    "confidence_alpha": dict(type=float, help="label reward of the label_aware strategy (default 1.0)"),
    "aggregator": dict(choices=("weighted", "mean"), help="'weighted' fits sigma(w^T r_hat + b); 'mean' averages"),
    "class_weight": dict(choices=("balanced", "none"), help="class weights of the supervised loss (default balanced)"),
    "focal_gamma": dict(type=float, help="0 = cross-entropy, > 0 = focal loss (default 0)"),
    "focal_variant": dict(choices=FOCAL_VARIANTS, help="focal gradient variant (default exact)"),
    "aggregator_l2": dict(type=float, help="ridge on the aggregator weights w (default 1e-3)"),
    "freeze_aggregator_iters": dict(type=int, help="keep (w, b) fixed for this many iterations (default 0)"),
    "max_iter": dict(type=int, help="maximum number of iterations (default 50)"),
    "tol": dict(type=float, help="stop when the relative objective change is below tol (default 1e-5)"),
    "random_state": dict(flag="--seed", type=int, help="random seed of the initialisation (default 0)"),
    "backend": dict(choices=BACKENDS, help="kernel backend (default numba)"),
    "dtype": dict(choices=("float64", "float32"), help="floating point precision (default float64)"),
}
#: Parameters the command line sets itself (progress is shown by a bar, not by verbose prints).
NOT_OPTIONS = ("verbose",)


class InputError(Exception):
    """A usage error of the command line (reported in one line, exit code 2)."""


# ------------------------------------------------------------------ options
def _scalar(text):
    """A generic option value: 'none' -> None, then int, float, or the text itself."""
    if text.lower() == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _estimator_parameters():
    from .estimator import CFEnsembleClassifier

    return [p for p in inspect.signature(CFEnsembleClassifier).parameters if p not in NOT_OPTIONS]


def _add_estimator_options(parser):
    group = parser.add_argument_group("model parameters (see help(cfe_fast.CFEnsembleClassifier))")
    for name in _estimator_parameters():
        option = dict(PARAM_OPTIONS.get(name, {"type": _scalar, "help": "see the estimator's docstring"}))
        flag = option.pop("flag", "--" + name.replace("_", "-"))
        group.add_argument(flag, dest=f"param_{name}", default=None, **option)


def _estimator_from(args):
    from .estimator import CFEnsembleClassifier

    params = {"random_state": 0}
    for name in _estimator_parameters():
        value = getattr(args, f"param_{name}")
        if value is not None:
            params[name] = value
    if params.get("class_weight") == "none":
        params["class_weight"] = None
    confidence = params.get("confidence")
    if isinstance(confidence, str) and confidence.endswith(".npy"):
        try:
            params["confidence"] = np.load(confidence, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"--confidence {confidence}: cannot read the matrix ({error})") from None
    return CFEnsembleClassifier(**params)


@contextmanager
def _threads(count):
    """Numba's thread count and the BLAS pools limited to ``count`` (None: unchanged)."""
    if count is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    if not 1 <= count <= numba.config.NUMBA_NUM_THREADS:
        raise InputError(f"--threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}, got {count}")
    previous = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        with threadpool_limits(limits=count):
            yield
    finally:
        numba.set_num_threads(previous)


class _Progress:
    """A tqdm bar over the iterations showing the objective; silent with --quiet."""

    def __init__(self, total, quiet):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="fit", unit="iter", disable=quiet, file=sys.stderr, leave=False)

    def __call__(self, iteration, history):
        self.bar.update(iteration - self.bar.n)
        self.bar.set_postfix(loss=f"{history['loss'][-1]:.6g}", refresh=False)

    def close(self):
        self.bar.close()


def _say(args, message):
    if not args.quiet:
        print(message, file=sys.stderr)


def _refuse_existing(paths, force):
    if force:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise InputError(f"{', '.join(existing)} already exist(s); use --force to overwrite")


# ------------------------------------------------------------------ commands
def _fit(args):
    from .report import write_report
    from .tables import read_table, write_predictions

    table = read_table(args.input, args.label_col, args.id_col)
    out = Path(args.output_dir)
    suffix = ".parquet" if Path(args.input).suffix.lower() == ".parquet" else ".csv"
    predictions, model_path, checkpoint = out / f"predictions{suffix}", out / "model.npz", out / "checkpoint.npz"
    picture = not args.no_report and _has_matplotlib(args)
    reports = [out / "report.md"] + ([out / "report.png"] if picture else [])
    _refuse_existing([predictions, model_path, *reports], args.force)
    if args.resume and not checkpoint.exists():
        raise InputError(f"--resume: no checkpoint at {checkpoint}")
    if checkpoint.exists() and not (args.resume or args.force):
        raise InputError(f"{checkpoint} exists (an interrupted fit?): use --resume to continue it or --force to restart")
    model = _estimator_from(args)
    labels = table.labels if table.labels is not None else np.full(len(table.P), np.nan)
    out.mkdir(parents=True, exist_ok=True)
    progress = _Progress(model.max_iter, args.quiet)
    start = time.perf_counter()
    try:
        with _threads(args.threads):
            model.fit(
                table.P, labels, callback=progress,
                checkpoint=checkpoint if args.checkpoint_every else None,
                checkpoint_every=args.checkpoint_every or 1,
                resume_from=checkpoint if args.resume else None,
            )
    finally:
        progress.close()
    model.feature_names_in_ = np.asarray(table.columns, dtype=object)
    write_predictions(predictions, model.transductive_proba_, table.ids, table.id_name, overwrite=args.force)
    model.save(model_path, overwrite=args.force)
    write_report(model, out, labels, overwrite=args.force, picture=picture)
    checkpoint.unlink(missing_ok=True)
    _say(args, f"fit: {model.n_iter_} iterations in {time.perf_counter() - start:.2f} s "
               f"({'converged' if model.converged_ else 'max_iter reached'}); wrote {predictions}, {model_path}, "
               f"{', '.join(str(r) for r in reports)}")
    return 0


def _has_matplotlib(args):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _say(args, "cfe-fast: matplotlib is not installed: report.png skipped (pip install 'cfe_fast[plot]')")
        return False
    return True


def _predict(args):
    from .model_io import load_model
    from .tables import read_table, select_columns, write_predictions

    model = load_model(args.model)
    table = read_table(args.input, args.label_col, args.id_col)
    names = getattr(model, "feature_names_in_", None)
    P = table.P if names is None or Path(args.input).suffix.lower() in (".npy", ".npz") else select_columns(
        table, list(names), args.input
    )
    with _threads(args.threads):
        proba = model.predict_proba(P)[:, 1]
    write_predictions(args.output, proba, table.ids, table.id_name, overwrite=args.force)
    _say(args, f"predict: {proba.size} instances; wrote {args.output}")
    return 0


def _diagnose(args):
    from .model_io import load_model

    print(load_model(args.model).diagnose())
    return 0


def _demo(args):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from .datasets import make_ensemble
    from .estimator import CFEnsembleClassifier

    data = make_ensemble(
        n_classifiers=args.classifiers, n_instances=args.instances, labeled_fraction=args.labeled,
        positive_rate=args.positive_rate, quality=args.quality, random_state=args.seed,
    )
    held_out = np.isnan(data.labels)
    model = CFEnsembleClassifier(backend=args.backend, dtype=args.dtype, random_state=args.seed)
    start = time.perf_counter()
    model.fit(data.P, data.labels)
    fit_seconds = time.perf_counter() - start
    truth = data.y_true[held_out]
    labeled = ~held_out
    best = max(range(data.R.shape[0]), key=lambda u: average_precision_score(data.y_true[labeled], data.R[u, labeled]))
    rows = [
        ("CF-Ensemble", model.transductive_proba_[held_out]),
        ("mean of R", data.R.mean(axis=0)[held_out]),
        (f"best single (#{best}, chosen on labeled)", data.R[best, held_out]),
    ]
    print(
        f"example data: {data.R.shape[0]} classifiers x {data.R.shape[1]} instances, "
        f"{labeled.sum()} labeled, {data.y_true.mean():.0%} positives; scores on the "
        f"{held_out.sum()} unlabeled (held-out) instances"
    )
    print(f"{'method':<36} {'PR-AUC':>7} {'ROC-AUC':>8}")
    for name, scores in rows:
        print(f"{name:<36} {average_precision_score(truth, scores):7.3f} {roc_auc_score(truth, scores):8.3f}")
    print(f"fit: {fit_seconds:.2f} s ({model.n_iter_} iterations, backend={args.backend}, includes JIT compile on a first run)")
    return 0


# ------------------------------------------------------------------- parser
def _common_options():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return common


def _table_options(parser):
    parser.add_argument("--label-col", default="label", metavar="NAME",
                        help="label column (CSV/Parquet) or member (.npz): 0/1, empty/NaN/-1 = unlabeled; "
                        "used when present (default 'label')")
    parser.add_argument("--id-col", default="id", metavar="NAME",
                        help="instance id column or member, copied to the predictions; used when present "
                        "(default 'id')")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for Numba and BLAS (default: all cores)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def _add_demo(commands, common):
    demo = commands.add_parser(
        "demo", parents=[common],
        help="fit on built-in example data and compare with the mean and the best single classifier",
        description="Fit CF-Ensemble on built-in example data (correlated classifier errors, imbalanced "
        "classes) and print held-out PR-AUC / ROC-AUC next to the mean of R and the best single classifier.",
    )
    demo.add_argument("--classifiers", type=int, default=10, help="number of base classifiers (default 10)")
    demo.add_argument("--instances", type=int, default=5000, help="number of instances (default 5000)")
    demo.add_argument("--labeled", type=float, default=0.5, help="labeled fraction (default 0.5)")
    demo.add_argument("--positive-rate", type=float, default=0.1, help="fraction of positives (default 0.1)")
    demo.add_argument("--quality", type=float, default=0.7, help="PR-AUC of one base classifier (default 0.7)")
    demo.add_argument("--backend", default="numba", help="kernel backend (default numba)")
    demo.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(run=_demo)


def build_parser():
    """The argument parser of ``cfe-fast`` (subcommands with their own --help)."""
    parser = argparse.ArgumentParser(prog="cfe-fast", description="CF-Ensemble: combine many classifiers' probabilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    common = _common_options()

    fit = commands.add_parser(
        "fit", parents=[common], help="fit on a probability table; write predictions, model and report",
        description="Fit CF-Ensemble on INPUT, a table of probabilities (one column per classifier, one row "
        "per instance): .npy/.npz (a matrix; .npz member 'P' plus optional label/id members), .csv or "
        ".parquet. Instances without a label take part in the fit (semi-supervised). Writes to OUTPUT_DIR: "
        "predictions.csv (or .parquet for Parquet input; P(y=1) and the 0/1 prediction of every instance, "
        "with the id column if INPUT has one), model.npz (a safe model file for 'cfe-fast predict'), "
        "report.png and report.md.",
    )
    fit.add_argument("input", metavar="INPUT", help="probability table (.npy, .npz, .csv, .parquet)")
    fit.add_argument("-o", "--output-dir", default="cfe-fast-output", metavar="OUTPUT_DIR",
                     help="folder for the outputs, created if needed (default ./cfe-fast-output)")
    _table_options(fit)
    fit.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                     help="write OUTPUT_DIR/checkpoint.npz every K iterations (default: no checkpoints); "
                     "removed after a successful fit")
    fit.add_argument("--resume", action="store_true",
                     help="continue an interrupted fit from OUTPUT_DIR/checkpoint.npz (same data and "
                     "parameters; the result is identical to an uninterrupted fit)")
    fit.add_argument("--no-report", action="store_true", help="skip report.png (report.md is still written)")
    _add_estimator_options(fit)
    fit.set_defaults(run=_fit)

    predict = commands.add_parser(
        "predict", parents=[common], help="predict new instances with a fitted model",
        description="Predict P(y=1) for the instances of INPUT with MODEL (written by 'cfe-fast fit'): each "
        "new instance is folded in with the classifier factors fixed. CSV/Parquet columns are matched to "
        "the model's classifiers by name; a label column is ignored.",
    )
    predict.add_argument("model", metavar="MODEL", help="model file (model.npz of 'cfe-fast fit')")
    predict.add_argument("input", metavar="INPUT", help="probability table (.npy, .npz, .csv, .parquet)")
    predict.add_argument("-o", "--output", default="predictions.csv", metavar="PATH",
                         help="predictions file, .csv or .parquet (default ./predictions.csv)")
    _table_options(predict)
    predict.set_defaults(run=_predict)

    diagnose = commands.add_parser(
        "diagnose", parents=[common], help="print the collapse report of a fitted model",
        description="Print the collapse verdicts of MODEL (aggregator weight collapse, prediction collapse, "
        "representational collapse, class collapse), computed from its training history.",
    )
    diagnose.add_argument("model", metavar="MODEL", help="model file (model.npz of 'cfe-fast fit')")
    diagnose.set_defaults(run=_diagnose)

    _add_demo(commands, common)
    return parser


def main(argv=None):
    """Entry point of the ``cfe-fast`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("cfe-fast: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        code = 2 if isinstance(error, (InputError, ValueError, TypeError, OSError, ImportError)) else 1
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"cfe-fast: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
