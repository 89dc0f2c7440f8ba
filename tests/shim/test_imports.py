"""The runtime's modules import one another without a circle, function-local imports included."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SHIM = Path(__file__).resolve().parents[2] / "chalk" / "shim"
PACKAGE = "chalk.shim"


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _imported(tree: ast.AST, modules: set[str]) -> Iterator[str]:
    """Every module of ``modules`` that ``tree`` imports, wherever the import stands."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            # ``from chalk.shim import _wire`` counts as importing the package too: it runs
            # the package's ``__init__``, which must not need the importer back.
            yield node.module
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    yield f"{node.module}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in modules
        ):
            yield str(node.args[0].value)


def _graph() -> dict[str, set[str]]:
    paths = sorted(SHIM.glob("*.py"))
    modules = {_module_name(path) for path in paths}
    return {
        _module_name(path): set(_imported(ast.parse(path.read_text()), modules))
        - {_module_name(path)}
        for path in paths
    }


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` (empty when there is none)."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        for imported in sorted(graph[module]):
            found = visit(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return []

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return []


def test_no_module_of_the_runtime_imports_itself_through_another() -> None:
    assert _cycle(_graph()) == []


def test_the_circle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_the_graph_sees_type_checking_and_lazy_imports() -> None:
    graph = _graph()
    assert {"chalk.shim.server", "chalk.shim.client"} <= graph[PACKAGE]
    assert "chalk.shim.server" in graph["chalk.shim.cli"]


def test_importing_a_submodule_through_the_package_counts_as_importing_the_package() -> None:
    tree = ast.parse("from chalk.shim import _wire\n")
    assert set(_imported(tree, {PACKAGE, "chalk.shim._wire"})) == {PACKAGE, "chalk.shim._wire"}
