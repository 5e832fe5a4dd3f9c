"""The architecture's rules, checked on the source: no import cycle, an oracle that imports
nothing of the package but its exceptions, no production code that leans on the oracle, and
an ``import cfe_fast`` that changes no environment variable and loads no backend nor a heavy
library (its public names are imported on first use)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "cfe_fast"


def _modules():
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def import_graph():
    """{module: set of cfe_fast modules it imports} (module- and function-level imports alike)."""
    mods = _modules()
    graph = {name: set() for name in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph):
    state, stack, found = {}, [], []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for other in sorted(graph[module]):
            if other.startswith(module + "."):  # a package importing its own submodule
                continue
            if state.get(other) == "open":
                found.append(stack[stack.index(other):] + [other])
            elif other not in state:
                visit(other)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_import_graph_has_no_cycle():
    assert _cycles(import_graph()) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_oracle_imports_only_the_exceptions():
    assert import_graph()["cfe_fast.reference"] == {"cfe_fast.errors"}


def test_production_code_does_not_use_the_oracle():
    users = {name for name, imports in import_graph().items() if "cfe_fast.reference" in imports}
    assert users == {"cfe_fast.backends.numpy"}  # the reference run as the "numpy" backend, by design


def test_import_changes_no_environment_and_loads_no_backend():
    code = (
        "import json, os, sys; before = dict(os.environ); import cfe_fast; "
        "print(json.dumps([dict(os.environ) == before, "
        "[m for m in ('numba', 'dask', 'distributed', 'cupy', 'matplotlib') if m in sys.modules]]))"
    )
    unchanged, loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                  check=True).stdout)
    assert unchanged and loaded == []


def test_import_loads_no_heavy_library():
    code = ("import json, sys; import cfe_fast; print(json.dumps([m for m in ('sklearn', 'pandas', 'scipy.stats', "
            "'dask', 'matplotlib', 'numba') if m in sys.modules]))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert loaded == []


def test_every_public_name_resolves():
    import cfe_fast

    missing = [name for name in cfe_fast.__all__ if getattr(cfe_fast, name, None) is None]
    assert missing == []
    assert set(cfe_fast.__all__) <= set(dir(cfe_fast))
    with pytest.raises(AttributeError, match="no_such_name"):
        cfe_fast.no_such_name  # noqa: B018
