"""The ``cfe-fast`` command line: fit, predict, diagnose, demo.

Errors are one line on stderr with exit code 2 (bad input or files) or 1
(anything else); ``--debug`` shows the traceback instead. Every output is
written atomically, fit's outputs appear together (:mod:`cfe_fast.io.outputs`),
and an existing file is only replaced with ``--force``.
"""

import argparse
import inspect
import logging
import re
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .parameters import PARAMETERS, validate_params

#: Parameters the command line sets itself (progress is shown by a bar, not by verbose prints).
CLI_SETS = {"verbose": False}
#: The command line's own defaults, documented in --help: a fit is reproducible unless --seed none.
CLI_DEFAULTS = {"random_state": 0}
#: Option names that differ from --parameter-name.
FLAGS = {"random_state": "--seed"}
#: Kinds of parameter (cfe_fast.parameters.KINDS) that a command line can give; "object" (client) cannot,
#: nor "label" (unlabeled): the table readers mark unlabeled rows themselves (--unlabeled).
CLI_KINDS = ("int", "float", "bool", "choice", "str-or-array", "seed")
#: fit's checkpoint in OUTPUT_DIR (--checkpoint-every, --resume)
CHECKPOINT = "checkpoint.npz"
TRUE_WORDS = ("yes", "true", "on", "1")
FALSE_WORDS = ("no", "false", "off", "0")


class InputError(Exception):
    """A usage error of the command line (reported in one line, exit code 2)."""


# ------------------------------------------------------------------ options
def _estimator_class():
    from .estimator import CFEnsembleClassifier

    return CFEnsembleClassifier


def _estimator_parameters():
    """{name: inspect.Parameter} of the estimator parameters that have an option, in signature order."""
    return {
        name: parameter
        for name, parameter in inspect.signature(_estimator_class()).parameters.items()
        if name not in CLI_SETS and PARAMETERS[name].kind in CLI_KINDS
    }


def _rst_text(text):
    """Docstring text as plain help: ``code`` and :role:`target` unwrapped, % escaped for argparse."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return text.replace("%", "%%")


def docstring_parameters(cls):
    """{name: (type, description)} of the numpydoc "Parameters" section of ``cls``'s docstring.

    ``type`` is the text after "name : " less its ", default=..."; ``description``
    the indented lines below it joined into one line ("" when there are none).
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    underline = re.compile(r"^\s*-{3,}\s*$")
    try:
        start = next(i for i in range(len(lines) - 1)
                     if lines[i].strip() == "Parameters" and underline.match(lines[i + 1]))
    except StopIteration:
        return {}
    entries, current = {}, None
    for i in range(start + 2, len(lines)):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and underline.match(lines[i + 1]):
            break  # the next section
        if line.strip() and not line[0].isspace():
            name, _, kind = line.partition(" : ")
            current = name.strip()
            entries[current] = [re.sub(r",?\s*default\s*=.*$", "", kind).strip(), []]
        elif current is not None and line.strip():
            entries[current][1].append(line.strip())
    return {name: (kind, " ".join(text)) for name, (kind, text) in entries.items()}


def _cli_text(value):
    """A default as it is typed on the command line."""
    return "none" if value is None else str(value)


def _or_none(convert, allowed, words=()):
    """``convert``, with the word 'none' for None where None is allowed, and the ``words`` kept as they are."""
    if not allowed and not words:
        return convert

    def parse(text):
        if text in words:
            return text
        return None if allowed and text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse's "invalid int value" message
    return parse


def boolean(text):
    """A strict boolean word: yes/no, true/false, on/off, 1/0 (any case); anything else is an error."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(
        f"invalid boolean {text!r}: use {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)} "
        "(a bare flag right before INPUT takes INPUT as its value: put it after INPUT or write --flag=yes)"
    )


def _option(name, default=argparse.SUPPRESS):
    """[(flag, add_argument keywords)] of the option(s) of estimator parameter ``name``.

    Type, choices and range come from :data:`cfe_fast.parameters.PARAMETERS`,
    the help from the estimator's docstring and the default shown from its
    signature (or :data:`CLI_DEFAULTS`). The parsed default is ``default``: by
    default absent, so only the options given reach the estimator. A boolean
    has two options: ``--name [yes|no]`` (alone: yes) and ``--no-name``.
    """
    param = PARAMETERS[name]
    true_default = inspect.signature(_estimator_class()).parameters[name].default
    description = docstring_parameters(_estimator_class()).get(name, ("", ""))[1]
    text = _rst_text(description or f"The estimator's {name}.")
    notes = [] if param.interval is None else [f"range: {_rst_text(str(param.interval)).removeprefix('in ')}"]
    if param.kind == "seed":
        notes.append("an integer >= 0, or none for fresh entropy")
    if name in CLI_DEFAULTS:
        notes.append(f"default: {_cli_text(CLI_DEFAULTS[name])} on the command line, {true_default!r} in the estimator")
    else:
        notes.append(f"default: {_cli_text(true_default)}")
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    option = dict(dest=f"param_{name}", default=default, help=f"{text} ({'; '.join(notes)})")
    if param.kind == "bool":
        negative = dict(dest=option["dest"], default=default, action="store_false",
                        help=f"same as {flag} no")
        return [(flag, dict(option, nargs="?", const=True, type=boolean, metavar="yes|no")),
                ("--no-" + flag[2:], negative)]
    if param.kind in ("int", "seed"):
        none = param.none or param.kind == "seed"
        option.update(type=_or_none(int, none), metavar="INT|none" if none else "INT")
    elif param.kind == "float":
        metavar = "|".join(["FLOAT", *param.words] + (["none"] if param.none else []))
        option.update(type=_or_none(float, param.none, param.words), metavar=metavar)
    elif param.kind == "choice":
        option.update(type=_or_none(str, None in param.choices), choices=param.choices,
                      metavar="{" + ",".join(_cli_text(c) for c in param.choices) + "}")
    elif param.kind == "str-or-array":
        option.update(type=str, metavar="{" + ",".join(param.choices) + "}|FILE.npy")
    else:
        raise AssertionError(f"no option for kind {param.kind!r}")
    return [(flag, option)]


def _add_estimator_options(parser):
    group = parser.add_argument_group(
        "model parameters (see help(cfe_fast.CFEnsembleClassifier); a boolean is --name, --name=yes|no "
        "or --no-name)"
    )
    for name in _estimator_parameters():
        for flag, option in _option(name):
            group.add_argument(flag, **option)


def _estimator_from(args):
    params = {**CLI_DEFAULTS, **CLI_SETS}
    for name in _estimator_parameters():
        if hasattr(args, f"param_{name}"):
            params[name] = getattr(args, f"param_{name}")
    confidence = params.get("confidence")
    if isinstance(confidence, str) and confidence.endswith(".npy"):
        try:
            params["confidence"] = np.load(confidence, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"--confidence {confidence}: cannot read the matrix ({error})") from None
    model = _estimator_class()(**params)
    validate_params(model.get_params())
    return model


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
    """A tqdm bar over the iterations showing the objective; silent with --quiet.

    ``total``: the iterations of every fit together (with more than two classes one fit per class, each
    counting its iterations from 1).
    """

    def __init__(self, total, quiet):
        from tqdm.auto import tqdm

        from tqdm.contrib.logging import logging_redirect_tqdm

        self.bar = tqdm(total=total, desc="fit", unit="iter", disable=quiet, file=sys.stderr, leave=False)
        # the package's log lines (the first run's "compiling kernels") go above the bar, not into it
        self.redirect = logging_redirect_tqdm([logging.getLogger("cfe_fast")])
        self.redirect.__enter__()
        self.done, self.last = 0, 0  # the iterations of the fits before this one, and this fit's so far

    def __call__(self, iteration, history):
        if iteration < self.last:  # the next class's fit
            self.done += self.last
        self.last = iteration
        self.bar.update(self.done + iteration - self.bar.n)
        self.bar.set_postfix(loss=f"{history['loss'][-1]:.6g}", refresh=False)

    def close(self):
        self.redirect.__exit__(None, None, None)
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
    from .io.outputs import OutputSet
    from .io.tables import read_table, stacking_columns

    model = _estimator_from(args)  # bad parameters are refused before the table is read
    table = read_table(args.input, args.label_col, args.id_col, unlabeled=args.unlabeled)
    if args.unlabeled is not None:  # the table marked them: every other label is a class (-1 too)
        model.set_params(unlabeled=None)
    multiclass = table.classes is not None and table.classes.size > 2
    if multiclass and Path(args.input).suffix.lower() in (".csv", ".parquet"):
        table = stacking_columns(table, args.input)
    out = Path(args.output_dir)
    suffix = ".parquet" if Path(args.input).suffix.lower() == ".parquet" else ".csv"
    predictions, checkpoint = f"predictions{suffix}", out / CHECKPOINT
    if multiclass and not args.no_report:
        _say(args, f"cfe-fast: {table.classes.size} classes: report.md summarises each class's model; report.png "
                   "is drawn for two classes only")
    picture = not args.no_report and not multiclass and _has_matplotlib(args)
    names = [predictions, "model.npz", "report.md"] + (["report.png"] if picture else [])
    outputs = OutputSet(out, names, obsolete=[checkpoint.name])
    if outputs.interrupted():
        if args.resume:
            written = outputs.finish_interrupted()
            _say(args, f"fit: finished writing the outputs of the interrupted run: {', '.join(map(str, written))}")
            return 0
        if not args.force:
            raise InputError(f"{out} holds the outputs of a run killed while writing them: use --resume to "
                             "finish writing them or --force to start again")
    _refuse_existing([out / name for name in names], args.force)
    if args.resume and not checkpoint.exists():
        raise InputError(f"--resume: no checkpoint at {checkpoint}")
    if checkpoint.exists() and not (args.resume or args.force):
        raise InputError(f"{checkpoint} exists (an interrupted fit?): use --resume to continue it or --force to restart")
    labels = table.labels if table.labels is not None else np.full(table.P.shape[0], np.nan)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        outputs.start()  # a folder that cannot be written is found before the fit
    except OSError as error:
        raise InputError(f"cannot write to {out}: {error.strerror or error}") from None
    try:
        _fit_and_write(args, model, table, labels, outputs, predictions, picture)
    except BaseException:
        outputs.abort()
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    return 0


def _fit_and_write(args, model, table, labels, outputs, predictions, picture):
    """Fit, write every output into the staging folder, then publish them together."""
    from .core.sparse import is_sparse
    from .report import write_report
    from .io.tables import write_predictions

    import pandas as pd

    fits = table.classes.size if table.classes is not None and table.classes.size > 2 else 1
    progress = _Progress(model.max_iter * fits, args.quiet)
    start = time.perf_counter()
    # a DataFrame: errors (a classifier with no observed entry) name the column; a sparse P (of an .npz,
    # whose columns are named by position) is passed as it is
    X = table.P if is_sparse(table.P) else pd.DataFrame(table.P, columns=table.columns, copy=False)
    try:
        with _threads(args.threads):
            model.fit(X, labels, callback=progress,
                checkpoint=outputs.folder / CHECKPOINT if args.checkpoint_every else None,
                checkpoint_every=args.checkpoint_every or 1,
                resume_from=outputs.folder / CHECKPOINT if args.resume else None,
            )
    finally:
        progress.close()
    model.feature_names_in_ = np.asarray(table.columns, dtype=object)
    write_predictions(outputs.path(predictions), model.transductive_proba_, model.classes_, table.ids, table.id_name,
                      threshold=model.threshold, overwrite=True)
    model.save(outputs.path("model.npz"), overwrite=True, include_training_factors=args.keep_training_factors)
    write_report(model, outputs.staging, table.codes, P=table.P, overwrite=True, picture=picture)
    written = outputs.commit()
    each = f" (the most of the {model.classes_.size} classes' fits)" if model.classes_.size > 2 else ""
    _say(args, f"fit: {model.n_iter_} iterations{each} in {time.perf_counter() - start:.2f} s "
               f"({'converged' if model.converged_ else 'max_iter reached'}); wrote {', '.join(map(str, written))}")


def _has_matplotlib(args):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        _say(args, "cfe-fast: matplotlib is not installed: report.png skipped (pip install 'cfe_fast[plot]')")
        return False
    return True


def _predict(args):
    from .core.sparse import is_sparse
    from .estimator import load_model
    from .io.tables import read_table, select_columns, write_predictions

    model = load_model(args.model)
    table = read_table(args.input, args.label_col, args.id_col, ignore_bad_labels=True, unlabeled=args.unlabeled)
    names = getattr(model, "feature_names_in_", None)
    P = table.P if names is None or Path(args.input).suffix.lower() in (".npy", ".npz") else select_columns(
        table, list(names), args.input
    )
    if names is not None and not is_sparse(P):  # the columns in the fit's order, named as the model expects
        import pandas as pd                      # (arrays: by position)

        P = pd.DataFrame(P, columns=list(names), copy=False)
    with _threads(args.threads), warnings.catch_warnings():
        # a sparse P of an .npz has its columns by position, as a dense one: not a lack of names to warn of
        warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
        proba = model.predict_proba(P)
    binary = model.classes_.size == 2
    write_predictions(args.output, proba[:, 1] if binary else proba, model.classes_, table.ids, table.id_name,
                      threshold=model.threshold, overwrite=args.force)
    _say(args, f"predict: {len(proba)} instances; wrote {args.output}")
    if table.labels is not None:
        print(_label_scores(model.classes_, table, proba))
    return 0


def _label_scores(classes, table, proba):
    """One line: the scores of the predictions ``proba`` (n, K) on the labeled rows of ``table``.

    Two classes: PR-AUC, ROC-AUC (of ``classes[1]``) and Brier score; more: log-loss, accuracy and the
    macro average over the classes present of each class's PR-AUC against the rest.
    """
    from .io.tables import class_text

    index = {class_text(value): k for k, value in enumerate(classes)}
    labeled = ~np.isnan(table.codes)
    texts = [class_text(table.classes[int(code)]) for code in table.codes[labeled]]
    unknown = sorted(set(texts) - set(index))
    if unknown:
        return (f"predict: the label column holds {unknown[:5]}, which are not classes of the model "
                f"{list(index)[:10]}: it is not scored")
    y = np.array([index[text] for text in texts], dtype=int)
    if y.size == 0:
        return "predict: the label column has no labeled row to score"
    if classes.size == 2:
        return f"predict: on the {y.size} labeled instances: {_binary_scores(y, proba[labeled, 1], classes)}"
    return f"predict: on the {y.size} labeled instances: {_multiclass_scores(y, proba[labeled], classes)}"


def _multiclass_scores(y, proba, classes):
    """Log-loss, accuracy and macro one-vs-rest PR-AUC of class indices ``y`` and probabilities (n, K)."""
    from sklearn.metrics import accuracy_score, average_precision_score, log_loss

    present = np.unique(y)
    pr_auc = np.mean([average_precision_score(y == k, proba[:, k]) for k in present])
    scores = (f"log-loss {log_loss(y, proba, labels=np.arange(classes.size)):.4f}, "
              f"accuracy {accuracy_score(y, np.argmax(proba, axis=1)):.4f}, "
              f"macro PR-AUC {pr_auc:.4f}")
    if present.size < classes.size:
        scores += f" (over the {present.size} of {classes.size} classes present)"
    return scores


def _binary_scores(y, p, classes):
    """PR-AUC, ROC-AUC and Brier score of 0/1 codes ``y`` and probabilities ``p`` of ``classes[1]``."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    scores = f"Brier {brier_score_loss(y, p, pos_label=1):.4f}"
    if np.unique(y).size == 2:
        scores = f"PR-AUC {average_precision_score(y, p):.4f}, ROC-AUC {roc_auc_score(y, p):.4f}, " + scores
    else:
        scores += f" (PR-AUC and ROC-AUC need both classes; all {y.size} labels are {classes[y[0]]!r})"
    return scores


def _diagnose(args):
    from .estimator import load_model

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
    for part, name in ((~held_out, "labeled"), (held_out, "held-out")):
        if np.unique(data.y_true[part]).size < 2:
            raise InputError(f"the example data's {part.sum()} {name} instances do not hold both classes, so "
                             "the comparison cannot be scored: raise --instances or --positive-rate, or bring "
                             "--labeled toward 0.5")
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


@contextmanager
def _package_log(enabled):
    """The ``cfe_fast`` logger (the first run's "compiling kernels") on, or off for --quiet."""
    logger = logging.getLogger("cfe_fast")
    before = logger.disabled
    logger.disabled = not enabled
    try:
        yield
    finally:
        logger.disabled = before


def _warmup(args):
    from .warmup import warm_up

    with _threads(args.threads):
        seconds = warm_up(report=None if args.quiet else lambda line: _say(args, f"warmup: {line}"))
    _say(args, f"warmup: every kernel compiled and cached in {seconds:.1f} s")
    return 0


# ------------------------------------------------------------------- parser
def _common_options():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return common


def _table_options(parser):
    parser.add_argument("--label-col", metavar="NAME",
                        help="label column (CSV/Parquet) or member (.npz): classes of any kind (text, integers, "
                        "booleans), an empty cell or NaN (and -1 among numbers) = unlabeled; a name given must "
                        "exist (default: 'label' when present)")
    parser.add_argument("--unlabeled", metavar="VALUE",
                        help="the label that marks an unlabeled row, as written in the table (e.g. ?, unknown, 0), "
                        "besides empty cells and NaN; with it -1 is a class like any other (default: -1 among "
                        "numeric labels)")
    parser.add_argument("--id-col", metavar="NAME",
                        help="instance id column or member, copied to the predictions; a name given must exist "
                        "(default: 'id' when present)")
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
    demo.add_argument("--classifiers", type=int, default=10, help="number of base classifiers (default %(default)s)")
    demo.add_argument("--instances", type=int, default=5000, help="number of instances (default %(default)s)")
    demo.add_argument("--labeled", type=float, default=0.5,
                      help="labeled fraction, in (0, 1): the rest is scored (default %(default)s)")
    demo.add_argument("--positive-rate", type=float, default=0.1, help="fraction of positives (default %(default)s)")
    demo.add_argument("--quality", type=float, default=0.7,
                      help="PR-AUC of one base classifier (default %(default)s)")
    for name in ("backend", "dtype"):  # the estimator's options, with its defaults
        for flag, option in _option(name, default=inspect.signature(_estimator_class()).parameters[name].default):
            demo.add_argument(flag, **dict(option, dest=name))
    demo.add_argument("--seed", type=int, default=0,
                      help="random seed of the example data and of the fit (default %(default)s)")
    demo.set_defaults(run=_demo)


def _add_warmup(commands, common):
    warmup = commands.add_parser(
        "warmup", parents=[common], help="compile every kernel ahead, for batch jobs and container images",
        description="Compile every Numba kernel (float32 and float64, every trainer and solver) into Numba's "
        "cache on disk (NUMBA_CACHE_DIR, else next to the package), so that no later fit waits for a compile. "
        "Run it once where the package is installed, e.g. when a container image is built.",
    )
    warmup.add_argument("--threads", type=int, metavar="N", help="threads for Numba and BLAS (default: all cores)")
    warmup.set_defaults(run=_warmup)


def build_parser():
    """The argument parser of ``cfe-fast`` (subcommands with their own --help)."""
    parser = argparse.ArgumentParser(prog="cfe-fast", description="CF-Ensemble: combine many classifiers' probabilities.")
    commands = parser.add_subparsers(dest="command", required=True)
    common = _common_options()

    fit = commands.add_parser(
        "fit", parents=[common], help="fit on a probability table; write predictions, model and report",
        description="Fit CF-Ensemble on INPUT, a table of probabilities (one column per classifier, one row "
        "per instance): .npy/.npz (a matrix; .npz member 'P' plus optional label/id members, or the members "
        "of a sparse matrix that scipy.sparse.save_npz writes, its stored entries the observed ones), .csv or "
        ".parquet. Instances without a label take part in the fit (semi-supervised). With two classes, each "
        "column holds a classifier's probability of the larger class (in sorted order: 'yes' of no/yes, 2 of "
        "1/2). With K > 2 classes (K: those of the label column), each classifier has one column per class, "
        "named by classifier and class ending with the class, e.g. rf_cat rf_dog rf_emu, in any order (.npy/"
        ".npz: StackingClassifier's layout, classifier j's probability of the k-th class in column j*K+k). "
        "Writes to OUTPUT_DIR: predictions.csv (or .parquet for Parquet input; every instance's probability "
        "of the larger class, or one probability_CLASS column per class, and the predicted class, with the id "
        "column if INPUT has one), model.npz (a safe model file for 'cfe-fast predict', of a size that does "
        "not grow with the instances), report.md and, with two classes, report.png.",
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
    fit.add_argument("--keep-training-factors", action="store_true",
                     help="model.npz also holds the factors and probabilities of INPUT's instances, so that its "
                     "size grows with them (by default it holds what predict needs; the probabilities are in "
                     "the predictions file)")
    _add_estimator_options(fit)
    fit.set_defaults(run=_fit)

    predict = commands.add_parser(
        "predict", parents=[common], help="predict new instances with a fitted model",
        description="Predict the class probabilities of the instances of INPUT with MODEL (written by 'cfe-fast "
        "fit'), written as fit writes them: each new instance is folded in with the classifier factors fixed. "
        "CSV/Parquet columns are matched to the model's columns by name. With a label column, the scores of "
        "the labeled rows are printed: PR-AUC, ROC-AUC and Brier score with two classes; log-loss, accuracy "
        "and the macro average of each class's PR-AUC against the rest with more.",
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
    _add_warmup(commands, common)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (partial outputs removed, checkpoint kept)."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def main(argv=None):
    """Entry point of the ``cfe-fast`` console script; returns the exit code.

    Ctrl-C exits with 130 and SIGTERM with 143, each after removing partial
    outputs (a checkpoint is kept for ``--resume``).
    """
    try:
        args = build_parser().parse_args(argv)  # imports the estimator (and scikit-learn): seconds on a cold start
    except KeyboardInterrupt:
        print("cfe-fast: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        with _package_log(enabled=not args.quiet):
            return args.run(args)
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, _Terminated)
        print(f"cfe-fast: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except Exception as error:
        if args.debug:
            raise
        code = 2 if isinstance(error, (InputError, ValueError, TypeError, OSError, ImportError)) else 1
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"cfe-fast: error: {message}", file=sys.stderr)
        return code
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
