"""What the model calls of a query did, per scaling group: the call recorder.

``ChalkClient`` records a query's calls with ``recording(CallRecorder())`` and shows them;
``ModelCaller`` counts each answered chunk (with its call time) and each retry in the recorder
of the calling context (``current_recorder``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Final, Literal

__all__ = ["CallRecorder", "GroupCalls", "current_recorder", "recording"]


@dataclass(frozen=True, slots=True)
class GroupCalls:
    """What the model calls of one query did on one scaling group.

    ``calls``: chunks answered (each one gRPC call); ``rows``: rows answered; ``endpoints``:
    the distinct replicas (gRPC targets) that answered, in the order they first did;
    ``retries``: chunk attempts that failed in transport and were sent again.
    ``rows_asked``: argument rows the calls asked answers for; ``rows_sent``: rows sent to
    the model, those left once identical argument rows were merged (``chalk.engine.dedup``)
    less those the answer cache answered; ``dedup_hits``: rows answered from another row's
    answer (asked less the distinct rows).

    The answer cache (a feature's ``max_staleness``; ``chalk.engine.cache``): ``cache_hits``,
    distinct argument rows answered from the cache (not sent); ``cache_misses``, those looked
    up and sent; ``cache_errors``, lookups the store failed (a Redis down: its rows were
    misses, the query went on); ``cache_bytes``, what the group's answers take in the store
    after the query; ``cache_evictions``, answers of the group the store dropped for room
    while the query ran (any query's, the store's count).

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
    rows_asked: int = 0
    rows_sent: int = 0
    dedup_hits: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_errors: int = 0
    cache_bytes: int = 0
    cache_evictions: int = 0
    chunk_queries: tuple[int, ...] = field(default=(), compare=False)
    waited_s: float = field(default=0.0, compare=False)
    left_slot_free: int = field(default=0, compare=False)
    left_full: int = field(default=0, compare=False)
    left_delay: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Every figure but the group's name, as JSON values (the server's offline answer)."""
        document = asdict(self)
        del document["group"]
        return document

    @classmethod
    def from_json(cls, group: str, document: Mapping[str, Any]) -> GroupCalls:
        """The figures ``to_json`` wrote; a figure the writer did not know reads as 0."""
        known = {f.name for f in fields(cls)} - {"group"}
        given = {key: value for key, value in document.items() if key in known}
        for key in ("endpoints", "chunk_queries"):
            if key in given:
                given[key] = tuple(given[key])
        return cls(group, **{"calls": 0, "rows": 0, "endpoints": (), "retries": 0, **given})

    def plus(self, other: GroupCalls) -> GroupCalls:
        """The figures of both (two blocks of one offline query): counts added, the endpoints
        of ``other`` not seen yet appended, the merged-chunk sizes of both.

        Examples
        --------
        >>> a = GroupCalls("ner", 1, 10, ("x:1",), 0, rows_asked=12, rows_sent=10, dedup_hits=2)
        >>> b = GroupCalls("ner", 2, 20, ("x:2", "x:1"), 1)
        >>> total = a.plus(b)
        >>> total.calls, total.rows, total.endpoints, total.retries, total.dedup_hits
        (3, 30, ('x:1', 'x:2'), 1, 2)

        ``cache_bytes`` is the later block's figure when it looked the cache up (the store
        after the query), else the earlier one's.
        """
        added = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("group", "endpoints", "cache_bytes")
        }
        endpoints = self.endpoints + tuple(e for e in other.endpoints if e not in self.endpoints)
        looked_up = other.cache_hits or other.cache_misses or other.cache_errors
        cache_bytes = other.cache_bytes if looked_up else self.cache_bytes
        return replace(self, endpoints=endpoints, cache_bytes=cache_bytes, **added)


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
    >>> recorder.left_queue("ner", queries=3, waited_s=0.001, reason="slot_free")
    >>> recorder.answered("ner", "127.0.0.1:7002", 200, seconds=0.004)
    >>> recorder.groups()["ner"]
    GroupCalls(group='ner', calls=2, rows=500, endpoints=('127.0.0.1:7001', '127.0.0.1:7002'), retries=1, rows_asked=800, rows_sent=500, dedup_hits=300, cache_hits=0, cache_misses=0, cache_errors=0, cache_bytes=0, cache_evictions=0, chunk_queries=(3,), waited_s=0.001, left_slot_free=1, left_full=0, left_delay=0)
    >>> recorder.call_seconds()
    {'ner': [0.004]}
    """  # noqa: E501

    def __init__(self, on_rows: Callable[[int], None] | None = None) -> None:
        self._on_rows = on_rows
        self._lock = threading.Lock()
        self._groups: dict[str, GroupCalls] = {}
        self._seconds: dict[str, list[float]] = {}
        # Per group, the store's eviction count when the query first looked its answers up.
        self._evictions_at_start: dict[str, int] = {}
        # Per group, the calls held and not released, and why it had no replica as last read.
        self._held: dict[str, tuple[int, str]] = {}

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

    def looked_up(self, group: str, *, hits: int, misses: int, error: str | None) -> None:
        """Count a lookup in the answer cache of a call's distinct rows (``deduplicated``
        counted them as to send): ``hits`` rows found, not sent after all; ``misses`` not
        found (sent); ``error``: the store failed (every row a miss)."""
        with self._lock:
            seen = self._group(group)
            self._groups[group] = replace(
                seen,
                rows_sent=seen.rows_sent - hits,
                cache_hits=seen.cache_hits + hits,
                cache_misses=seen.cache_misses + misses,
                cache_errors=seen.cache_errors + (error is not None),
            )
        if self._on_rows is not None and hits:
            self._on_rows(hits)

    def cache_figures(self, group: str, *, nbytes: int, evictions: int) -> None:
        """The answer store's figures for ``group`` now: the bytes its answers take and how
        many it ever evicted. The first report of a group is the query's baseline: its
        ``cache_evictions`` counts those evicted since."""
        with self._lock:
            baseline = self._evictions_at_start.setdefault(group, evictions)
            self._groups[group] = replace(
                self._group(group),
                cache_bytes=nbytes,
                cache_evictions=max(0, evictions - baseline),
            )

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

    def held(self, group: str, why: str) -> None:
        """A call to ``group`` waits for a ready replica; ``why`` the group has none ("status
        Idle: ...", its Service resolving to no pod; "" unknown)."""
        with self._lock:
            count, _ = self._held.get(group, (0, ""))
            self._held[group] = (count + 1, why)

    def held_why(self, group: str, why: str) -> None:
        """Why ``group`` has no ready replica, as a held call read it again."""
        with self._lock:
            count, _ = self._held.get(group, (0, ""))
            if count:
                self._held[group] = (count, why)

    def released(self, group: str) -> None:
        """A held call to ``group`` goes on: a replica is ready."""
        with self._lock:
            count, why = self._held.get(group, (0, ""))
            if count > 1:
                self._held[group] = (count - 1, why)
            else:
                self._held.pop(group, None)

    def still_held(self) -> dict[str, str]:
        """The groups whose calls were held and never released (still waiting, or ended while
        waiting: cancelled with the query, timed out), each with why it had no replica as last
        read: what a query that ran out of time tells its caller.

        Examples
        --------
        >>> recorder = CallRecorder()
        >>> recorder.held("ner", "status Idle")
        >>> recorder.held("ner", "status Idle")
        >>> recorder.held("tagger", "")
        >>> recorder.held_why("ner", "status Starting")
        >>> recorder.released("tagger")
        >>> recorder.released("ner")
        >>> recorder.still_held()
        {'ner': 'status Starting'}
        """
        with self._lock:
            return {group: why for group, (_, why) in self._held.items()}

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
