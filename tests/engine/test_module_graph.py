"""The engine's modules import one another without a circle, counting every import: at the top,
inside functions and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import chalk

PACKAGE_ROOT = Path(chalk.__file__).resolve().parent
# The parts whose files must not import one another in a circle.
PARTS = ("engine",)


def module_imports(part: str) -> dict[str, set[str]]:
    """Each module of ``chalk.<part>`` (by file stem) -> the modules of the part it imports."""
    package = f"chalk.{part}"
    files = {path.stem: path for path in (PACKAGE_ROOT / part).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for stem, path in files.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == package:
                targets = [f"{package}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            else:
                continue
            for target in targets:
                head, _, name = target.partition(f"{package}.")
                stem_imported = name.split(".")[0]
                if not head and stem_imported in files and stem_imported != stem:
                    imported.add(stem_imported)
        graph[stem] = imported
    return graph


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in order, the first repeated), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            found = visit(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


@pytest.mark.parametrize("part", PARTS)
def test_no_import_circle_between_the_files_of_a_part(part: str) -> None:
    found = circle(module_imports(part))
    assert found is None, f"chalk/{part} imports in a circle: {' -> '.join(found or [])}"


def test_a_circle_is_found() -> None:
    graph = {"calls": {"execute"}, "execute": {"arrow_steps"}, "arrow_steps": {"calls"}}
    assert circle(graph) == ["arrow_steps", "calls", "execute", "arrow_steps"]
    assert circle({"calls": {"errors"}, "errors": set()}) is None
