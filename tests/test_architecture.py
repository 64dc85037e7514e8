"""The architecture, held by tests: sub-packages, no import cycles, one owner of the HDF5 layout.

Read from the source with :mod:`ast` (every import counts, function-local ones
too: a cycle hidden inside a function is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "ramble"
SUBPACKAGES = ("core", "models", "julia", "storage", "analysis", "experiments", "reporting")
# the top-level modules every layer may use; everything else lives in a sub-package
TOP_LEVEL = {"__init__", "cli", "errors", "progress", "threads", "userconfig"}
LONG_FUNCTION = 80  # lines; a longer function says why on a ``# long:`` comment line just above its ``def``


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def imported_modules(name: str) -> set[str]:
    """The ramble modules that module ``name`` imports anywhere in its body."""
    out: set[str] = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("ramble"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("ramble"))
    return {m for m in out if m in MODULES and m not in (name, "ramble")}


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph (Tarjan)."""
    graph = {m: imported_modules(m) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in graph:
        if m not in index:
            visit(m)
    return cycles


def test_every_module_lives_in_a_subpackage_or_is_a_shared_top_level_one():
    assert all((PACKAGE / sub / "__init__.py").is_file() for sub in SUBPACKAGES)
    loose = [m for m in MODULES if m.count(".") == 1 and m.split(".")[1] not in TOP_LEVEL | set(SUBPACKAGES)]
    assert loose == [], f"modules outside the sub-packages: {loose}"


def test_no_import_cycles_even_through_function_local_imports():
    assert import_cycles() == []


def test_the_import_graph_sees_function_local_imports():
    """The cycle check would pass vacuously if local imports were missed: cli imports its commands lazily."""
    local = [i for n in ast.walk(TREES["ramble.cli"]) if isinstance(n, ast.FunctionDef)
             for i in ast.walk(n) if isinstance(i, ast.ImportFrom) and (i.module or "").startswith("ramble.")]
    assert local and {i.module for i in local} <= imported_modules("ramble.cli")


def test_only_the_storage_package_touches_h5py():
    users = [m for m, tree in TREES.items() if not m.startswith("ramble.storage")
             for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             and ("h5py" in [a.name.split(".")[0] for a in n.names] if isinstance(n, ast.Import) else (n.module or "").startswith("h5py"))]
    assert users == [], f"h5py imported outside ramble.storage: {sorted(set(users))}"


def test_no_module_imports_another_modules_private_names():
    private = [f"{m}: {n.module}.{a.name}" for m, tree in TREES.items() for n in ast.walk(tree)
               if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("ramble") and n.module != m
               for a in n.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert private == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_are_short_or_say_why(name):
    lines = MODULES[name].read_text().splitlines()
    long = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            reason = lines[first - 2].strip() if first >= 2 else ""
            if node.end_lineno - node.lineno + 1 > LONG_FUNCTION and not reason.startswith("# long:"):
                long.append(f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})")
    assert long == [], f"functions over {LONG_FUNCTION} lines with no '# long:' reason above them"


def test_the_public_api_resolves_every_name_it_lists():
    import ramble

    missing = [n for n in ramble.__all__ if getattr(ramble, n, None) is None]
    assert missing == []
    assert ramble.connect.__module__ == "ramble.experiments.torch_experiment"
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        ramble.nonesuch  # noqa: B018


def test_importing_ramble_or_its_cli_does_not_load_torch():
    """The API is imported on first use, so ``ramble --help`` starts without torch."""
    import subprocess
    import sys

    code = "import sys, ramble, ramble.cli; print(sorted(m for m in ('torch', 'h5py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_shipped_model_is_one_file_found_without_editing_anything_else(tmp_path, monkeypatch):
    """A module ``<x>_experiment.py`` with a ``SPEC`` in ramble.experiments serves files whose model is ``SPEC.name``."""
    import ramble.experiments
    from ramble.errors import RambleError
    from ramble.models import registry

    (tmp_path / "toy_experiment.py").write_text("class Spec:\n    name = 'toy'\n    label = 'a toy model'\n\nSPEC = Spec()\n")
    (tmp_path / "helpers_without_spec.py").write_text("SPEC = None\n")
    with pytest.raises(RambleError, match=r"unknown model 'toy'; this ramble knows: .*torch"):
        registry.model_spec("toy")
    monkeypatch.setattr(ramble.experiments, "__path__", [*ramble.experiments.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_registered", {})
    assert registry.model_spec("toy").label == "a toy model"
    assert {"toy", "torch"} <= set(registry.shipped_specs())
