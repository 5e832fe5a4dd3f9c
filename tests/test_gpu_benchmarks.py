"""The GPU benchmark scripts: they import without a GPU, the asv classes skip
cleanly there, and gpu_sweep.py's measuring and reporting logic runs end to end
with NumPy as the array module."""

import importlib.util
import re
from pathlib import Path

import pytest

from cfe_fast.backends.cupy import arrays as cb

BENCH = Path(__file__).parents[1] / "benchmarks"


def _load(path):
    """A file of benchmarks/ (the asv suite, or scripts/...) as a module."""
    spec = importlib.util.spec_from_file_location(f"_test_{Path(path).stem}", BENCH / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_asv_gpu_benchmarks_skip_without_gpu():
    if cb.gpu_module() is not None:
        pytest.skip("a GPU is present: asv runs these benchmarks")
    bench = _load("suite/bench_gpu.py")
    for cls in (bench.GpuHalfSteps, bench.GpuAggregator, bench.GpuGemm):
        timed = [name for name in vars(cls) if name.startswith(("time_", "track_"))]
        assert timed
        with pytest.raises(NotImplementedError, match="CUDA device"):
            cls().setup(*(values[0] for values in cls.params))


def test_gpu_sweep_reports_every_configuration(tmp_path):
    sweep = _load("scripts/gpu_sweep.py")
    path = sweep.main(["--xp", "numpy", "--ns", "300", "500", "--shapes", "3x5", "6x2", "--dtypes", "float32",
                       "--cpu-n", "100", "--gemm-size", "64", "--repeat", "1", "--out", str(tmp_path)])
    assert path == tmp_path / "gpu_sweep_cpu-numpy.md"
    text = path.read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| \d", line)]
    assert [tuple(r.split(" | ")[:3]) for r in rows] == [
        ("| 3", "5", "3e2"), ("| 3", "5", "5e2"), ("| 6", "2", "3e2"), ("| 6", "2", "5e2")
    ]
    for row in rows:
        sweep_s, cpu_s = float(row.split(" | ")[4]), float(row.split(" | ")[8])
        assert sweep_s > 0 and cpu_s > 0
    assert "- not measured in this run" in text
    error = float(re.search(r"relative error ([0-9.e+-]+)\.", text).group(1))
    assert 0 < error < 1e-4


def test_gpu_breakdown_refuses_cleanly_without_gpu(capsys):
    if cb.gpu_module() is not None:
        pytest.skip("a GPU is present: the breakdown runs")
    with pytest.raises(SystemExit) as exit_info:
        _load("scripts/gpu_breakdown.py").main(["--n", "1000"])
    assert exit_info.value.code == 2
    assert "CUDA device is needed" in capsys.readouterr().err


def test_gpu_job_smoke_run_writes_every_result(tmp_path):
    """The GPU batch job end to end with --smoke (NumPy as the array module, tiny sizes): each step's file."""
    job = _load("scripts/gpu_job.py")
    written = job.main(["--smoke", "--out", str(tmp_path), "--work", str(tmp_path)])
    names = ["gpu_tests_cpu-numpy.log", "gpu_sweep_cpu-numpy.md", "gpu_trainers_cpu-numpy.md", "gpu_batch_cpu-numpy.md"]
    assert written == [tmp_path / name for name in names]
    log = written[0].read_text()
    assert "array module: numpy" in log
    assert re.search(r"pytest -m gpu tests/test_cupy_backend.py: \d+ skipped, \d+ deselected in .*\(exit 0", log)
    sweep = written[1].read_text()
    assert [line.split(" | ")[3] for line in sweep.splitlines() if re.match(r"\| \d", line)] == ["float32", "float64"]
    rows = [line.split(" | ") for line in written[2].read_text().splitlines() if re.match(r"\| [a-z]+ \| float", line)]
    assert [(r[0][2:], r[1]) for r in rows] == [(t, dt) for t in job.TRAINERS for dt in job.DTYPES]
    for r in rows:  # per-iteration seconds, then the errors against the float64 Numba fit
        assert all(float(v) > 0 for v in r[2:5])
        assert float(r[5]) < (1e-10 if r[1] == "float64" else 1e-3)
    batch = written[3].read_text()
    assert "Exit code 0." in batch
    timings = [float(v) for v in batch.splitlines()[-3].strip("|").split("|")[:5]]
    assert len(timings) == 5 and all(t >= 0 for t in timings) and timings[4] >= sum(timings[:4])
    assert not list(tmp_path.glob("tmp*"))  # the batch input and outputs are removed
