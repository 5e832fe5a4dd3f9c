"""The README's Python snippets run as they are written.

Every ```python block of README.md is written to a file and run as a script
(each block is complete on its own, as a user would paste it), with this
source tree's cfe_fast. A block that uses the GPU runs only where CuPy sees a
device; a block that uses Dask runs only where dask.distributed is installed,
and is slow (it starts a local cluster).
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def readme_blocks():
    """(the heading above the block, its line number, its code) for each ```python block."""
    text = README.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        headings = HEADING.findall(text, 0, match.start())
        line = text.count("\n", 0, match.start()) + 1
        blocks.append((headings[-1] if headings else "README", line, match.group(1)))
    return blocks


def gpu_available():
    from cfe_fast.backends.cupy.arrays import gpu_module

    return gpu_module() is not None


def needs(code):
    """pytest marks of a block: what it needs that may be missing, and whether it is slow."""
    marks = []
    if 'backend="cupy"' in code:
        marks += [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a GPU")]
    if 'backend="dask"' in code:
        marks += [
            pytest.mark.slow,
            pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="needs dask.distributed"),
        ]
    return marks


BLOCKS = [
    pytest.param(code, id=f"line {line}: {heading}", marks=needs(code)) for heading, line, code in readme_blocks()
]


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS)
def test_readme_block_runs(code, tmp_path):
    script = tmp_path / "readme_block.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"the README block failed:\n{code}\n--- stderr ---\n{result.stderr[-3000:]}"
