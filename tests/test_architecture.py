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
    assert ramble.connect.__module__ == "ramble.core.connect"
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


MODEL_NAMES = {"tcm", "lenet5", "torch"}
PAPER_SPECIFIC = "# paper-specific:"  # a comment on the line: report content about the paper's own two experiments


def _names_a_model(node: ast.AST) -> bool:
    """``model``, ``e.model``, ``self.model_name``...: an expression that is (by its name) a model's name."""
    return (isinstance(node, ast.Name) and "model" in node.id) or (isinstance(node, ast.Attribute) and node.attr == "model")


def _model_literals(node: ast.AST) -> set[str]:
    """The model names among a string constant or a tuple/list/set of them."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {i.value for i in items if isinstance(i, ast.Constant) and i.value in MODEL_NAMES}


def model_name_comparisons(tree: ast.AST, lines: list[str]) -> list[str]:
    """Lines that compare a model's name with "tcm"/"lenet5"/"torch" (==, !=, in), unless marked :data:`PAPER_SPECIFIC`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(map(_names_a_model, sides)) and set().union(*map(_model_literals, sides)) and PAPER_SPECIFIC not in lines[node.lineno - 1]:
                out.append(f"line {node.lineno}: {lines[node.lineno - 1].strip()}")
    return out


def test_the_model_name_check_sees_comparisons():
    code = 'if e.model == "tcm":\n    pass\nif model not in ("lenet5", "x"):\n    pass\nif e.model == "tcm":  # paper-specific: why\n    pass\nif backend == "torch":\n    pass\n'
    assert model_name_comparisons(ast.parse(code), code.splitlines()) == ['line 1: if e.model == "tcm":', 'line 3: if model not in ("lenet5", "x"):']


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.startswith("ramble.experiments")))
def test_only_a_models_own_file_names_it(name):
    """Outside ramble.experiments a model is looked up (ramble.models.registry.model_spec), not branched on by name; a new model file needs no edit elsewhere."""
    found = model_name_comparisons(TREES[name], MODULES[name].read_text().splitlines())
    assert found == [], f"compares a model's name with a literal (use its spec, or say '{PAPER_SPECIFIC} why' on the line)"
