"""Reading local replicas' log files (rotated parts included) for ``chalk logs``.

``chalk.deploy.logs.group_logs`` calls ``replica_logs``. Replicas write straight to their files,
so a line has no time unless it carries one (our runtime's JSON lines do). Order and ``--since``
go by that time; a line without one takes the time of the next line of its file that has one,
else the time its file last changed (reading what is there) or the time it was read (following):
never earlier than it was written. So lines with a time are merged exactly; the lines of other
images keep their order within a replica and may come after other replicas' lines written
later than they were (by up to that gap; while following, by up to a poll, 0.2 s), never
before lines written earlier. ``--since`` may keep such lines a little older than asked.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from chalk.catalog import Catalog, ScalingGroup
from chalk.deploy.local.logs import previous_log, replica_log
from chalk.deploy.log_lines import LogLine, LogQuery, check_replica, line_time, merge_in_time

__all__ = ["ReplicaLog", "replica_logs"]

_POLL_S: Final = 0.2
# How often, while following, the catalog is asked which replicas the group runs.
_MEMBERS_EVERY_S: Final = 1.0


def replica_logs(
    catalog: Catalog,
    group: ScalingGroup,
    logs_dir: Path,
    query: LogQuery,
    *,
    poll_s: float = _POLL_S,
    members_every_s: float = _MEMBERS_EVERY_S,
) -> Iterator[LogLine]:
    """The lines of ``group``'s replicas (the catalog's rows) that ``query`` asks for.

    Following, it reads what the files gain every ``poll_s``; every ``members_every_s`` it
    starts reading a replica that joined (a roll, a scale-up, a start from zero: its whole
    file) and stops reading one that left, after its last lines. It ends when the group is
    deleted or, with ``query.replica``, when that replica leaves.
    """
    present = _replica_ids(catalog, group)
    check_replica(group.name, query.replica, present)
    chosen = [query.replica] if query.replica else sorted(present)
    cutoff = None if query.since is None else _now() - query.since
    logs = {rid: ReplicaLog(rid, replica_log(logs_dir, group.name, rid)) for rid in chosen}
    yield from merge_in_time(
        _history(log, query.tail, cutoff, partial=not query.follow) for log in logs.values()
    )
    if not query.follow:
        return
    members_at = time.monotonic()
    live = True
    while live and (logs or query.replica is None):
        time.sleep(poll_s)
        left: list[str] = []
        if time.monotonic() - members_at >= members_every_s:
            members_at = time.monotonic()
            live = _is_live(catalog, group)
            ids = _replica_ids(catalog, group) if live else set()
            joined, left = _changes(ids, logs, query.replica)
            for rid in joined:
                logs[rid] = ReplicaLog(rid, replica_log(logs_dir, group.name, rid))
        yield from merge_in_time(_since(log.read_new(), cutoff) for log in logs.values())
        for rid in left:
            del logs[rid]  # its last lines were read above


@dataclass
class ReplicaLog:
    """One replica's file and its rotated part, and how far they have been read."""

    replica: str
    path: Path
    # Bytes of ``path`` already read; None until the first read.
    position: int | None = None
    # The rotated part as last seen (inode, size, mtime): it changes when ``rotate`` cuts the
    # file back, and then the lines between ``position`` and the cut are in it.
    _previous_seen: tuple[int, int, int] | None = None

    def read_existing(self, *, partial: bool = False) -> list[LogLine]:
        """Every line of the rotated part, then of the file: its last line only when complete
        or ``partial``; reading goes on after them."""
        previous = previous_log(self.path)
        self._previous_seen = _signature(previous)
        old = _read_from(previous, 0)
        data = _read_from(self.path, 0)
        complete = data[: data.rfind(b"\n") + 1]
        self.position = len(complete)
        current = data if partial else complete
        return self._lines(old, _mtime(previous)) + self._lines(current, _mtime(self.path))

    def read_new(self) -> list[LogLine]:
        """The complete lines written since the last read, those cut off by a rotation first."""
        if self.position is None:
            return self.read_existing()
        lines: list[LogLine] = []
        seen = _signature(previous_log(self.path))
        if seen is not None and seen != self._previous_seen:
            # Rotated: the part after ``position`` was copied to ``.1`` and the file emptied.
            cut = _read_from(previous_log(self.path), self.position)
            lines += self._lines(cut, _now())
            self.position = 0
        self._previous_seen = seen
        data = _read_from(self.path, self.position)
        if not data and _size(self.path) < self.position:
            self.position = 0  # emptied without a rotated part (removed meanwhile)
            data = _read_from(self.path, 0)
        complete = data[: data.rfind(b"\n") + 1]
        self.position += len(complete)
        return lines + self._lines(complete, _now())

    def _lines(self, data: bytes, written_by: dt.datetime) -> list[LogLine]:
        texts = data.decode("utf-8", errors="replace").splitlines()
        return [
            LogLine(self.replica, text, when)
            for text, when in zip(texts, _times(texts, written_by), strict=True)
        ]


def _history(
    log: ReplicaLog, tail: int | None, cutoff: dt.datetime | None, *, partial: bool
) -> list[LogLine]:
    """What a replica's files hold now: since ``cutoff``, then the last ``tail`` lines."""
    lines = _since(log.read_existing(partial=partial), cutoff)
    return lines if tail is None else lines[max(0, len(lines) - tail) :]


def _times(texts: Sequence[str], written_by: dt.datetime) -> list[dt.datetime]:
    """Each line's time: its own, or the next line's, or ``written_by``; never later than a
    following line's, so a file's lines stay in their order when merged."""
    times: list[dt.datetime] = []
    latest = written_by
    for text in reversed(texts):
        own = line_time(text)
        if own is not None and own < latest:
            latest = own
        times.append(latest)
    times.reverse()
    return times


def _since(lines: list[LogLine], cutoff: dt.datetime | None) -> list[LogLine]:
    if cutoff is None:
        return lines
    return [line for line in lines if line.time >= cutoff]


def _changes(
    ids: set[str], logs: dict[str, ReplicaLog], wanted: str | None
) -> tuple[list[str], list[str]]:
    """Replicas that joined (only when every replica is followed) and that left."""
    joined = [] if wanted is not None else sorted(ids - logs.keys())
    return joined, [rid for rid in logs if rid not in ids]


def _is_live(catalog: Catalog, group: ScalingGroup) -> bool:
    """Whether ``group`` is still the live group of its name (not deleted, nor made anew)."""
    live = catalog.groups.find(group.name)
    return live is not None and live.id == group.id


def _replica_ids(catalog: Catalog, group: ScalingGroup) -> set[str]:
    return {row.replica_id for row in catalog.state.replicas(group.id)}


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read()
    except FileNotFoundError:
        return b""


def _stat(path: Path, pick: Callable[[os.stat_result], int]) -> int | None:
    try:
        return pick(path.stat())
    except FileNotFoundError:
        return None


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _size(path: Path) -> int:
    return _stat(path, lambda stat: stat.st_size) or 0


def _mtime(path: Path) -> dt.datetime:
    mtime_ns = _stat(path, lambda stat: stat.st_mtime_ns)
    return _now() if mtime_ns is None else dt.datetime.fromtimestamp(mtime_ns / 1e9, dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
