"""A project's feature modules: the ``.py`` files under its root that ``.chalkignore`` leaves,
imported under their dotted names so their ``@features`` classes register.

``chalk apply`` calls ``import_project``; the small pure functions below decide which files.
"""

from __future__ import annotations

import contextlib
import importlib
import keyword
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pathspec

from chalk.common.errors import ChalkError
from chalk.features.dsl import FeatureClassError, feature_classes

__all__ = [
    "BUILTIN_IGNORES",
    "IGNORE_FILE",
    "ImportProblem",
    "ImportedProject",
    "ProjectFilesError",
    "import_project",
    "is_ignored",
    "module_name",
    "project_files",
    "read_ignore_file",
]

IGNORE_FILE: Final = ".chalkignore"
# Folders never searched, wherever they are and whatever .chalkignore says.
BUILTIN_IGNORES: Final = frozenset({".git", ".venv", "venv", "__pycache__", ".chalk"})
_INSTALLED: Final = frozenset({"site-packages", "dist-packages"})


class ProjectFilesError(ChalkError, ValueError):
    """A ``.chalkignore`` or a module path the project's import cannot work with."""


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A module that failed to import: where (``file:line``, root-relative) and the error."""

    location: str
    error: BaseException

    @property
    def message(self) -> str:
        if isinstance(self.error, FeatureClassError):  # it names its own class, file and line
            return f"{type(self.error).__name__}: {self.error}"
        return f"{self.location}: {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True, slots=True)
class ImportedProject:
    """What importing a project found: its module names, feature classes and failures."""

    modules: tuple[str, ...]
    classes: tuple[type, ...]
    problems: tuple[ImportProblem, ...]


def read_ignore_file(root: Path) -> pathspec.GitIgnoreSpec:
    """The patterns of ``<root>/.chalkignore`` (gitignore syntax); none when it is missing.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = (Path(folder) / ".chalkignore").write_text("# scripts\\ndeploy/\\n")
    ...     is_ignored(read_ignore_file(Path(folder)), "deploy/register.py")
    True
    """
    path = root / IGNORE_FILE
    if not path.exists() and not path.is_symlink():
        return pathspec.GitIgnoreSpec([])
    lines = _ignore_lines(path)
    for number, line in enumerate(lines, start=1):
        problem = _unclosed_bracket(line)
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except ValueError as error:  # pathspec's pattern errors are ValueErrors
            problem = str(error)
        if problem:
            raise ProjectFilesError(
                f"{IGNORE_FILE}:{number} has the pattern {line!r}, which is not gitignore "
                f"syntax ({problem}): expected e.g. `deploy/`, `/setup.py` or `**/scratch_*.py`"
            )
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _ignore_lines(path: Path) -> list[str]:
    """The lines of ``.chalkignore``; a folder, an unreadable file or one not in UTF-8 is an
    error naming it."""
    if not path.is_file():
        raise ProjectFilesError(
            f"{IGNORE_FILE} is not a file ({path}): expected a text file of gitignore patterns"
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProjectFilesError(
            f"{IGNORE_FILE} cannot be read ({path}): {error.strerror or error}"
        ) from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ProjectFilesError(
            f"{IGNORE_FILE}:{line} is not UTF-8 text (byte 0x{data[error.start]:02x}): expected "
            f"gitignore patterns in UTF-8; save it as UTF-8"
        ) from None


def _unclosed_bracket(line: str) -> str:
    """Why ``line`` has a ``[`` that no ``]`` closes ("" when it has none): git then matches
    nothing with it, which is never what was meant."""
    if line.startswith("#"):
        return ""
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            # A ']' right after '[' or '[!' belongs to the set.
            close = line.find("]", index + (3 if line[index + 1 : index + 2] in "!^" else 2))
            if close < 0:
                return f"the '[' at column {index + 1} is never closed by ']'"
            index = close
        index += 1
    return ""


def is_ignored(spec: pathspec.GitIgnoreSpec, relative: str, *, folder: bool = False) -> bool:
    """Whether a root-relative POSIX path is left out: a built-in folder on it, or ``spec``.

    Examples
    --------
    >>> spec = pathspec.GitIgnoreSpec.from_lines(["*.py", "!keep.py"])
    >>> is_ignored(spec, "drop.py"), is_ignored(spec, "keep.py"), is_ignored(spec, ".venv/x.py")
    (True, False, True)
    """
    parts = relative.split("/")
    if any(part in BUILTIN_IGNORES for part in (parts if folder else parts[:-1])):
        return True
    return spec.match_file(f"{relative}/" if folder else relative)


def project_files(root: Path, spec: pathspec.GitIgnoreSpec) -> list[str]:
    """The root-relative paths of the ``.py`` files ``spec`` leaves, sorted.

    As git does, an ignored folder is not entered, so a ``!`` pattern cannot bring back a
    file inside one.
    """
    found: list[str] = []
    for folder, subfolders, files in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        subfolders[:] = [
            name for name in subfolders if not is_ignored(spec, prefix + name, folder=True)
        ]
        found.extend(
            prefix + name
            for name in files
            if name.endswith(".py") and not is_ignored(spec, prefix + name)
        )
    return sorted(found)


def module_name(relative: str) -> str:
    """The dotted module name of a root-relative ``.py`` path.

    Examples
    --------
    >>> module_name("features/user_features.py"), module_name("features/__init__.py")
    ('features.user_features', 'features')
    >>> module_name("my-scripts/run.py")
    Traceback (most recent call last):
    ...
    chalk.features.project.ProjectFilesError: my-scripts/run.py cannot be imported as a module: expected folder and file names that are Python identifiers, got 'my-scripts'; rename it, or add it to .chalkignore
    """  # noqa: E501
    parts = relative.removesuffix(".py").split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    for part in parts:
        if not part.isidentifier() or keyword.iskeyword(part):
            raise ProjectFilesError(
                f"{relative} cannot be imported as a module: expected folder and file names "
                f"that are Python identifiers, got {part!r}; rename it, or add it to "
                f"{IGNORE_FILE}"
            )
    return ".".join(parts)


def import_project(
    root: Path, *, on_module: Callable[[str], None] | None = None
) -> ImportedProject:
    """Import every module of the project at ``root``, in path order, with the root first on
    ``sys.path``; folders without ``__init__.py`` are namespace packages.

    Each module is imported once, under its dotted name, so ``from features.docs import
    Document`` elsewhere finds the same class. A module that fails is a problem with its file
    and line; the others are still imported. The classes are the feature classes defined in
    modules under ``root``. ``on_module`` hears each file's root-relative path before it is
    imported (``chalk apply``'s child reports it, so a module that ends the process is named).
    """
    root = root.resolve()
    # The root itself is no package: an __init__.py there names no module.
    files = [f for f in project_files(root, read_ignore_file(root)) if f != "__init__.py"]
    names = []
    problems: dict[tuple[str, str], ImportProblem] = {}
    sys.path.insert(0, str(root))
    try:
        for relative in files:
            try:
                name = module_name(relative)
            except ProjectFilesError as error:
                problems[(relative, str(error))] = ImportProblem(relative, error)
                continue
            names.append(name)
            if on_module is not None:
                on_module(relative)
            problem = _import(root, relative, name)
            if problem is not None:
                # A broken module fails again for each module importing it: report it once.
                problems.setdefault((problem.location, str(problem.error)), problem)
    finally:
        with contextlib.suppress(ValueError):  # the project's code may have taken it out
            sys.path.remove(str(root))
    return ImportedProject(
        modules=tuple(names),
        classes=tuple(_defined_under(root, feature_classes())),
        problems=tuple(problems.values()),
    )


def _import(root: Path, relative: str, name: str) -> ImportProblem | None:
    try:
        module = importlib.import_module(name)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        return ImportProblem(_error_location(root, relative, error), error)
    found = getattr(module, "__file__", None)
    if found is None or Path(found).resolve() != root / relative:
        where = "a namespace package" if found is None else found
        taken = ProjectFilesError(
            f"the module name {name!r} is already taken by {where}, so {relative} cannot be "
            f"imported under it: expected a module name nothing installed uses; rename the file"
        )
        return ImportProblem(relative, taken)
    return None


def _error_location(root: Path, relative: str, error: BaseException) -> str:
    """``file:line`` of the error: a syntax error's own, else the innermost project frame."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{_shown(root, Path(error.filename))}:{error.lineno}"
    location = relative
    for frame, line in traceback.walk_tb(error.__traceback__):
        path = Path(frame.f_code.co_filename)
        if path.is_absolute() and _in_project(root, path.resolve()):
            location = f"{_shown(root, path.resolve())}:{line}"
    return location


def _defined_under(root: Path, classes: Iterable[type]) -> Iterator[type]:
    for cls in classes:
        module = sys.modules.get(cls.__module__)
        found = getattr(module, "__file__", None)
        if found is not None and _in_project(root, Path(found).resolve()):
            yield cls


def _in_project(root: Path, path: Path) -> bool:
    """Whether ``path`` is the project's own code: under ``root``, not in a virtual environment
    or installed packages kept there."""
    if not path.is_relative_to(root):
        return False
    parts = path.relative_to(root).parts
    return not any(part in BUILTIN_IGNORES or part in _INSTALLED for part in parts)


def _shown(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
