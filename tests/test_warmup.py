"""Compiling ahead (``cfe-fast warmup``) and the line that says a first run is compiling."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfe_fast.backends import CAPABILITIES
from cfe_fast.backends.numba.compile_notice import MESSAGE
from cfe_fast.backends.numba.instance_step import choose_solver
from cfe_fast.parameters import DTYPES
from cfe_fast.warmup import SHAPES, configurations

ROOT = Path(__file__).resolve().parents[1]
#: a process that compiles one small kernel (or loads it from the cache)
ONE_KERNEL = "from cfe_fast.backends.numba.common import tri; tri(3)"


def run_python(code, cache_dir, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, *args, "-c", code] if code else [sys.executable, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True)


def test_configurations_cover_every_trainer_solver_dtype_and_instance_form():
    found = {(c["trainer"], c["solver"], c["dtype"]) for c in configurations()}
    capabilities = CAPABILITIES["numba"]
    assert {(t, s, dt) for t, s, dt in found if t == "als"} == {
        ("als", s, dt) for s in capabilities.solvers for dt in DTYPES}
    assert {t for t, _, _ in found} == set(capabilities.trainers)
    assert {choose_solver(m, d) for m, d in SHAPES} == {"dual", "primal"}


def test_a_compile_says_so_once_and_a_cache_hit_says_nothing(tmp_path):
    first = run_python(ONE_KERNEL + "; tri(3.0)", tmp_path)  # two compiles, one line
    assert first.stderr.count(MESSAGE) == 1
    assert MESSAGE not in run_python(ONE_KERNEL, tmp_path).stderr


@pytest.mark.slow
def test_warmup_compiles_every_kernel_a_fit_calls(tmp_path):
    warm = subprocess.run([sys.executable, "-m", "cfe_fast.cli", "warmup"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path)}, check=True)
    assert MESSAGE in warm.stderr and "every kernel compiled" in warm.stderr
    # every configuration again, in a new process: everything comes from the cache
    after = run_python("from cfe_fast.warmup import warm_up; warm_up()", tmp_path)
    assert MESSAGE not in after.stderr


def test_the_command_line_says_it_unless_quiet(monkeypatch, caplog, capsys):
    import logging

    from cfe_fast import warmup
    from cfe_fast.cli import main

    def compiling(report=None):  # what a first run does: the notice, then the work
        logging.getLogger("cfe_fast").warning(MESSAGE)
        return 0.0

    monkeypatch.setattr(warmup, "warm_up", compiling)
    with caplog.at_level(logging.WARNING, logger="cfe_fast"):
        assert main(["warmup", "--quiet"]) == 0
        assert MESSAGE not in caplog.text and capsys.readouterr().err == ""
        assert main(["warmup"]) == 0
        assert MESSAGE in caplog.text and "every kernel compiled" in capsys.readouterr().err
