"""Throwaway user projects for ``chalk apply`` tests: files written from text, and a fixture
that undoes what importing them did to this process (modules, sys.path, feature classes)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from chalk.features import dsl

# A feature module as a user writes one (dedented when written).
PLAIN_DOCUMENT = """
    from chalk import functions as F
    from chalk.features import _, features


    @features
    class Document:
        id: int
        text: str
        shout: str = F.upper(_.text)
"""


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    """Write each ``relative path: text`` under ``root`` (text dedented); returns ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@contextmanager
def imports_undone(root: Path) -> Iterator[None]:
    """Importing the project at ``root`` in the block leaves none of its modules, no sys.path
    entry and no feature class behind; modules from elsewhere (chalk's own) stay loaded."""
    modules = set(sys.modules)
    path = list(sys.path)
    registry = dict(dsl._REGISTRY)
    try:
        yield
    finally:
        for name in set(sys.modules) - modules:
            if _loaded_from(sys.modules[name], root.resolve()):
                del sys.modules[name]
        sys.path[:] = path
        dsl._REGISTRY.clear()
        dsl._REGISTRY.update(registry)


@pytest.fixture
def isolated_imports(tmp_path: Path) -> Iterator[None]:
    """``imports_undone`` around a whole test, for a project under ``tmp_path``."""
    with imports_undone(tmp_path):
        yield


def _loaded_from(module: ModuleType, root: Path) -> bool:
    places = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
    return any(place and Path(place).resolve().is_relative_to(root) for place in places)
