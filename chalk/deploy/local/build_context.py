"""A build context as ``chalk image build`` sees it: its Dockerfile, its ``.dockerignore``, and
the files COPY may take (minus the project's own state).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import pathspec

from chalk.deploy.local.dockerfile import BuildError, DockerfileError

__all__ = [
    "GLOB_MAGIC",
    "STATE_DIR",
    "BuildContext",
    "context_root",
    "dockerfile_path",
    "dockerignore_spec",
    "read_dockerfile",
    "read_dockerignore",
]

STATE_DIR: Final = ".chalk"  # the project's own state: never part of an image
GLOB_MAGIC = re.compile(r"[*?\[]")


def dockerignore_spec(text: str) -> pathspec.GitIgnoreSpec:
    """The matcher of a ``.dockerignore``: paths relative to the build context, ``/``-separated.

    Docker anchors every pattern at the context root (``*.pyc`` excludes ``a.pyc``, not
    ``src/a.pyc``; ``**/*.pyc`` excludes both); ``!`` re-includes; a folder excludes its
    contents.

    Examples
    --------
    >>> spec = dockerignore_spec("*.pyc\\n**/__pycache__\\nbuild/\\n!build/keep.txt\\n")
    >>> [spec.match_file(p) for p in ["a.pyc", "src/a.pyc", "src/__pycache__/m.pyc"]]
    [True, False, True]
    >>> [spec.match_file(p) for p in ["build/out.bin", "build/keep.txt"]]
    [True, False]
    """
    patterns = (_docker_pattern(line) for line in text.splitlines())
    return pathspec.GitIgnoreSpec.from_lines(p for p in patterns if p is not None)


def _docker_pattern(line: str) -> str | None:
    """A ``.dockerignore`` line as a gitignore pattern anchored at the context root."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    text = posixpath.normpath(text[1:].strip() if negate else text).lstrip("/")
    if text in ("", "."):
        return None
    return f"{'!' if negate else ''}/{text}"


class BuildContext:
    """The build context's files as COPY sees them: minus .dockerignore and the project's
    own state (``.chalk``, the image store)."""

    def __init__(self, root: Path, ignore: pathspec.GitIgnoreSpec, *, skip: Sequence[Path]) -> None:
        self.root = root
        self._ignore = ignore
        self._skip = tuple(
            path.relative_to(root).as_posix() for path in skip if path.is_relative_to(root)
        )
        # Without re-inclusions ("!pattern") an excluded folder can be skipped whole.
        self.prunes = not any(p.include is False for p in ignore.patterns)

    def ignored(self, relative: str) -> bool:
        """Whether .dockerignore excludes ``relative``."""
        return bool(relative) and self._ignore.match_file(relative)

    def excluded(self, relative: str) -> bool:
        """Whether ``relative`` is out of the context: ignored, or the project's state."""
        return self.is_state(relative) or self.ignored(relative)

    def is_state(self, relative: str) -> bool:
        """Whether ``relative`` is the project's state (``.chalk``) or the image store."""
        if STATE_DIR in relative.split("/"):
            return True
        return any(relative == s or relative.startswith(f"{s}/") for s in self._skip)

    def glob(self, pattern: str) -> list[str]:
        """Context paths matching a COPY source pattern (``*``, ``?``, ``[...]`` per segment)."""
        matches = [""]
        for segment in pattern.split("/"):
            if not GLOB_MAGIC.search(segment):
                matches = [posixpath.join(m, segment) for m in matches]
                matches = [m for m in matches if os.path.lexists(self.root / m)]
                continue
            found = []
            for match in matches:
                folder = self.root / match
                if folder.is_dir():
                    names = sorted(os.listdir(folder))
                    found += [
                        posixpath.join(match, n) for n in names if fnmatch.fnmatchcase(n, segment)
                    ]
            matches = found
        return [m for m in matches if not self.excluded(m)]

    def walk(self, relative: str) -> Iterator[tuple[str, bool]]:
        """``(path, is_folder)`` under the folder ``relative``, sorted, not excluded.

        A folder that is excluded is still searched when a ``!pattern`` may re-include
        something in it, but is not itself listed.
        """
        folder = self.root / relative
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = posixpath.join(relative, entry.name) if relative else entry.name
            is_folder = entry.is_dir(follow_symlinks=False)
            if self.is_state(path):
                continue
            ignored = self.ignored(path)
            if not ignored:
                yield path, is_folder
            if is_folder and not (ignored and self.prunes):
                yield from self.walk(path)


def context_root(context: Path) -> Path:
    if not context.is_dir():
        raise BuildError(
            f"build context {str(context)!r} is not a folder: expected a folder holding a "
            f"Dockerfile and the files it copies"
        )
    return context.resolve()


def dockerfile_path(root: Path, dockerfile: Path | None) -> Path:
    if dockerfile is not None:
        if not dockerfile.is_file():
            raise BuildError(f"Dockerfile {str(dockerfile)!r} not found: expected a file there")
        return dockerfile
    for name in ("Dockerfile", "dockerfile"):
        if (root / name).is_file():
            return root / name
    raise BuildError(
        f"no Dockerfile in the build context {root}: expected {root / 'Dockerfile'}; "
        f"`chalk image build -f PATH` names another"
    )


def read_dockerfile(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DockerfileError(f"{path}: not UTF-8 text: expected a Dockerfile") from None
    except OSError as error:
        raise BuildError(f"{path}: cannot read it ({error.strerror or error})") from None


def read_dockerignore(root: Path) -> pathspec.GitIgnoreSpec:
    path = root / ".dockerignore"
    return dockerignore_spec(path.read_text(encoding="utf-8") if path.is_file() else "")
