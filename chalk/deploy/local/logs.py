"""Keeping ``.chalk/logs`` bounded: the local controller tidies it now and then.

Replicas and the detached controller write stdout and stderr straight to their files (opened
for appending, so a replica outlives the controller that started it); a file over its size
is copied to ``<name>.1`` and emptied in place, and logs no replica uses that have not
changed for a while are removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection
from pathlib import Path

from chalk.common.config import Project

__all__ = ["append_line", "logs_dir", "previous_log", "replica_log", "rotate", "tidy_logs"]


def logs_dir(project: Project) -> Path:
    """Where the controller and its replicas write their logs: ``.chalk/logs``."""
    return project.state_dir / "logs"


def replica_log(logs_dir: Path, group: str, replica_id: str) -> Path:
    """The file a replica writes its stdout and stderr to (its previous part: ``previous_log``).

    Examples
    --------
    >>> replica_log(Path(".chalk/logs"), "ner", "ner-1a2b").as_posix()
    '.chalk/logs/ner/ner-1a2b.log'
    """
    return logs_dir / group / f"{replica_id}.log"


def previous_log(path: Path) -> Path:
    """Where ``rotate`` keeps the part of ``path`` it cut off: ``<name>.1``."""
    return path.with_name(f"{path.name}.1")


def append_line(path: Path, line: str) -> None:
    r"""Append ``line`` to the log at ``path`` on a line of its own (after a last line that a
    killed writer left without its newline, too).

    Examples
    --------
    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "replica.log"
    >>> _ = log.write_text("killed mid-li")
    >>> append_line(log, "--- restarted ---")
    >>> log.read_text()
    'killed mid-li\n--- restarted ---\n'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as log:
        ended = True
        if log.seek(0, os.SEEK_END) > 0:
            log.seek(-1, os.SEEK_END)
            ended = log.read(1) == b"\n"
        log.write(("" if ended else "\n").encode() + line.encode() + b"\n")


def rotate(path: Path, *, max_bytes: int) -> bool:
    """Copy ``path`` to ``<path>.1`` and empty it when it is over ``max_bytes``.

    Its writers keep their file open and, appending, go on at its new end; lines written
    between the copy and the truncation are lost (as with logrotate's copytruncate).
    Returns whether it rotated.

    Examples
    --------
    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "replica.log"
    >>> _ = log.write_text("x" * 100)
    >>> rotate(log, max_bytes=64), log.stat().st_size, log.with_name("replica.log.1").stat().st_size
    (True, 0, 100)
    >>> rotate(log, max_bytes=64)
    False
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(path, previous_log(path))
        os.truncate(path, 0)
    except FileNotFoundError:
        return False
    return True


def tidy_logs(
    logs_dir: Path,
    *,
    max_bytes: int,
    keep_unused_s: float,
    in_use: Collection[Path],
    now_s: float,
) -> None:
    """Rotate every log under ``logs_dir`` over ``max_bytes``; remove unused, unchanged ones.

    A log is unused when it is not in ``in_use`` (the logs of the replicas the controller
    runs) and is no ``controller.log``; it goes, with its ``.1``, once it has not changed for
    ``keep_unused_s`` seconds before ``now_s`` (wall-clock seconds).
    """
    used = {Path(p) for p in in_use}
    for path in sorted(logs_dir.rglob("*.log")):
        if path in used or path.name == "controller.log":
            rotate(path, max_bytes=max_bytes)
        elif _unchanged_for(path, now_s) >= keep_unused_s:
            for stale in (path, previous_log(path)):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()


def _unchanged_for(path: Path, now_s: float) -> float:
    try:
        return now_s - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
