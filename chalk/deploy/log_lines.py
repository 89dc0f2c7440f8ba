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
]

# A line opening with an ISO-8601 time (``2026-01-02T03:04:05.678Z``, Python logging's
# ``2026-01-02 03:04:05,678``), optionally in brackets.
_LEADING_TIME: Final = re.compile(
    r"\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)
# Keys of a JSON log line holding its time (our runtime writes ``timestamp``).
_TIME_KEYS: Final = ("timestamp", "time", "@timestamp")


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


def check_replica(group: str, wanted: str | None, present: Collection[str]) -> None:
    """Refuse ``wanted`` when it is not among ``present``, listing the replicas there are.

    Examples
    --------
    >>> try:
    ...     check_replica("ner", "ner-2", ["ner-1"])
    ... except UnknownReplicaError as error:
    ...     print(error)
    scaling group 'ner' has no replica 'ner-2'; expected one of: ner-1
    """
    if wanted is None or wanted in present:
        return
    there = ", ".join(sorted(present)) or "none (it runs no replica now)"
    raise UnknownReplicaError(
        f"scaling group {group!r} has no replica {wanted!r}; expected one of: {there}"
    )


def merge_in_time(streams: Iterable[Iterable[LogLine]]) -> Iterator[LogLine]:
    """Lines of several replicas, each stream already in time order, merged by time; lines
    of the same time keep the order of ``streams``."""
    return heapq.merge(*streams, key=lambda line: line.time)


def line_time(text: str) -> dt.datetime | None:
    """The time a log line carries itself, in UTC, or None.

    A line opening with an ISO-8601 time counts (one without an offset is local time, as
    Python logging writes it), and so does a JSON object with a ``timestamp`` or ``time``.

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
    match = _LEADING_TIME.match(text)
    return None if match is None else _parse_time(match.group(1))


def _json_time(text: str) -> dt.datetime | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    for key in _TIME_KEYS:
        value = document.get(key)
        if isinstance(value, str):
            return _parse_time(value)
    return None


def _parse_time(text: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC)
