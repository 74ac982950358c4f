"""The house rules of the code's layout, read from the source: no import cycles (imports in
functions included; only ``if TYPE_CHECKING:`` blocks are exempt), no imports inside
functions, the engine's core modules import no space package, and no experiment script
edits ``sys.path`` or imports another script."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas_engine", "search_spaces")
# The modules that must reach every space through the registry (nas_engine.spaces).
CORE = (
    "nas_engine",
    "nas_engine.engine",
    "nas_engine.config",
    "nas_engine.confirm",
    "nas_engine.report",
    "nas_engine.runs",
    "nas_engine.scoring",
    "nas_engine.fitness",
    "nas_engine.storage",
    "nas_engine.spaces",
    "nas_engine.metrics",
    "nas_engine.executors",
    "nas_engine.strategies",
    "nas_engine.cli",
)


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_package)
    return found


def _imports(module: str, path: Path, is_package: bool, known: set[str]):
    """(imported module, inside a function) for every import of ``module``: ``import a.b``
    imports ``a.b``; ``from a.b import c`` imports ``a.b`` (its ``__init__`` for a package)
    and ``a.b.c`` where that is a module."""
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                yield target, in_function
                for alias in child.names:
                    if f"{target}.{alias.name}" in known:
                        yield f"{target}.{alias.name}", in_function
            yield from visit(child, inner)

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for target, in_function in visit(tree, False):
        if target in known and target != module:
            yield target, in_function


@pytest.fixture(scope="module")
def graph() -> tuple[nx.DiGraph, list[tuple[str, str]]]:
    modules = _modules()
    g = nx.DiGraph()
    in_functions = []
    for name, (path, is_package) in modules.items():
        g.add_node(name)
        for target, in_function in _imports(name, path, is_package, set(modules)):
            g.add_edge(name, target)
            if in_function:
                in_functions.append((name, target))
    return g, in_functions


def test_the_reader_sees_every_module(graph) -> None:
    g, _ = graph
    assert {"nas_engine.engine", "search_spaces.rnn.space", "nas_engine.spaces.registry"} <= set(g)
    assert g.has_edge("search_spaces.rnn.space", "nas_engine.spaces")  # an arrow is seen


def test_no_import_cycles(graph) -> None:
    g, _ = graph
    cycles = [c for c in nx.simple_cycles(g)]
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_no_imports_inside_functions(graph) -> None:
    _, in_functions = graph
    assert in_functions == []


def test_core_modules_reach_spaces_only_through_the_registry(graph) -> None:
    g, _ = graph
    offenders = [
        (module, target)
        for module in g
        if module in CORE or any(module.startswith(c + ".") for c in CORE if c != "nas_engine")
        for target in g.successors(module)
        if target.split(".")[0] == "search_spaces"
    ]
    assert offenders == []


def test_experiments_import_the_package_not_each_other() -> None:
    scripts = sorted((ROOT / "experiments").glob("*.py"))
    names = {p.stem for p in scripts}
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        assert "sys.path" not in text, script.name
        tree = ast.parse(text)
        imported = {
            a.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import)
            for a in n.names
        } | {
            n.module.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module
        }
        assert not imported & names, f"{script.name} imports {imported & names}"
