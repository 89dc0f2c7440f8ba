"""DESIGN.md's import rule: which part of ``chalk`` may import which."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import chalk

PACKAGE_ROOT = Path(chalk.__file__).resolve().parent

# part -> the parts it may import ("chalk" is the top-level package itself: always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "features": frozenset(),
    "catalog": frozenset(),
    "shim": frozenset(),
    "engine": frozenset({"features", "catalog", "shim"}),
    "deploy": frozenset({"catalog", "shim"}),
    "functions": frozenset({"features"}),
    "scaling": frozenset({"catalog"}),
    "server": frozenset({"features", "engine", "catalog", "deploy"}),
    "client": frozenset({"*"}),
    "client_http": frozenset({"features", "engine", "catalog"}),
    "cli": frozenset({"*"}),
    "chalk": frozenset(),
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "chalk"


def _module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    names = list(relative.parts)
    if names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "chalk":
                # `from chalk import shim` imports the part named, not just the package.
                for alias in node.names:
                    yield node.lineno, f"chalk.{alias.name}" if alias.name in ALLOWED else target
            else:
                yield node.lineno, target


def violations(root: Path) -> list[str]:
    """Every import in ``root`` (a ``chalk`` tree) that the rule forbids, as file:line text."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        part = _part(module)
        allowed = ALLOWED.get(part)
        if allowed is None:
            found.append(f"{path}: part {part!r} is not in DESIGN.md's import rule")
            continue
        for line, target in _imports(path, module):
            if target.split(".")[0] != "chalk" or "*" in allowed:
                continue
            imported = _part(target)
            if imported not in (part, "chalk") and imported not in allowed:
                found.append(f"{path}:{line}: {part} may not import {target}")
    return found


def test_the_package_follows_the_import_rule() -> None:
    assert violations(PACKAGE_ROOT) == []


@pytest.mark.parametrize(
    ("part_file", "source"),
    [
        pytest.param("shim/server.py", "import chalk.engine\n", id="shim_imports_engine"),
        pytest.param("catalog/store.py", "from chalk.deploy import x\n", id="catalog_deploy"),
        pytest.param("deploy/run.py", "from chalk import engine\n", id="deploy_engine"),
        pytest.param("features/dsl.py", "from ..catalog import y\n", id="relative_import"),
    ],
)
def test_the_checker_catches_a_forbidden_import(
    tmp_path: Path, part_file: str, source: str
) -> None:
    root = tmp_path / "chalk"
    path = root / part_file
    path.parent.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (path.parent / "__init__.py").write_text("")
    path.write_text(source)

    assert len(violations(root)) == 1


def test_the_checker_allows_what_the_rule_allows(tmp_path: Path) -> None:
    root = tmp_path / "chalk"
    (root / "engine").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "engine" / "__init__.py").write_text("")
    (root / "engine" / "run.py").write_text(
        "import chalk.shim\nfrom chalk.catalog import x\nfrom chalk import features\n"
        "from . import grammar\nfrom chalk import __version__\n"
    )

    assert violations(root) == []


def test_importing_the_runtime_loads_no_heavy_dependency() -> None:
    probe = (
        "import sys, chalk.shim, chalk.shim.cli\n"
        "heavy = {'polars', 'kubernetes', 'sqlalchemy', 'lark'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "[]"
