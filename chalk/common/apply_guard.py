"""The apply guard: while ``chalk apply`` imports a project's modules, model registration and
scaling-group writes are refused, and each attempt is recorded with the file and line making it.

``chalk apply`` holds ``refusing_writes``; the model registry and the group store call
``check_write`` before they write anything.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from chalk.common.errors import ChalkError

__all__ = [
    "ApplyGuard",
    "WriteDuringApplyError",
    "WriteViolation",
    "check_write",
    "refusing_writes",
]

# chalk's own frames (this file is chalk/common/apply_guard.py) never count as the user's call site.
_PACKAGE_DIR: Final = Path(__file__).resolve().parent.parent
_INSTALLED: Final = frozenset({"site-packages", "dist-packages"})


class WriteDuringApplyError(ChalkError):
    """Model registration or deployment attempted while ``chalk apply`` imported the project."""


@dataclass(frozen=True, slots=True)
class WriteViolation:
    """One refused write: what it would have done and where the project's code asked for it."""

    action: str
    location: str

    @property
    def message(self) -> str:
        return (
            f"{self.location}: {self.action} while `chalk apply` imported the project's "
            f"modules: expected apply to find feature definitions only, with nothing registered "
            f"or deployed; add this file's folder to .chalkignore or keep the deployment code in "
            f"a separate repository"
        )


class ApplyGuard:
    """The refused writes of one ``chalk apply``, kept even when the user's code catches them."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._violations: list[WriteViolation] = []
        self._lock = threading.Lock()

    @property
    def violations(self) -> tuple[WriteViolation, ...]:
        with self._lock:
            return tuple(self._violations)

    def record(self, action: str, frame: FrameType | None) -> WriteViolation:
        violation = WriteViolation(action, self.call_site(frame))
        with self._lock:
            self._violations.append(violation)
        return violation

    def call_site(self, frame: FrameType | None) -> str:
        """``file:line`` of the innermost frame in the project (not in chalk), root-relative."""
        outside = None
        for current, line in traceback.walk_stack(frame):
            path = Path(current.f_code.co_filename)
            if not path.is_absolute() or _installed(path.resolve()):
                continue
            resolved = path.resolve()
            if resolved.is_relative_to(self.root):
                return f"{resolved.relative_to(self.root).as_posix()}:{line}"
            outside = outside or f"{resolved}:{line}"
        return outside or "code outside the project"


def _installed(path: Path) -> bool:
    """chalk itself, or a package installed in an environment (even one inside the project)."""
    return path.is_relative_to(_PACKAGE_DIR) or not _INSTALLED.isdisjoint(path.parts)


_lock = threading.Lock()
# The guard of the apply in progress, if any: process-wide, so a thread the project's code
# starts is refused too.
_active: list[ApplyGuard] = []


@contextmanager
def refusing_writes(root: Path) -> Iterator[ApplyGuard]:
    """Refuse model registration and group writes in this process until the block ends.

    Examples
    --------
    >>> from pathlib import Path
    >>> with refusing_writes(Path.cwd()) as guard:
    ...     check_write("register model 'ner'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chalk.common.apply_guard.WriteDuringApplyError: ...: register model 'ner' while `chalk apply`...
    >>> [v.action for v in guard.violations]
    ["register model 'ner'"]
    """
    guard = ApplyGuard(root)
    with _lock:
        if _active:
            raise RuntimeError("chalk apply is already importing a project in this process")
        _active.append(guard)
    try:
        yield guard
    finally:
        with _lock:
            _active.clear()


def check_write(action: str) -> None:
    """Raise ``WriteDuringApplyError`` (and record it) when ``chalk apply`` is importing.

    Called first by every write path of the model registry and the group store, so a refused
    write leaves nothing behind.
    """
    guard = next(iter(_active), None)
    if guard is None:
        return
    violation = guard.record(action, sys._getframe(1))
    raise WriteDuringApplyError(violation.message)
