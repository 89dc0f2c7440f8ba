"""Reading local replicas' log files (rotated parts included) for ``chalk logs``.

``chalk.deploy.logs.group_logs`` calls ``replica_logs`` (a live group) and ``kept_logs`` (the
files a deleted group or a stopped project left). Replicas write straight to their files, so a
line has a time only when it carries one; the rule (README's "Logs"):

- our runtime's JSON ``timestamp`` and the controller's restart line are a line's time;
- a leading ISO time is one only when not older than the previous timed line of the file (an
  old date a program prints is not when it printed it);
- any other line takes the time of the next timed line of its file, else the time its file last
  changed (reading what is there) or the time it was read (following); and never one earlier
  than the previous timed line.

So lines with a time are merged exactly; the lines of other images keep their order within a
replica and may come after other replicas' lines written later than they were (by up to that
gap; while following, by up to a poll, 0.2 s), never before lines written earlier.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from chalk.catalog import Catalog, ScalingGroup
from chalk.deploy.local.logs import previous_log, replica_log
from chalk.deploy.log_lines import (
    LogLine,
    LogQuery,
    check_replica,
    line_time,
    merge_in_time,
    trusts_own_time,
)

__all__ = ["ReplicaLog", "deleted_group_logs", "kept_logs", "kept_replicas", "replica_logs"]

_POLL_S: Final = 0.2
# How often, while following, the catalog is asked which replicas the group runs.
_MEMBERS_EVERY_S: Final = 1.0
# How many bytes before the read position are kept to tell a file emptied by a rotation and
# written past that position again from one not emptied yet.
_FINGERPRINT_BYTES: Final = 64


def replica_logs(
    catalog: Catalog,
    group: ScalingGroup,
    logs_dir: Path,
    query: LogQuery,
    *,
    note: Callable[[str], None] = lambda _: None,
    controller_runs: bool = True,
    poll_s: float = _POLL_S,
    members_every_s: float = _MEMBERS_EVERY_S,
) -> Iterator[LogLine]:
    """The lines of ``group``'s replicas (the catalog's rows) that ``query`` asks for.

    Following, it reads what the files gain every ``poll_s``; every ``members_every_s`` it
    starts reading a replica that joined (a roll, a scale-up, a start from zero: its whole
    file) and stops reading one that left, after its last lines. It ends when the group is
    deleted or, with ``query.replica``, when that replica leaves.

    A replica that has gone but whose log is kept (``--replica`` of a roll's old replica) is
    read as it is, and so are all the kept files when no controller runs and the catalog knows
    no replica; ``note`` gets one line saying so, and nothing is followed.
    """
    present = _replica_ids(catalog, group)
    kept = kept_replicas(logs_dir, group.name)
    check_replica(group.name, query.replica, present, kept)
    folder = _shown(logs_dir / group.name)
    if query.replica is not None and query.replica not in present:
        note(
            f"replica {query.replica!r} of scaling group {group.name!r} has gone; its log is "
            f"kept in {folder} for a week"
        )
        yield from kept_logs(group.name, logs_dir, replace(query, follow=False))
        return
    if not present and not controller_runs:
        held = f"its replicas' logs kept in {folder}" if kept else f"no logs are kept in {folder}"
        note(
            f"scaling group {group.name!r} runs no replicas now (no controller runs; "
            f"`chalk up --detach` starts it); {held}"
        )
        yield from kept_logs(group.name, logs_dir, replace(query, follow=False))
        return
    if not present:
        waiting = "; waiting for one to start" if query.follow else ""
        note(f"scaling group {group.name!r} runs no replicas now{waiting}")
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


def deleted_group_logs(
    group: ScalingGroup, logs_dir: Path, query: LogQuery, *, note: Callable[[str], None]
) -> Iterator[LogLine] | None:
    """The kept logs of deleted ``group``, as ``query`` asks (no following), saying so to
    ``note``; None when none are kept. UnknownReplicaError for a replica without a kept log."""
    kept = kept_replicas(logs_dir, group.name)
    if not kept:
        return None
    check_replica(group.name, query.replica, (), kept)
    when = "" if group.deleted_at is None else f" at {group.deleted_at:%Y-%m-%d %H:%M:%S} UTC"
    note(
        f"scaling group {group.name!r} was deleted{when}; its replicas' logs are kept in "
        f"{_shown(logs_dir / group.name)} for a week"
    )
    return kept_logs(group.name, logs_dir, replace(query, follow=False))


def kept_logs(group: str, logs_dir: Path, query: LogQuery) -> Iterator[LogLine]:
    """What the kept files of ``group`` hold (all replicas', or ``query.replica``'s), as
    ``query`` asks, without following: no controller writes them any more."""
    chosen = [query.replica] if query.replica else sorted(kept_replicas(logs_dir, group))
    cutoff = None if query.since is None else _now() - query.since
    logs = [ReplicaLog(rid, replica_log(logs_dir, group, rid)) for rid in chosen]
    return merge_in_time(_history(log, query.tail, cutoff, partial=True) for log in logs)


def kept_replicas(logs_dir: Path, group: str) -> set[str]:
    """The replicas whose logs (or rotated parts) are in ``group``'s folder."""
    folder = logs_dir / group
    if not folder.is_dir():
        return set()
    names = (path.name for path in folder.iterdir())
    return {name.removesuffix(".1").removesuffix(".log") for name in names if _is_log(name)}


def _is_log(name: str) -> bool:
    return name.endswith((".log", ".log.1")) and not name.startswith(".")


def _shown(folder: Path) -> str:
    """``folder`` as the user would type it: relative to the working directory when inside."""
    try:
        return f"{folder.resolve().relative_to(Path.cwd().resolve())}/"
    except ValueError:
        return f"{folder}/"


@dataclass
class ReplicaLog:
    """One replica's file and its rotated part, and how far they have been read."""

    replica: str
    path: Path
    # Bytes of ``path`` already read; None until the first read.
    position: int | None = None
    # The rotated part as last taken into account (inode, size, mtime): it changes when
    # ``rotate`` copies the file, and once the file is emptied too the lines between
    # ``position`` and the cut are in it.
    _previous_seen: tuple[int, int, int] | None = None
    # The last bytes read before ``position``.
    _fingerprint: bytes = b""
    # The time of the last line read that had one of its own: later lines are not earlier.
    _last_time: dt.datetime | None = None

    def read_existing(self, *, partial: bool = False) -> list[LogLine]:
        """Every line of the rotated part, then of the file: its last line only when complete
        or ``partial``; reading goes on after them."""
        previous = previous_log(self.path)
        self._previous_seen = _signature(previous)
        old = _read_from(previous, 0)
        data = _read_from(self.path, 0)
        if old and data.startswith(old):
            old = b""  # a rotation between its copy and its emptying: the file still holds it
        complete = data[: data.rfind(b"\n") + 1]
        self.position = 0
        self._advance(complete)
        current = data if partial else complete
        return self._lines(old, _mtime(previous)) + self._lines(current, _mtime(self.path))

    def read_new(self) -> list[LogLine]:
        """The complete lines written since the last read, those cut off by a rotation first.

        A rotation counts once the file is emptied (it is shorter than what was read, or its
        bytes before ``position`` changed), not when its copy appears: a read between the two
        goes on in the file, so no line is read twice.
        """
        if self.position is None:
            return self.read_existing()
        lines: list[LogLine] = []
        previous = previous_log(self.path)
        seen = _signature(previous)
        copied = seen is not None and seen != self._previous_seen
        if self._emptied(copied=copied):
            if copied:
                cut = _read_from(previous, self.position)
                lines += self._lines(cut, _now())
            self._previous_seen = seen
            self.position = 0
            self._fingerprint = b""
        data = _read_from(self.path, self.position)
        complete = data[: data.rfind(b"\n") + 1]
        self._advance(complete)
        return lines + self._lines(complete, _now())

    def _emptied(self, *, copied: bool) -> bool:
        """Whether the file was emptied since the last read (and maybe written past it)."""
        assert self.position is not None
        if _size(self.path) < self.position:
            return True
        if not copied or not self._fingerprint:
            return False
        start = self.position - len(self._fingerprint)
        return _read_from(self.path, start, len(self._fingerprint)) != self._fingerprint

    def _advance(self, complete: bytes) -> None:
        assert self.position is not None
        self.position += len(complete)
        self._fingerprint = (self._fingerprint + complete)[-_FINGERPRINT_BYTES:]

    def _lines(self, data: bytes, written_by: dt.datetime) -> list[LogLine]:
        texts = data.decode("utf-8", errors="replace").splitlines()
        times, self._last_time = _times(texts, written_by, self._last_time)
        return [LogLine(self.replica, text, when) for text, when in zip(texts, times, strict=True)]


def _history(
    log: ReplicaLog, tail: int | None, cutoff: dt.datetime | None, *, partial: bool
) -> list[LogLine]:
    """What a replica's files hold now: since ``cutoff``, then the last ``tail`` lines."""
    lines = _since(log.read_existing(partial=partial), cutoff)
    return lines if tail is None else lines[max(0, len(lines) - tail) :]


def _times(
    texts: Sequence[str], written_by: dt.datetime, after: dt.datetime | None
) -> tuple[list[dt.datetime], dt.datetime | None]:
    """Each line's time by the module's rule, and the last own time (``after`` before them).

    ``written_by``: when the last lines were written at the latest; ``after``: the time of the
    last timed line before ``texts``.
    """
    own: list[dt.datetime | None] = []
    last = after
    for text in texts:
        when = line_time(text)
        if when is not None and last is not None and when < last and not trusts_own_time(text):
            when = None  # an old date the program printed, not when it printed it
        own.append(when)
        last = when or last
    times: list[dt.datetime] = []
    following = written_by
    for when in reversed(own):
        following = when or following
        times.append(following)
    times.reverse()
    floor = after
    for index, when in enumerate(own):
        if when is not None:
            floor = when
        elif floor is not None and times[index] < floor:
            times[index] = floor
    return times, last


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


def _read_from(path: Path, offset: int, size: int = -1) -> bytes:
    try:
        with open(path, "rb") as log:
            log.seek(max(0, offset))
            return log.read(size)
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
