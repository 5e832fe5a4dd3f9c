"""Faults while the command line writes its outputs: kill -9 between writes, SIGTERM, read-only folders.

The kills are real: a driver process counts the renames that publish files
and sends itself SIGKILL before the k-th one, so nothing of the program's
clean-up runs.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cfe_fast import CFEnsembleClassifier, make_ensemble
from cfe_fast.cli import main
from cfe_fast.io.outputs import STAGING, OutputSet

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ["--latent-dim", "2", "--max-iter", "6", "--tol", "0", "--quiet", "--no-report", "--checkpoint-every", "1"]
OUTPUTS = {"predictions.csv", "model.npz", "report.md"}
#: the renames of a fit with --no-report: 3 staged files, the ready list, 3 moves into place
RENAMES = 7

DRIVER = """
import os, signal, sys
kill_before = int(sys.argv[1])
real_replace, count = os.replace, [0]

def replace(source, target):
    if not str(target).endswith("checkpoint.npz"):
        if count[0] == kill_before:
            os.kill(os.getpid(), signal.SIGKILL)
        count[0] += 1
    real_replace(source, target)

os.replace = replace
from cfe_fast.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run(args, cwd, kill_before=-1):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", DRIVER, str(kill_before), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    data = make_ensemble(n_classifiers=5, n_instances=150, random_state=1)
    np.savez(folder / "t.npz", P=data.P, label=data.labels)
    reference = folder / "reference"
    assert run(["fit", folder / "t.npz", "-o", reference, *OPTIONS], folder).returncode == 0
    return folder / "t.npz", (reference / "predictions.csv").read_bytes()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def check_killed_then_resumed(tmp_path, table, kill_before):
    path, expected = table
    out = tmp_path / "out"
    killed = run(["fit", path, "-o", out, *OPTIONS], tmp_path, kill_before)
    assert killed.returncode == -signal.SIGKILL
    present = {p.name for p in out.iterdir()} & OUTPUTS
    assert present in (set(), OUTPUTS) or (out / STAGING / "ready.json").exists()  # a set, or a set being moved
    again = run(["fit", path, "-o", out, *OPTIONS], tmp_path)
    assert again.returncode == 2 and ("--resume" in again.stderr), again.stderr
    resumed = run(["fit", path, "-o", out, *OPTIONS, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert {p.name for p in out.iterdir()} == OUTPUTS  # no checkpoint, staging folder or temporary file
    assert (out / "predictions.csv").read_bytes() == expected
    CFEnsembleClassifier.load(out / "model.npz")


def test_a_kill_in_the_middle_of_the_moves_leaves_a_set_that_resume_completes(tmp_path, table):
    check_killed_then_resumed(tmp_path, table, 5)


@pytest.mark.slow
@pytest.mark.parametrize("kill_before", [k for k in range(RENAMES) if k != 5])
def test_a_kill_before_any_rename_is_recovered(tmp_path, table, kill_before):
    """0-2: while staging; 3: staged but not marked complete; 4-6: while moving into place."""
    check_killed_then_resumed(tmp_path, table, kill_before)


def test_sigterm_is_handled_like_ctrl_c(tmp_path, table):
    path, _ = table
    out = tmp_path / "out"
    args = ["fit", path, "-o", out, *OPTIONS[:-1], "1", "--max-iter", "100000"]
    process = subprocess.Popen([sys.executable, "-c", DRIVER, "-1", *map(str, args)], cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "terminated" in err and "Traceback" not in err
    assert {p.name for p in out.iterdir()} == {"checkpoint.npz"}  # nothing partial, no temporary file


def test_stale_temporary_files_are_removed(tmp_path, table):
    path, _ = table
    out = tmp_path / "out"
    out.mkdir()
    for name in (".model.npz.abc123.tmp", ".checkpoint.npz.x.tmp", ".predictions.csv.y.tmp"):
        (out / name).write_bytes(b"partial")
    (out / STAGING).mkdir()
    (out / STAGING / "model.npz").write_bytes(b"partial")
    assert main(["fit", str(path), "-o", str(out), *OPTIONS]) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS


@pytest.mark.parametrize("kind", ["read-only", "under a file"])
def test_a_folder_that_cannot_be_written_is_refused_before_the_fit(tmp_path, table, capsys, monkeypatch, kind):
    path, _ = table
    if kind == "read-only":
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
        if os.access(out, os.W_OK):
            pytest.skip("this user (root) writes to read-only folders")
    else:
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
    fitted = []
    monkeypatch.setattr(CFEnsembleClassifier, "fit", lambda *a, **k: fitted.append(1))
    assert main(["fit", str(path), "-o", str(out), *OPTIONS]) == 2
    assert "cannot write to" in capsys.readouterr().err and not fitted


def test_a_failed_fit_leaves_no_folder_behind(tmp_path, table, capsys):
    path, _ = table
    P = np.load(path)["P"]
    np.savez(tmp_path / "one_class.npz", P=P, label=np.zeros(len(P)))
    assert main(["fit", str(tmp_path / "one_class.npz"), "-o", str(tmp_path / "out"), *OPTIONS]) == 2
    assert "one class" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_output_set_never_moves_a_name_it_does_not_own(tmp_path):
    outputs = OutputSet(tmp_path, ["a.csv"])
    outputs.start()
    (outputs.staging / "ready.json").write_text('["a.csv", "../escape"]')
    (outputs.staging / "a.csv").write_text("x")
    assert outputs.interrupted()
    assert outputs.finish_interrupted() == [tmp_path / "a.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
