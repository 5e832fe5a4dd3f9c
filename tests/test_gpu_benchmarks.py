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
