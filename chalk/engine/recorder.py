"""What the model calls of a query did, per scaling group: the call recorder.

``ChalkClient`` records a query's calls with ``recording(CallRecorder())`` and shows them;
``ModelCaller`` counts each answered chunk and each retry in the recorder of the calling
context (``current_recorder``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Final, Literal

__all__ = ["CallRecorder", "GroupCalls", "current_recorder", "recording"]


@dataclass(frozen=True, slots=True)
class GroupCalls:
    """What the model calls of one query did on one scaling group.

    ``calls``: chunks answered (each one gRPC call); ``rows``: rows answered; ``endpoints``:
    the distinct replicas (gRPC targets) that answered, in the order they first did;
    ``retries``: chunk attempts that failed in transport and were sent again.

    How the query's chunks shared the process's model calls (see
    ``chalk.engine.batching.GroupQueue``; timing-dependent, so equality ignores them):
    ``chunk_queries``: for each model call that carried the query's rows, how many queries'
    rows it carried (1: not merged); ``waited_s``: the time its chunks waited in the group's
    queue before being sent, in all; ``left_slot_free``, ``left_full``, ``left_delay``: how
    many of its chunks left the queue because a slot was free, because their merged chunk was
    full, or because the group's maximum delay passed.
    """

    group: str
    calls: int
    rows: int
    endpoints: tuple[str, ...]
    retries: int
    chunk_queries: tuple[int, ...] = field(default=(), compare=False)
    waited_s: float = field(default=0.0, compare=False)
    left_slot_free: int = field(default=0, compare=False)
    left_full: int = field(default=0, compare=False)
    left_delay: int = field(default=0, compare=False)


class CallRecorder:
    """Collects ``GroupCalls`` for the model calls made while it records (see ``recording``).

    ``on_rows``, when given, is called with the row count of each answered chunk, on the event
    loop's thread, as the answers arrive: a progress bar advances with it.

    Examples
    --------
    >>> recorder = CallRecorder()
    >>> recorder.answered("ner", "127.0.0.1:7001", 300)
    >>> recorder.retried("ner")
    >>> recorder.left_queue("ner", queries=3, waited_s=0.001, reason="slot_free")
    >>> recorder.answered("ner", "127.0.0.1:7002", 200)
    >>> recorder.groups()["ner"]
    GroupCalls(group='ner', calls=2, rows=500, endpoints=('127.0.0.1:7001', '127.0.0.1:7002'), retries=1, chunk_queries=(3,), waited_s=0.001, left_slot_free=1, left_full=0, left_delay=0)
    """  # noqa: E501

    def __init__(self, on_rows: Callable[[int], None] | None = None) -> None:
        self._on_rows = on_rows
        self._lock = threading.Lock()
        self._groups: dict[str, GroupCalls] = {}

    def answered(self, group: str, endpoint: str, rows: int) -> None:
        """Count one answered chunk of ``rows`` rows from ``endpoint``."""
        with self._lock:
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

    def left_queue(
        self,
        group: str,
        *,
        queries: int,
        waited_s: float,
        reason: Literal["slot_free", "full", "delay"],
    ) -> None:
        """Count one chunk that left the group's queue in a model call carrying ``queries``
        queries' rows, after ``waited_s``, for ``reason``."""
        with self._lock:
            seen = self._group(group)
            self._groups[group] = replace(
                seen,
                chunk_queries=(*seen.chunk_queries, queries),
                waited_s=seen.waited_s + waited_s,
                left_slot_free=seen.left_slot_free + (reason == "slot_free"),
                left_full=seen.left_full + (reason == "full"),
                left_delay=seen.left_delay + (reason == "delay"),
            )

    def groups(self) -> dict[str, GroupCalls]:
        """The calls so far, by scaling group, in the order the groups were first called."""
        with self._lock:
            return dict(self._groups)

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
