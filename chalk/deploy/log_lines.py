"""Log lines as both backends' readers give them, and the rules they share (time, merge).

A leaf of ``chalk.deploy``, as ``views`` is: ``chalk.deploy.logs`` and each backend's reader
import it, and it imports neither.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from chalk.deploy.errors import DeployError

__all__ = [
    "LogLine",
    "LogQuery",
    "UnknownReplicaError",
    "check_replica",
    "line_time",
    "merge_in_time",
    "restart_line",
    "trusts_own_time",
]

# A line opening with an ISO-8601 time (``2026-01-02T03:04:05.678Z``, Python logging's
# ``2026-01-02 03:04:05,678``), optionally in brackets.
_LEADING_TIME: Final = re.compile(
    r"\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)
# The key of a JSON log line holding its time, as our runtime writes it.
_TIME_KEY: Final = "timestamp"
# The line the local controller writes into a replica's log when it starts it again.
_RESTART_PREFIX: Final = "--- restarted at "


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of one replica: its text (no newline) and its time, aware, in UTC.

    The time is the line's own where it has one (a time it opens with, a JSON ``timestamp``,
    the kubelet's), else the backend's estimate (see ``chalk.deploy.local.log_reader``).
    """

    replica: str
    text: str
    time: dt.datetime


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which lines: one replica or all, the last ``tail`` lines of each replica (as kubectl's
    ``--tail``, per container), none older than ``since``, and whether to follow."""

    replica: str | None = None
    tail: int | None = None
    since: dt.timedelta | None = None
    follow: bool = False


class UnknownReplicaError(DeployError):
    """``--replica`` names no replica of the group."""


def check_replica(
    group: str, wanted: str | None, present: Collection[str], gone: Collection[str] = ()
) -> None:
    """Refuse ``wanted`` when it is neither among ``present`` nor ``gone`` (replicas that left
    but whose logs are kept), listing both.

    Examples
    --------
    >>> try:
    ...     check_replica("ner", "ner-2", ["ner-1"])
    ... except UnknownReplicaError as error:
    ...     print(error)
    scaling group 'ner' has no replica 'ner-2'; expected one of: ner-1
    """
    if wanted is None or wanted in present or wanted in gone:
        return
    there = ", ".join(sorted(present)) or "none (it runs no replica now)"
    left = sorted(set(gone) - set(present))
    kept = f"; gone, their logs kept: {', '.join(left)}" if left else ""
    raise UnknownReplicaError(
        f"scaling group {group!r} has no replica {wanted!r}; expected one of: {there}{kept}"
    )


def merge_in_time(streams: Iterable[Iterable[LogLine]]) -> Iterator[LogLine]:
    """Lines of several replicas, each stream already in time order, merged by time; lines
    of the same time keep the order of ``streams``."""
    return heapq.merge(*streams, key=lambda line: line.time)


def line_time(text: str) -> dt.datetime | None:
    """The time a log line carries itself, in UTC, or None.

    A line opening with an ISO-8601 time counts (one without an offset is local time, as
    Python logging writes it), and so do a JSON object with a ``timestamp`` (our runtime's
    lines) and the line the local controller writes when it restarts a replica.

    Examples
    --------
    >>> line_time('{"timestamp": "2026-01-02T03:04:05.5+00:00", "message": "serving"}')
    datetime.datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=datetime.timezone.utc)
    >>> line_time("2026-01-02T03:04:05Z GET /healthz 200")
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    >>> line_time("Traceback (most recent call last):") is None
    True
    """
    if text.startswith("{"):
        return _json_time(text)
    if text.startswith(_RESTART_PREFIX):
        return _parse_time(text[len(_RESTART_PREFIX) :].partition(" ")[0])
    match = _LEADING_TIME.match(text)
    return None if match is None else _parse_time(match.group(1))


def _json_time(text: str) -> dt.datetime | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    value = document.get(_TIME_KEY)
    return _parse_time(value) if isinstance(value, str) else None


def trusts_own_time(text: str) -> bool:
    """Whether ``line_time`` of ``text`` is its writer's stamp rather than words it prints
    (our runtime's JSON line, the controller's restart line); a leading ISO time may be either.

    Examples
    --------
    >>> trusts_own_time('{"timestamp": "2026-01-02T03:04:05Z"}')
    True
    >>> trusts_own_time("2020-01-01 00:00:00 row 17 of the input")
    False
    """
    return text.startswith(("{", _RESTART_PREFIX))


def restart_line(at: dt.datetime, restarts: int, reason: str) -> str:
    """The line the local controller writes into a replica's log as it starts it again.

    Examples
    --------
    >>> at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    >>> restart_line(at, 2, "exited with code 1")
    '--- restarted at 2026-01-02T03:04:05.000000Z (restart 2; exited with code 1) ---'
    >>> line_time(restart_line(at, 2, "exited with code 1")) == at
    True
    """
    why = reason.splitlines()[0] if reason.strip() else "it exited"
    when = f"{at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    return f"{_RESTART_PREFIX}{when} (restart {restarts}; {why}) ---"


def _parse_time(text: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC)
