"""The cfe-fast command line, end to end (subprocesses) and in-process for the details."""

import ast
import csv
import importlib.util
import inspect
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast.backends import BACKENDS
from cfe_fast.cli import CLI_DEFAULTS, _estimator_from, build_parser, docstring_parameters, main
from cfe_fast.parameters import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--latent-dim", "3", "--max-iter", "15", "--quiet"]


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cfe_fast.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def data():
    return make_ensemble(n_classifiers=6, n_instances=300, random_state=2)


def write_csv(path, P, labels=None, ids=None, names=None):
    names = names or [f"m{j}" for j in range(P.shape[1])]
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow((["id"] if ids is not None else []) + names + (["label"] if labels is not None else []))
        for i, row in enumerate(P):
            label = [] if labels is None else ["" if np.isnan(labels[i]) else int(labels[i])]
            writer.writerow(([ids[i]] if ids is not None else []) + [repr(float(v)) for v in row] + label)


def read_predictions(path):
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return rows, np.array([float(r["probability"]) for r in rows])


def reference_fit(data, **params):
    return CFEnsembleClassifier(**{"latent_dim": 3, "max_iter": 15, "random_state": 0, **params}).fit(
        data.P, data.labels
    )


def test_fit_and_predict_csv_with_ids_and_labels(tmp_path, data):
    ids = [f"row{i}" for i in range(len(data.P))]
    write_csv(tmp_path / "train.csv", data.P, data.labels, ids)
    done = run_cli("fit", "train.csv", "-o", "out", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # --quiet
    picture = {"report.png"} if importlib.util.find_spec("matplotlib") else set()
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"predictions.csv", "model.npz", "report.md", *picture}
    rows, proba = read_predictions(tmp_path / "out" / "predictions.csv")
    assert [r["id"] for r in rows] == ids
    expected = reference_fit(data)
    np.testing.assert_array_equal(proba, expected.transductive_proba_)
    assert [int(r["prediction"]) for r in rows] == list((proba >= 0.5).astype(int))
    # predict: columns matched by name, so a shuffled column order gives the same result
    order = [3, 0, 5, 1, 4, 2]
    write_csv(tmp_path / "new.csv", data.P[:40][:, order], names=[f"m{j}" for j in order])
    done = run_cli("predict", "out/model.npz", "new.csv", "-o", "new_pred.csv", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _, new = read_predictions(tmp_path / "new_pred.csv")
    np.testing.assert_array_equal(new, expected.predict_proba(data.P[:40])[:, 1])
    assert not hasattr(CFEnsembleClassifier.load(tmp_path / "out" / "model.npz"), "instance_factors_")  # slim


def test_diagnose_prints_the_collapse_report(tmp_path, data):
    write_csv(tmp_path / "train.csv", data.P, data.labels)
    assert run_cli("fit", "train.csv", "-o", "out", "--no-report", *FAST, cwd=tmp_path).returncode == 0
    done = run_cli("diagnose", "out/model.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = str(CFEnsembleClassifier.load(tmp_path / "out" / "model.npz").diagnose())
    assert done.stdout.strip() == expected.strip()
    assert "collapse report" in done.stdout and "w_norm" in done.stdout


def test_fit_npz_without_labels_and_npy_predict(tmp_path, data):
    np.savez(tmp_path / "train.npz", P=data.P)
    done = run_cli("fit", "train.npz", "-o", "out", "--keep-training-factors", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _, proba = read_predictions(tmp_path / "out" / "predictions.csv")
    model = CFEnsembleClassifier.load(tmp_path / "out" / "model.npz")
    assert model.aggregator_ == "mean"  # no labels: reconstruction only
    np.testing.assert_array_equal(proba, model.transductive_proba_)
    np.save(tmp_path / "new.npy", data.P[:10])
    assert main(["predict", str(tmp_path / "out" / "model.npz"), str(tmp_path / "new.npy"),
                 "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    np.testing.assert_array_equal(read_predictions(tmp_path / "p.csv")[1], model.predict_proba(data.P[:10])[:, 1])


def test_npz_with_labels_matches_the_api(tmp_path, data):
    np.savez(tmp_path / "train.npz", P=data.P, y=data.labels)
    assert main(["fit", str(tmp_path / "train.npz"), "-o", str(tmp_path / "out"), "--label-col", "y",
                 "--lam", "0.3", "--no-report", *FAST]) == 0
    np.testing.assert_array_equal(read_predictions(tmp_path / "out" / "predictions.csv")[1],
                                  reference_fit(data, lam=0.3).transductive_proba_)
    assert not (tmp_path / "out" / "report.png").exists() and (tmp_path / "out" / "report.md").exists()


def test_parquet_round_trip(tmp_path, data):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    columns = {"id": list(range(100, 100 + len(data.P)))}
    columns.update({f"m{j}": data.P[:, j] for j in range(data.P.shape[1])})
    columns["label"] = [None if np.isnan(v) else int(v) for v in data.labels]
    pq.write_table(pa.table(columns), tmp_path / "train.parquet")
    done = run_cli("fit", "train.parquet", "-o", "out", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pydict()
    assert out["id"] == columns["id"]
    np.testing.assert_array_equal(out["probability"], reference_fit(data).transductive_proba_)


@pytest.mark.parametrize(
    "content, match",
    [
        ("m0,m1\n0.5,abc\n", "column 'm1', data row 1: 'abc' is not a number"),
        ("m0,m1\n0.5,0.2,0.1\n", "Row #2: Expected 2 columns, got 3"),
        ("m0,m1\n0.5,1.7\n0.1,0.2\n", r"column 'm1', data row 1: 1.7 is not a probability in \[0, 1\]"),
        ("m0,label\n0.5,0.5\n0.1,0\n", r"label column 'label' must hold class labels; found continuous values"),
        ("", "Empty CSV"),
    ],
)
def test_bad_csv_gives_one_line_error(tmp_path, capsys, content, match):
    (tmp_path / "bad.csv").write_text(content)
    assert main(["fit", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cfe-fast: error:")
    assert re.search(match, err), err


def test_bad_files_in_a_subprocess_exit_2_without_traceback(tmp_path, data):
    (tmp_path / "model.npz").write_bytes(b"PK\x03\x04 truncated")
    np.save(tmp_path / "new.npy", data.P[:5])
    done = run_cli("predict", "model.npz", "new.npy", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("cfe-fast: error: model.npz is truncated or corrupt") and "Traceback" not in done.stderr
    done = run_cli("fit", "table.xlsx", cwd=tmp_path)
    assert done.returncode == 2 and "unsupported file type '.xlsx'" in done.stderr
    done = run_cli("predict", "model.npz", "new.npy", "--debug", cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_outputs_are_not_overwritten_without_force(tmp_path, data):
    write_csv(tmp_path / "t.csv", data.P, data.labels)
    args = ["fit", str(tmp_path / "t.csv"), "-o", str(tmp_path / "out"), "--no-report", *FAST]
    assert main(args) == 0
    before = (tmp_path / "out" / "model.npz").read_bytes()
    assert main(args + ["--max-iter", "3"]) == 2  # refused before fitting
    assert (tmp_path / "out" / "model.npz").read_bytes() == before
    assert main(args + ["--max-iter", "3", "--force"]) == 0
    assert CFEnsembleClassifier.load(tmp_path / "out" / "model.npz").max_iter == 3  # the refit's model
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left behind


def test_every_estimator_parameter_has_an_option():
    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    dests = {action.dest for action in fit._actions}
    params = set(CFEnsembleClassifier().get_params()) - {"verbose"}
    # a client cannot be typed; unlabeled: the table readers read 0/1 labels with NaN or -1 for unlabeled
    assert {f"param_{name}" for name in params} - {"param_client", "param_unlabeled"} <= dests
    assert {d for d in dests if d.startswith("param_")} <= {f"param_{name}" for name in params}


@pytest.mark.parametrize("command", ["fit", "predict", "diagnose", "demo"])
def test_subcommand_help_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cfe-fast {command}") and len(out.splitlines()) > 8


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    data = make_ensemble(n_classifiers=8, n_instances=3000, random_state=5)
    write_csv(tmp_path / "t.csv", data.P, data.labels)
    args = ["fit", "t.csv", "-o", "out", "--latent-dim", "3", "--max-iter", "120", "--tol", "0", "--no-report",
            "--quiet", "--checkpoint-every", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "cfe_fast.cli", *args], cwd=tmp_path, env=env,
                               stderr=subprocess.PIPE)
    checkpoint = tmp_path / "out" / "checkpoint.npz"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the fit ended before it could be killed"
    assert not (tmp_path / "out" / "predictions.csv").exists()
    done = run_cli(*args, cwd=tmp_path)  # refuses to clobber the checkpoint
    assert done.returncode == 2 and "--resume" in done.stderr
    done = run_cli(*args, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not checkpoint.exists()
    full = CFEnsembleClassifier(latent_dim=3, max_iter=120, tol=0, random_state=0).fit(data.P, data.labels)
    np.testing.assert_array_equal(read_predictions(tmp_path / "out" / "predictions.csv")[1], full.transductive_proba_)
    resumed = CFEnsembleClassifier.load(tmp_path / "out" / "model.npz")
    assert resumed.history_["loss"] == full.history_["loss"]


# ------------------------------------------- options generated from the estimator
SIGNATURE = inspect.signature(CFEnsembleClassifier).parameters


def fit_parser():
    return build_parser()._subparsers._group_actions[0].choices["fit"]


def model_actions():
    """{parameter name: its --name action} of fit (the --no-name of a boolean left out)."""
    return {a.dest[len("param_"):]: a for a in fit_parser()._actions
            if a.dest.startswith("param_") and not a.option_strings[0].startswith("--no-")}


def parse(*options):
    return _estimator_from(build_parser().parse_args(["fit", "table.csv", *options]))


def test_help_shows_the_true_default_of_every_option():
    actions = model_actions()
    assert set(actions) == set(SIGNATURE) - {"client", "unlabeled", "verbose"}  # as above; verbose: the bar
    for name, action in actions.items():
        shown = re.search(r"default: ([^;)\s]+)", action.help % {}).group(1)
        value = action.type(shown)
        if name in CLI_DEFAULTS:  # documented: the command line fixes the seed
            assert name == "random_state" and value == CLI_DEFAULTS[name] == 0
            assert f"{SIGNATURE[name].default!r} in the estimator" in action.help
        else:
            assert value == SIGNATURE[name].default and type(value) is type(SIGNATURE[name].default), name
    assert parse().get_params() == CFEnsembleClassifier(random_state=0).get_params()  # no option: the defaults


def test_fit_help_text_has_the_estimators_rho_default(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--rho FLOAT Weight of the reconstruction term" in out  # the help is the docstring's
    assert f"(range: [0, 1]; default: {SIGNATURE['rho'].default})" in out and "default 0.5" not in out


def test_the_docstring_documents_every_parameter_with_its_default():
    documented = docstring_parameters(CFEnsembleClassifier)
    assert set(SIGNATURE) <= set(documented)
    for name, default in re.findall(r"^ {4}(\w+) : .*default=(.+)$", CFEnsembleClassifier.__doc__, re.M):
        if name in SIGNATURE:
            assert ast.literal_eval(default) == SIGNATURE[name].default, name


@pytest.mark.parametrize(
    "options, value",
    [
        ([], False), (["--reinit-collapsed-aggregator"], True), (["--reinit-collapsed-aggregator", "no"], False),
        (["--reinit-collapsed-aggregator", "yes"], True), (["--reinit-collapsed-aggregator", "FALSE"], False),
        (["--reinit-collapsed-aggregator", "1"], True), (["--reinit-collapsed-aggregator", "off"], False),
        (["--no-reinit-collapsed-aggregator"], False), (["--reinit-collapsed-aggregator=no"], False),
        (["--reinit-collapsed-aggregator", "--no-reinit-collapsed-aggregator"], False),
    ],
)
def test_boolean_options(options, value):
    assert parse(*options).reinit_collapsed_aggregator is value
    if options[-1:] != ["--reinit-collapsed-aggregator"]:  # a bare --name before INPUT takes INPUT as its value
        model = _estimator_from(build_parser().parse_args(["fit", *options, "table.csv"]))  # options before INPUT
        assert model.reinit_collapsed_aggregator is value


@pytest.mark.parametrize("options", [["--reinit-collapsed-aggregator", "maybe"],
                                     ["--reinit-collapsed-aggregator", "nope"],
                                     ["--no-reinit-collapsed-aggregator=yes"],
                                     ["--reinit-collapsed-aggregator", "table.csv"]])  # not a silent True
def test_an_invalid_boolean_word_is_an_error(options, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["fit", *options, "table.csv"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--reinit-collapsed-aggregator" in err or "--no-reinit-collapsed-aggregator" in err
    assert "invalid boolean" in err or "ignored explicit argument" in err


def test_choices_come_from_the_parameter_declarations(capsys):
    actions = model_actions()
    for name, param in PARAMETERS.items():
        if param.kind == "choice":
            assert tuple(actions[name].choices) == param.choices, name
    assert PARAMETERS["backend"].choices == BACKENDS and tuple(actions["backend"].choices) == BACKENDS
    assert parse("--class-weight", "none").class_weight is None
    assert parse("--class-weight", "balanced").class_weight == "balanced"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "t.csv", "--trainer", "sgd"])
    assert "invalid choice: 'sgd'" in capsys.readouterr().err
    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    backend = next(a for a in demo._actions if a.dest == "backend")
    assert tuple(backend.choices) == BACKENDS and backend.default == SIGNATURE["backend"].default


def test_none_words_and_types():
    model = parse("--latent-dim", "none", "--clip-norm", "NONE", "--seed", "none")
    assert model.latent_dim is None and model.clip_norm is None and model.random_state is None
    model = parse("--latent-dim", "4", "--rho", "0.25", "--seed", "7", "--max-iter", "9", "--trainer", "joint")
    assert (model.latent_dim, model.rho, model.random_state, model.max_iter, model.trainer) == (4, 0.25, 7, 9, "joint")
    assert type(model.latent_dim) is int and type(model.rho) is float


@pytest.mark.parametrize(
    "options, message",
    [
        (["--rho", "1.5"], "rho must be in [0, 1], got 1.5"),
        (["--rho", "nan"], "rho must be a finite real number in [0, 1], got nan"),
        (["--freeze-aggregator-iters", "-1"], "freeze_aggregator_iters must be an integer >= 0, got -1"),
        (["--confidence", "psychic"], "confidence has an unknown confidence strategy 'psychic'"),
        (["--clip-norm", "0"], "clip_norm must be None or > 0, got 0.0"),
        (["--seed", "-4"], "random_state must be None, an integer >= 0"),
        (["--trainer", "exact", "--aggregator", "mean"], "trainer='exact' fits the weighted aggregator"),
        (["--solver", "cg", "--trainer", "joint"], "solver='cg' applies to trainer='als' only"),
    ],
)
def test_bad_parameters_are_one_line_errors_before_the_table_is_read(tmp_path, capsys, options, message):
    assert main(["fit", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out"), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"cfe-fast: error: {message}" or err.startswith(f"cfe-fast: error: {message}"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_wrong_int_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["fit", "t.csv", "--max-iter", "1.5"])
    assert stop.value.code == 2 and "invalid int value: '1.5'" in capsys.readouterr().err


def test_predict_scores_the_labeled_rows_of_a_label_column(tmp_path, data, capsys):
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    np.savez(tmp_path / "train.npz", P=data.P, label=data.labels)
    assert main(["fit", str(tmp_path / "train.npz"), "-o", str(tmp_path / "out"), "--no-report", *FAST]) == 0
    model = CFEnsembleClassifier.load(tmp_path / "out" / "model.npz")
    new_labels = data.y_true[:80].astype(float)
    new_labels[::3] = np.nan  # unlabeled rows are predicted, not scored
    np.savez(tmp_path / "new.npz", P=data.P[:80], label=new_labels)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "out" / "model.npz"), str(tmp_path / "new.npz"),
                 "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    labeled = ~np.isnan(new_labels)
    y, p = new_labels[labeled].astype(int), model.predict_proba(data.P[:80])[labeled, 1]
    assert f"on the {labeled.sum()} labeled instances" in printed
    assert f"PR-AUC {average_precision_score(y, p):.4f}" in printed
    assert f"ROC-AUC {roc_auc_score(y, p):.4f}" in printed
    assert f"Brier {brier_score_loss(y, p):.4f}" in printed
    # one class only: the Brier score, and why the AUCs are missing
    np.savez(tmp_path / "one.npz", P=data.P[:5], label=np.ones(5))
    assert main(["predict", str(tmp_path / "out" / "model.npz"), str(tmp_path / "one.npz"),
                 "-o", str(tmp_path / "q.csv"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Brier" in printed and "need both classes" in printed and "PR-AUC 0" not in printed


def test_the_prediction_column_cuts_at_the_models_threshold(tmp_path, data):
    write_csv(tmp_path / "train.csv", data.P, data.labels)
    done = run_cli("fit", "train.csv", "-o", "out", "--threshold", "0.3", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows, proba = read_predictions(tmp_path / "out" / "predictions.csv")
    assert [int(r["prediction"]) for r in rows] == list((proba >= 0.3).astype(int))
    assert (proba >= 0.3).sum() > (proba >= 0.5).sum()  # the threshold matters on this data
    write_csv(tmp_path / "new.csv", data.P[:50])
    assert main(["predict", str(tmp_path / "out" / "model.npz"), str(tmp_path / "new.csv"),
                 "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    rows, proba = read_predictions(tmp_path / "p.csv")
    assert [int(r["prediction"]) for r in rows] == list((proba >= 0.3).astype(int))


def test_ctrl_c_while_the_parser_imports_exits_130_without_a_traceback(monkeypatch, capsys):
    from cfe_fast import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["fit", "x.csv", "-o", "out"]) == 130
    assert capsys.readouterr().err == "cfe-fast: interrupted\n"


def test_fit_and_predict_with_empty_cells_and_parquet_nulls(tmp_path, data, capsys):
    """An empty CSV cell and a Parquet null are unobserved entries, in fit and in predict."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    P = np.where(rng.random(data.P.shape) < 0.3, np.nan, data.P)
    write_csv(tmp_path / "train.csv", P, data.labels)
    text = (tmp_path / "train.csv").read_text().replace("nan", "")
    (tmp_path / "train.csv").write_text(text)
    assert ",," in text
    assert main(["fit", str(tmp_path / "train.csv"), "-o", str(tmp_path / "out"), *FAST]) == 0
    expected = CFEnsembleClassifier(latent_dim=3, max_iter=15, random_state=0).fit(P, data.labels)
    _, proba = read_predictions(tmp_path / "out" / "predictions.csv")
    np.testing.assert_allclose(proba, expected.transductive_proba_, rtol=1e-6, atol=1e-9)

    new = np.where(rng.random((50, P.shape[1])) < 0.5, np.nan, data.P[:50])
    columns = {f"m{j}": pa.array([None if np.isnan(v) else float(v) for v in new[:, j]]) for j in range(P.shape[1])}
    pq.write_table(pa.table(columns), tmp_path / "new.parquet")
    assert main(["predict", str(tmp_path / "out" / "model.npz"), str(tmp_path / "new.parquet"),
                 "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    _, proba = read_predictions(tmp_path / "p.csv")
    np.testing.assert_allclose(proba, expected.predict_proba(new)[:, 1], rtol=1e-6, atol=1e-9)

    P[:, 4] = np.nan
    write_csv(tmp_path / "empty.csv", P, data.labels)
    (tmp_path / "empty.csv").write_text((tmp_path / "empty.csv").read_text().replace("nan", ""))
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "empty.csv"), "-o", str(tmp_path / "out2"), *FAST]) == 2
    assert "classifier 'm4' (column 4) of X has no observed entry" in capsys.readouterr().err
