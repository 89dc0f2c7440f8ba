"""DESIGN.md's import rule: which part of ``chalk`` may import which."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import chalk

PACKAGE_ROOT = Path(chalk.__file__).resolve().parent

# part -> the parts it may import ("chalk" is the top-level package itself: always allowed;
# "common", the shared leaf part, is importable by every part and imports nothing internal).
ALLOWED: dict[str, frozenset[str]] = {
    "common": frozenset(),
    "features": frozenset(),
    "catalog": frozenset(),
    "shim": frozenset(),
    "engine": frozenset({"features", "catalog", "shim"}),
    "deploy": frozenset({"catalog", "shim"}),
    "server": frozenset({"features", "engine", "catalog", "deploy"}),
    "functions": frozenset({"features"}),
    "scaling": frozenset({"catalog"}),
    "client": frozenset({"*"}),
    "client_http": frozenset({"features", "engine", "catalog"}),
    "cli": frozenset({"*"}),
    "chalk": frozenset(),
}
# part -> the only parts that may import it, whatever ALLOWED says ("*" included).
IMPORTED_ONLY_BY: dict[str, frozenset[str]] = {"server": frozenset({"cli"})}
SHARED: str = "common"


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
                # `from a.b import c` runs the module a.b.c when c is one: named so for the
                # circle check; the rule only looks at the part, the same either way.
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"


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
            if target.split(".")[0] != "chalk":
                continue
            imported = _part(target)
            if imported in (part, "chalk"):
                continue
            only_by = IMPORTED_ONLY_BY.get(imported)
            if only_by is not None and part not in only_by:
                found.append(f"{path}:{line}: only {sorted(only_by)} may import {target}")
            elif imported != SHARED and "*" not in allowed and imported not in allowed:
                found.append(f"{path}:{line}: {part} may not import {target}")
    return found


def import_cycles(root: Path) -> dict[str, list[list[str]]]:
    """Per part, its import circles between its own modules (every import counts: local ones
    and those under ``TYPE_CHECKING`` too), each as the sorted modules of one circle."""
    modules = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    edges: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        for _line, target in _imports(path, module):
            imported = _imported_module(target, modules)
            if imported is not None and imported != module and _part(imported) == _part(module):
                edges[module].add(imported)
    cycles: dict[str, list[list[str]]] = {}
    for component in _strongly_connected(edges):
        if len(component) > 1:
            cycles.setdefault(_part(component[0]), []).append(sorted(component))
    return cycles


def _imported_module(target: str, modules: Mapping[str, Path]) -> str | None:
    """The module of ``modules`` an import of ``target`` runs: ``a.b.name`` is ``a.b`` when
    ``name`` is not a module itself (``from a.b import name``)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def _strongly_connected(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def test_the_package_follows_the_import_rule() -> None:
    assert violations(PACKAGE_ROOT) == []


@pytest.mark.parametrize(
    ("part_file", "source"),
    [
        pytest.param("shim/server.py", "import chalk.engine\n", id="shim_imports_engine"),
        pytest.param("catalog/store.py", "from chalk.deploy import x\n", id="catalog_deploy"),
        pytest.param("deploy/run.py", "from chalk import engine\n", id="deploy_engine"),
        pytest.param("features/dsl.py", "from ..catalog import y\n", id="relative_import"),
        pytest.param("common/names.py", "from chalk.catalog import x\n", id="common_catalog"),
        pytest.param("client.py", "from chalk.server import app\n", id="client_server"),
        pytest.param("engine/run.py", "import chalk.server.app\n", id="engine_server"),
        pytest.param("server/app.py", "from chalk.cli import main\n", id="server_cli"),
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


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        pytest.param(
            "chalk.shim, chalk.shim.cli", "polars kubernetes sqlalchemy lark", id="runtime"
        ),
        pytest.param(
            "chalk.common, chalk.common.names, chalk.common.quantities, chalk.common.config, "
            "chalk.common.apply_guard",
            "polars kubernetes sqlalchemy grpc pyarrow lark",
            id="shared_part",
        ),
    ],
)
def test_importing_a_light_part_loads_no_heavy_dependency(modules: str, heavy: str) -> None:
    probe = (
        f"import sys, {modules}\n"
        f"heavy = {set(heavy.split())!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "[]"


def test_no_part_has_an_import_circle_between_its_modules() -> None:
    cycles = import_cycles(PACKAGE_ROOT)

    assert cycles == {}


def test_the_circle_check_finds_a_circle_through_a_type_checking_import(tmp_path: Path) -> None:
    root = tmp_path / "chalk"
    (root / "catalog").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "catalog" / "__init__.py").write_text("")
    (root / "catalog" / "store.py").write_text("from chalk.catalog.groups import GroupStore\n")
    (root / "catalog" / "groups.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .store import Catalog\n"
    )
    (root / "catalog" / "records.py").write_text("from chalk.catalog import groups\n")

    assert import_cycles(root) == {"catalog": [["chalk.catalog.groups", "chalk.catalog.store"]]}


def test_every_part_may_import_common_and_the_cli_may_import_the_server(tmp_path: Path) -> None:
    root = tmp_path / "chalk"
    for part in ("shim", "features", "server", "cli"):
        (root / part).mkdir(parents=True)
        (root / part / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "shim" / "run.py").write_text("from chalk.common.errors import ChalkError\n")
    (root / "features" / "dsl.py").write_text("from chalk import common\n")
    (root / "server" / "app.py").write_text("from chalk.engine import query\nimport chalk.deploy\n")
    (root / "cli" / "serve.py").write_text("from chalk.server.app import serve\n")

    assert violations(root) == []
