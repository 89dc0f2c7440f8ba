"""What the model calls of a query did, per scaling group: the call recorder.

``ChalkClient`` records a query's calls with ``recording(CallRecorder())`` and shows them;
``ModelCaller`` counts each answered chunk (with its call time) and each retry in the recorder
of the calling context (``current_recorder``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Final

__all__ = ["CallRecorder", "GroupCalls", "current_recorder", "recording"]


@dataclass(frozen=True, slots=True)
class GroupCalls:
    """What the model calls of one query did on one scaling group.

    ``calls``: chunks answered (each one gRPC call); ``rows``: rows answered; ``endpoints``:
    the distinct replicas (gRPC targets) that answered, in the order they first did;
    ``retries``: chunk attempts that failed in transport and were sent again.
    ``rows_asked``: argument rows the calls asked answers for; ``rows_sent``: rows left to
    send once identical argument rows were merged (``chalk.engine.dedup``); ``dedup_hits``:
    rows answered from another row's answer (asked - sent).
    """

    group: str
    calls: int
    rows: int
    endpoints: tuple[str, ...]
    retries: int
    rows_asked: int = 0
    rows_sent: int = 0
    dedup_hits: int = 0


class CallRecorder:
    """Collects ``GroupCalls`` for the model calls made while it records (see ``recording``).

    ``on_rows``, when given, is called with the row count of each answered chunk, on the event
    loop's thread, as the answers arrive, and with the rows a call will answer from others'
    answers (its dedup hits) as it starts: a progress bar advances with it.

    Examples
    --------
    >>> recorder = CallRecorder()
    >>> recorder.deduplicated("ner", asked=800, sent=500)
    >>> recorder.answered("ner", "127.0.0.1:7001", 300)
    >>> recorder.retried("ner")
    >>> recorder.answered("ner", "127.0.0.1:7002", 200, seconds=0.004)
    >>> recorder.groups()["ner"]
    GroupCalls(group='ner', calls=2, rows=500, endpoints=('127.0.0.1:7001', '127.0.0.1:7002'), retries=1, rows_asked=800, rows_sent=500, dedup_hits=300)
    >>> recorder.call_seconds()
    {'ner': [0.004]}
    """  # noqa: E501

    def __init__(self, on_rows: Callable[[int], None] | None = None) -> None:
        self._on_rows = on_rows
        self._lock = threading.Lock()
        self._groups: dict[str, GroupCalls] = {}
        self._seconds: dict[str, list[float]] = {}

    def answered(
        self, group: str, endpoint: str, rows: int, *, seconds: float | None = None
    ) -> None:
        """Count one answered chunk of ``rows`` rows from ``endpoint``, which took ``seconds``
        from sending it to its answer (when measured)."""
        with self._lock:
            if seconds is not None:
                self._seconds.setdefault(group, []).append(seconds)
            seen = self._group(group)
            endpoints = seen.endpoints
            if endpoint not in endpoints:
                endpoints += (endpoint,)
            self._groups[group] = replace(
                seen, calls=seen.calls + 1, rows=seen.rows + rows, endpoints=endpoints
            )
        if self._on_rows is not None:
            self._on_rows(rows)

    def retried(self, group: str) -> None:
        """Count one attempt that failed in transport and goes to a replica again."""
        with self._lock:
            seen = self._group(group)
            self._groups[group] = replace(seen, retries=seen.retries + 1)

    def deduplicated(self, group: str, *, asked: int, sent: int) -> None:
        """Count a call of ``asked`` rows of which ``sent`` are left to send once identical
        rows are merged (as many as asked when nothing was merged)."""
        with self._lock:
            seen = self._group(group)
            self._groups[group] = replace(
                seen,
                rows_asked=seen.rows_asked + asked,
                rows_sent=seen.rows_sent + sent,
                dedup_hits=seen.dedup_hits + asked - sent,
            )
        if self._on_rows is not None and asked > sent:
            self._on_rows(asked - sent)

    def groups(self) -> dict[str, GroupCalls]:
        """The calls so far, by scaling group, in the order the groups were first called."""
        with self._lock:
            return dict(self._groups)

    def call_seconds(self) -> dict[str, list[float]]:
        """Each answered chunk's call time in seconds, by scaling group (the server's latency
        histogram observes them)."""
        with self._lock:
            return {group: list(seconds) for group, seconds in self._seconds.items()}

    def _group(self, group: str) -> GroupCalls:
        return self._groups.get(group) or GroupCalls(group, 0, 0, (), 0)


_RECORDER: Final[contextvars.ContextVar[CallRecorder | None]] = contextvars.ContextVar(
    "chalk_call_recorder", default=None
)


@contextmanager
def recording(recorder: CallRecorder) -> Iterator[CallRecorder]:
    """Record in ``recorder`` the model calls this thread (this context) makes meanwhile.

    ``ModelCaller.call_blocking`` picks the recorder up in the calling thread, so queries
    running at once on other threads, through the same caller, record elsewhere.

    Examples
    --------
    >>> with recording(CallRecorder()) as recorder:
    ...     pass
    >>> recorder.groups()
    {}
    """
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def current_recorder() -> CallRecorder | None:
    """The recorder ``recording`` set in this context (this thread), or None."""
    return _RECORDER.get()
