"""Model calls: the argument columns of ``catalog_call("model.<group>", ...)`` sent to a group.

``chalk.engine.execute`` evaluates a call's arguments and hands the columns to ``ModelCaller``,
which resolves the group through the catalog, casts, chunks, spreads the chunks over the
group's replicas, retries transport failures elsewhere and re-joins the answers in row order.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeVar, overload

import pyarrow as pa
import pyarrow.compute as pc

from chalk.catalog.errors import ControllerDownError, NoReadyReplicaError, ResolveError
from chalk.catalog.records import Endpoint, Route
from chalk.engine.execute import EngineError, EngineTypeError
from chalk.features.types import FeatureTypeError, type_to_text
from chalk.shim.client import DEFAULT_DEADLINE_S, DEFAULT_MAX_REQUEST_BYTES, RemoteCallClient
from chalk.shim.errors import RemoteCallError, RemoteHandlerError, TransportError

__all__ = [
    "DEFAULT_CHUNKS_PER_ENDPOINT",
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_MAX_CHUNK_ROWS",
    "DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT",
    "DEFAULT_MIN_CHUNK_ROWS",
    "CallRecorder",
    "EventLoopThread",
    "GroupCalls",
    "ModelArgumentCountError",
    "ModelCallError",
    "ModelCallTypeError",
    "ModelCaller",
    "ModelHandlerError",
    "ModelResultError",
    "ModelTransportError",
    "Resolver",
    "check_arguments",
    "chunk_batch",
    "chunk_rows",
    "converts_without_loss",
    "recording",
]

DEFAULT_MAX_CHUNK_ROWS: Final = 262_144
# How long a resolved route is reused before the catalog is read again.
ROUTE_TTL_S: Final = 1.0
DEFAULT_MAX_CHUNK_BYTES: Final = 16 << 20
DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT: Final = 4
# A call of many rows is cut into about this many chunks per endpoint, so that every replica
# gets work, a faster one takes more, and one that becomes ready mid-call finds chunks left.
DEFAULT_CHUNKS_PER_ENDPOINT: Final = 8
# ... but no chunk is cut smaller than this for spreading: a call of fewer rows than twice
# this stays one chunk (an online query's fast path).
DEFAULT_MIN_CHUNK_ROWS: Final = 256
# How long a call keeps trying while no replica can take a chunk: long enough for a replica
# that died to be restarted (a local one is back in about 2 s).
DEFAULT_RECOVERY_S: Final = 10.0
# Resolve errors that a replica restart or a roll clears: a later round may find endpoints.
_PASSING_RESOLVE_ERRORS: Final = (NoReadyReplicaError, ControllerDownError)
_TIMESTAMP_UNITS: Final = ("s", "ms", "us", "ns")
# How long a blocking wait for the event loop sleeps before it checks for Ctrl-C again.
_WAIT_SLICE_S: Final = 0.2
_DEADLINE_EXCEEDED: Final = "DEADLINE_EXCEEDED"
_SAFE_CASTS: Final = "string <-> large_string, a wider int, int -> float64"

T = TypeVar("T")


class ModelCallError(EngineError):
    """A ``catalog_call`` that failed; the message names the feature and the scaling group."""


class ModelArgumentCountError(ModelCallError):
    """The call passes a different number of arguments than the model's input_schema has."""


class ModelCallTypeError(ModelCallError, EngineTypeError):
    """An argument cannot be converted to its input_schema field's type without loss."""


class ModelHandlerError(ModelCallError):
    """The model's handler raised; carries the remote kind, message and traceback.

    Never retried: the same rows would fail the same way on any replica.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        remote_message: str,
        remote_traceback: str,
        endpoint: str,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.endpoint = endpoint


class ModelTransportError(ModelCallError):
    """Rows that no replica could be reached for, after every attempt; names the endpoints."""

    def __init__(self, message: str, *, endpoints: Sequence[str]) -> None:
        super().__init__(message)
        self.endpoints = tuple(endpoints)


class ModelResultError(ModelCallError):
    """The model answered the wrong number of values, or values its output_schema cannot hold."""


class Resolver(Protocol):
    """Anything that routes ``model.<group>`` calls: ``chalk.catalog.Catalog`` does."""

    def resolve(self, name: str) -> Route: ...


def chunk_batch(batch: pa.RecordBatch, *, max_rows: int, max_bytes: int) -> list[pa.RecordBatch]:
    """Zero-copy row slices of ``batch``, in row order: at most ``max_rows`` rows each, and at
    most ``max_bytes`` Arrow bytes each unless one row alone is larger.

    Examples
    --------
    >>> batch = pa.record_batch({"x": pa.array(range(10), pa.int64())})
    >>> [len(chunk) for chunk in chunk_batch(batch, max_rows=4, max_bytes=1 << 20)]
    [4, 4, 2]
    >>> [len(chunk) for chunk in chunk_batch(batch, max_rows=100, max_bytes=24)]
    [3, 3, 3, 1]
    """
    if max_rows < 1 or max_bytes < 1:
        raise ValueError(
            f"chunks hold at least one row and one byte, got max_rows={max_rows}, "
            f"max_bytes={max_bytes}"
        )
    chunks: list[pa.RecordBatch] = []
    for offset in range(0, batch.num_rows, max_rows):
        _split_by_bytes(batch.slice(offset, max_rows), max_bytes, chunks)
    return chunks


def chunk_rows(
    rows: int,
    nbytes: int,
    *,
    endpoints: int,
    max_rows: int,
    max_bytes: int,
    chunks_per_endpoint: int = DEFAULT_CHUNKS_PER_ENDPOINT,
    min_rows: int = DEFAULT_MIN_CHUNK_ROWS,
    in_flight_per_endpoint: int = DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT,
) -> int:
    """The most rows per chunk for a call of ``rows`` rows (``nbytes`` Arrow bytes) spread over
    ``endpoints`` replicas: about ``chunks_per_endpoint`` chunks per endpoint, none smaller than
    ``min_rows``, none over ``max_rows``. The limits alone apply when they already cut that
    many chunks, or (two or more) enough to fill every endpoint's ``in_flight_per_endpoint``
    slots: smaller chunks then only add calls (a fast model on one replica moved 10-20% fewer
    rows per second in 125k-row chunks than in 256k-row ones).

    Examples
    --------
    >>> chunk_rows(1, 8, endpoints=2, max_rows=262_144, max_bytes=16 << 20)
    262144
    >>> chunk_rows(1000, 8000, endpoints=2, max_rows=262_144, max_bytes=16 << 20)
    334
    >>> chunk_rows(1_000_000, 8_000_000, endpoints=2, max_rows=262_144, max_bytes=16 << 20)
    62500
    >>> chunk_rows(1_000_000, 8_000_000, endpoints=1, max_rows=262_144, max_bytes=16 << 20)
    262144
    """
    endpoints = max(endpoints, 1)
    wanted = min(endpoints * chunks_per_endpoint, rows // max(min_rows, 1))
    by_limits = max(math.ceil(rows / max_rows), math.ceil(nbytes / max_bytes))
    fills_the_slots = by_limits > 1 and by_limits >= endpoints * in_flight_per_endpoint
    if by_limits >= wanted or fills_the_slots:
        return max_rows
    return min(max_rows, math.ceil(rows / wanted))


def _split_by_bytes(batch: pa.RecordBatch, max_bytes: int, into: list[pa.RecordBatch]) -> None:
    # RecordBatch.nbytes counts only the sliced range, so skewed rows are split again.
    if batch.num_rows <= 1 or batch.nbytes <= max_bytes:
        into.append(batch)
        return
    parts = math.ceil(batch.nbytes / max_bytes)
    rows = math.ceil(batch.num_rows / parts)
    for offset in range(0, batch.num_rows, rows):
        _split_by_bytes(batch.slice(offset, rows), max_bytes, into)


def converts_without_loss(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether every value of ``source`` has an equal value of ``target`` (a safe cast).

    The same type; null to anything; string <-> large_string (binary likewise); an int to
    a wider int (unsigned to a strictly wider signed one); an int to float64; a float to a wider
    float; a timestamp to a finer unit of the same time zone; lists of such.

    Examples
    --------
    >>> converts_without_loss(pa.int32(), pa.int64()), converts_without_loss(pa.int64(), pa.int32())
    (True, False)
    >>> converts_without_loss(pa.string(), pa.large_string())
    True
    >>> converts_without_loss(pa.float64(), pa.int64())
    False
    """
    if source == target or pa.types.is_null(source):
        return True
    if _is_list(source) and _is_list(target):
        return converts_without_loss(source.value_type, target.value_type)
    return any(rule(source, target) for rule in _WIDENINGS)


def _text_to_text(source: pa.DataType, target: pa.DataType) -> bool:
    return _is_text(source) and _is_text(target)


def _bytes_to_bytes(source: pa.DataType, target: pa.DataType) -> bool:
    return _is_bytes(source) and _is_bytes(target)


def _int_widens(source: pa.DataType, target: pa.DataType) -> bool:
    if not (pa.types.is_integer(source) and pa.types.is_integer(target)):
        return False
    source_signed = pa.types.is_signed_integer(source)
    target_signed = pa.types.is_signed_integer(target)
    if source_signed and not target_signed:
        return False
    if target_signed and not source_signed:
        return bool(target.bit_width > source.bit_width)
    return bool(target.bit_width >= source.bit_width)


def _int_to_float64(source: pa.DataType, target: pa.DataType) -> bool:
    return bool(pa.types.is_integer(source) and target == pa.float64())


def _float_widens(source: pa.DataType, target: pa.DataType) -> bool:
    return bool(
        pa.types.is_floating(source)
        and pa.types.is_floating(target)
        and target.bit_width >= source.bit_width
    )


def _timestamp_finer(source: pa.DataType, target: pa.DataType) -> bool:
    return bool(
        pa.types.is_timestamp(source)
        and pa.types.is_timestamp(target)
        and source.tz == target.tz
        and _TIMESTAMP_UNITS.index(target.unit) >= _TIMESTAMP_UNITS.index(source.unit)
    )


_WIDENINGS: Final[tuple[Callable[[pa.DataType, pa.DataType], bool], ...]] = (
    _text_to_text,
    _bytes_to_bytes,
    _int_widens,
    _int_to_float64,
    _float_widens,
    _timestamp_finer,
)


def _is_text(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def _is_bytes(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_binary_view(arrow_type)
    )


def _is_list(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))


def _text(arrow_type: pa.DataType) -> str:
    try:
        return type_to_text(arrow_type)
    except FeatureTypeError:
        return str(arrow_type)


@dataclass(frozen=True, slots=True)
class GroupCalls:
    """What the model calls of one query did on one scaling group.

    ``calls``: chunks answered (each one gRPC call); ``rows``: rows answered; ``endpoints``:
    the distinct replicas (gRPC targets) that answered, in the order they first did;
    ``retries``: chunk attempts that failed in transport and were sent again.
    """

    group: str
    calls: int
    rows: int
    endpoints: tuple[str, ...]
    retries: int


class CallRecorder:
    """Collects ``GroupCalls`` for the model calls made while it records (see ``recording``).

    ``on_rows``, when given, is called with the row count of each answered chunk, on the event
    loop's thread, as the answers arrive: a progress bar advances with it.

    Examples
    --------
    >>> recorder = CallRecorder()
    >>> recorder.answered("ner", "127.0.0.1:7001", 300)
    >>> recorder.retried("ner")
    >>> recorder.answered("ner", "127.0.0.1:7002", 200)
    >>> recorder.groups()["ner"]
    GroupCalls(group='ner', calls=2, rows=500, endpoints=('127.0.0.1:7001', '127.0.0.1:7002'), retries=1)
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
            self._groups[group] = GroupCalls(
                group, seen.calls + 1, seen.rows + rows, endpoints, seen.retries
            )
        if self._on_rows is not None:
            self._on_rows(rows)

    def retried(self, group: str) -> None:
        """Count one attempt that failed in transport and goes to a replica again."""
        with self._lock:
            seen = self._group(group)
            self._groups[group] = GroupCalls(
                group, seen.calls, seen.rows, seen.endpoints, seen.retries + 1
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


class EventLoopThread:
    """An asyncio event loop running on a daemon thread, for synchronous code to submit to.

    gRPC's asyncio objects belong to the loop that made them, so a process keeps one of these
    for all its model calls and passes ``loop`` to each ``ModelCaller``.

    Examples
    --------
    >>> async def answer() -> int:
    ...     return 42
    >>> thread = EventLoopThread()
    >>> thread.run(answer())
    42
    >>> thread.stop()
    """

    def __init__(self, *, name: str = "chalk-model-calls") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._stopped = False
        self._lock = threading.Lock()
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout_s: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or its exception)."""
        return _run_on(self._loop, coroutine, timeout_s)

    def stop(self) -> None:
        """Cancel what still runs on the loop, stop it and join the thread; idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread.is_alive():
            _run_on(self._loop, _cancel_others(), None)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def _run_on(
    loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T], timeout_s: float | None
) -> T:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError(
            "a blocking call was made on the event loop that would run it, so it would wait "
            "forever: expected it from another thread; await the coroutine (ModelCaller.call) "
            "instead"
        )
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    give_up = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        # Waited for in short slices: an untimed wait does not see Ctrl-C once polars is
        # loaded, so a query would only stop when the model answered.
        while True:
            left = _WAIT_SLICE_S if give_up is None else give_up - time.monotonic()
            try:
                return future.result(max(0.0, min(left, _WAIT_SLICE_S)))
            except TimeoutError:
                if future.done():
                    raise  # the coroutine's own TimeoutError
                if give_up is not None and time.monotonic() >= give_up:
                    future.cancel()
                    raise TimeoutError(f"the call did not finish within {timeout_s}s") from None
    except BaseException:
        # KeyboardInterrupt in the waiting thread: stop the call too.
        future.cancel()
        raise


@dataclass(eq=False, slots=True)
class _Chunk:
    """Rows ``start`` to ``start + len(batch) - 1`` of one call, and how sending them went."""

    index: int
    start: int
    batch: pa.RecordBatch
    attempts: int = 0
    tried: list[str] = field(default_factory=list)
    last_error: TransportError | None = None
    failing_since: float | None = None
    # Endpoints that let the chunk's deadline pass: the model is slow there, so it is not
    # sent there again (that would only wait out the deadline once more).
    timed_out: set[str] = field(default_factory=set)

    @property
    def rows(self) -> str:
        return f"rows {self.start}-{self.start + self.batch.num_rows - 1}"


@dataclass(slots=True)
class _Call:
    """One ``catalog_call`` in progress: what error messages name, and the chunks' answers."""

    feature: str
    name: str
    route: Route
    results: dict[int, pa.Array]
    pending: deque[_Chunk]
    # When ``route`` was read: a long call reads it again after ROUTE_TTL_S.
    resolved_at: float = 0.0
    recorder: CallRecorder | None = None

    @property
    def prefix(self) -> str:
        return f"{self.feature}: catalog_call({self.name!r})"

    @property
    def model(self) -> str:
        return f"model {self.route.model_name} version {self.route.model_version}"

    @property
    def output_type(self) -> pa.DataType:
        return self.route.output_schema.field(0).type


class ModelCaller:
    """Calls models for ``catalog_call``: resolve, cast, chunk, send, retry, re-join.

    Argument i becomes input_schema field i (by position, never by name) and is cast to its
    type when that loses nothing (see ``converts_without_loss``). Rows are cut into chunks of
    at most ``max_chunk_rows`` rows and ``max_chunk_bytes`` bytes, and a call of at least
    twice ``min_chunk_rows`` rows into about ``chunks_per_endpoint`` chunks per endpoint of the
    group (none under ``min_chunk_rows`` rows), so that every replica gets work and a faster
    one takes more, unless the limits already cut enough chunks to fill every replica's
    in-flight slots (see ``chunk_rows``); smaller calls (an online query's) stay one chunk. Each chunk is one call to
    one replica, with at most ``max_in_flight_per_endpoint`` chunks of a call in flight per
    replica. Between chunks a long call reads the group's route again (at most every
    ``ROUTE_TTL_S``): replicas that became ready meanwhile (the autoscaler added them) take
    chunks too, and replicas that left take no more. A chunk that fails in transport (refused, UNAVAILABLE, deadline, reset) goes to
    another replica; when every replica of the route has failed, the caller backs off,
    resolves the group again (picking up replaced replicas) and goes on, up to
    ``max_attempts`` attempts per chunk (default: the number of endpoints plus 2) and for at
    least ``recovery_s`` after the first failure, so that a replica being restarted can take
    the chunk. A chunk that let its deadline pass on a replica is not sent there again. A
    handler error is never retried. Answers are re-joined in row order and typed by output_schema;
    nulls pass through to the model and back.

    A caller belongs to one event loop: ``loop`` when given (share one across a process, e.g.
    an ``EventLoopThread``'s), else the loop its ``call`` is first awaited on, else a
    background thread of its own, started by the first ``call_blocking``. ``call_blocking``
    may be used from several threads at once.

    Calls made inside ``recording(recorder)`` count their chunks, rows, answering replicas
    and retries in the ``CallRecorder``.

    Parameters
    ----------
    catalog
        Resolves ``model.<group>`` names (a ``chalk.catalog.Catalog``).
    client
        The gRPC client; by default one of the caller's own, closed by ``close``.
    deadline_s
        Deadline of each chunk's call; None keeps the client's default.
    recovery_s
        How long after a chunk's first transport failure the caller keeps trying (with its
        back-off) before it gives up, once ``max_attempts`` are spent.

    Examples
    --------
    >>> from chalk.catalog import open_catalog
    >>> with ModelCaller(open_catalog("sqlite://")) as caller:
    ...     caller.call_blocking(feature="doc.y", name="model.ner", args=[pa.array(["hi"])])
    Traceback (most recent call last):
    ...
    chalk.catalog.errors.UnknownGroupError: doc.y: cannot call 'model.ner': there is no scaling group named 'ner'
    """  # noqa: E501

    def __init__(
        self,
        catalog: Resolver,
        *,
        client: RemoteCallClient | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        max_chunk_rows: int = DEFAULT_MAX_CHUNK_ROWS,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        max_in_flight_per_endpoint: int = DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT,
        chunks_per_endpoint: int = DEFAULT_CHUNKS_PER_ENDPOINT,
        min_chunk_rows: int = DEFAULT_MIN_CHUNK_ROWS,
        max_attempts: int | None = None,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        deadline_s: float | None = None,
        recovery_s: float = DEFAULT_RECOVERY_S,
    ) -> None:
        for label, value in (
            ("max_chunk_rows", max_chunk_rows),
            ("max_chunk_bytes", max_chunk_bytes),
            ("max_in_flight_per_endpoint", max_in_flight_per_endpoint),
            ("chunks_per_endpoint", chunks_per_endpoint),
            ("min_chunk_rows", min_chunk_rows),
            ("max_attempts", 1 if max_attempts is None else max_attempts),
        ):
            if value < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        self._catalog = catalog
        self._owns_client = client is None
        # Large enough that the client never splits a chunk into several calls.
        self._client = client or RemoteCallClient(
            max_request_bytes=max(DEFAULT_MAX_REQUEST_BYTES, max_chunk_bytes)
        )
        self._loop = loop
        # Routes by catalog_call name, with when they were read (used on the loop thread only).
        self._routes: dict[str, tuple[Route, float]] = {}
        # Where the next one-chunk call starts among a route's endpoints (loop thread only).
        self._next_endpoint = 0
        self._thread: EventLoopThread | None = None
        self._lock = threading.Lock()
        self._max_chunk_rows = max_chunk_rows
        self._max_chunk_bytes = max_chunk_bytes
        self._max_in_flight = max_in_flight_per_endpoint
        self._chunks_per_endpoint = chunks_per_endpoint
        self._min_chunk_rows = min_chunk_rows
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._deadline_s = deadline_s
        self._recovery_s = recovery_s

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this caller's calls run on (its own thread's, started now if need be)."""
        with self._lock:
            if self._loop is None:
                self._thread = EventLoopThread()
                self._loop = self._thread.loop
            return self._loop

    @overload
    async def call(
        self,
        *,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        as_chunks: Literal[False] = False,
        recorder: CallRecorder | None = None,
    ) -> pa.Array: ...

    @overload
    async def call(
        self,
        *,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        as_chunks: Literal[True],
        recorder: CallRecorder | None = None,
    ) -> pa.ChunkedArray: ...

    async def call(
        self,
        *,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        as_chunks: bool = False,
        recorder: CallRecorder | None = None,
    ) -> pa.Array | pa.ChunkedArray:
        """Call ``name`` (``model.<group>``) on the argument columns for ``feature``.

        Returns one value per row, in row order, typed by the model's output_schema: one
        array, or with ``as_chunks=True`` a ChunkedArray of the chunks' answers, which saves
        copying them into one (8 MB for a million float64 values). ``recorder`` (by default
        the one ``recording`` set in this context) counts the call's chunks. Raises
        ``ModelCallError`` subclasses naming ``feature``; the catalog's ``ResolveError``
        subclasses keep their class and gain the feature as a prefix.
        """
        running = asyncio.get_running_loop()
        with self._lock:
            if self._loop is None:
                self._loop = running
            elif self._loop is not running:
                raise RuntimeError(
                    f"{feature}: this ModelCaller belongs to another event loop: expected "
                    f"call() awaited on its loop; use call_blocking() from other threads"
                )
        route, resolved_at = await self._resolve(feature, name)
        call = _Call(feature, name, route, {}, deque(), resolved_at, recorder or _RECORDER.get())
        batch = _arguments(call, args)
        if batch.num_rows == 0:
            empty = pa.array([], type=call.output_type)
            return pa.chunked_array([empty]) if as_chunks else empty
        max_rows = chunk_rows(
            batch.num_rows,
            batch.nbytes,
            endpoints=len(route.endpoints),
            max_rows=self._max_chunk_rows,
            max_bytes=self._max_chunk_bytes,
            chunks_per_endpoint=self._chunks_per_endpoint,
            min_rows=self._min_chunk_rows,
            in_flight_per_endpoint=self._max_in_flight,
        )
        chunks = chunk_batch(batch, max_rows=max_rows, max_bytes=self._max_chunk_bytes)
        start = 0
        for index, chunk in enumerate(chunks):
            call.pending.append(_Chunk(index, start, chunk))
            start += chunk.num_rows
        await self._send_all(call)
        answers = [call.results[index] for index in range(len(chunks))]
        if as_chunks:
            return pa.chunked_array(answers, type=call.output_type)
        return answers[0] if len(answers) == 1 else pa.concat_arrays(answers)

    @overload
    def call_blocking(
        self,
        *,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        timeout_s: float | None = None,
        as_chunks: Literal[False] = False,
        recorder: CallRecorder | None = None,
    ) -> pa.Array: ...

    @overload
    def call_blocking(
        self,
        *,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        timeout_s: float | None = None,
        as_chunks: Literal[True],
        recorder: CallRecorder | None = None,
    ) -> pa.ChunkedArray: ...

    def call_blocking(
        self,
        *,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        timeout_s: float | None = None,
        as_chunks: bool = False,
        recorder: CallRecorder | None = None,
    ) -> pa.Array | pa.ChunkedArray:
        """``call`` from synchronous code: runs it on the caller's loop and waits.

        The recorder defaults to the one ``recording`` set in the calling thread.
        """
        recorder = recorder or _RECORDER.get()
        if as_chunks:
            chunked = self.call(
                feature=feature, name=name, args=args, as_chunks=True, recorder=recorder
            )
            return _run_on(self.loop, chunked, timeout_s)
        whole = self.call(feature=feature, name=name, args=args, recorder=recorder)
        return _run_on(self.loop, whole, timeout_s)

    async def aclose(self) -> None:
        """Close the caller's own client (on its loop); the loop and thread stay."""
        if self._owns_client:
            await self._client.close()

    def close(self) -> None:
        """Close the caller's own client and stop its own loop thread; idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed() and loop.is_running():
            _run_on(loop, self.aclose(), None)
        if thread is not None:
            thread.stop()

    def __enter__(self) -> ModelCaller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _resolve(self, feature: str, name: str) -> tuple[Route, float]:
        # A route read within the last ROUTE_TTL_S is reused: resolving reads the database
        # (~0.5 ms, and a thread hop) on every call otherwise. A call that finds an endpoint
        # gone resolves afresh (_endpoints_again), so a stale route costs one retry at most.
        cached = self._routes.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[1] < ROUTE_TTL_S:
            return cached
        try:
            # The catalog reads a database: off the loop, which serves every call of the process.
            route = await asyncio.to_thread(self._catalog.resolve, name)
        except ResolveError as error:
            self._routes.pop(name, None)
            raise type(error)(f"{feature}: {error}") from None
        self._routes[name] = (route, now)
        return route, now

    async def _send_all(self, call: _Call) -> None:
        max_attempts = self._max_attempts or len(call.route.endpoints) + 2
        endpoints = call.route.endpoints
        failing_since = None
        round_number = 0
        while True:
            if round_number:
                backoff_s = self._backoff_s * 2 ** (round_number - 1)
                await asyncio.sleep(min(backoff_s, self._max_backoff_s))
                endpoints = await self._endpoints_again(call)
            await self._round(call, list(dict.fromkeys(endpoints)), max_attempts)
            if not call.pending:
                return
            failing_since = failing_since or time.monotonic()
            round_number += 1
            if self._gave_up(round_number, failing_since, max_attempts):
                raise _transport_error(call, call.pending[0], self._deadline_s)

    def _gave_up(self, attempts: int, failing_since: float, max_attempts: int) -> bool:
        """Enough attempts, and long enough for a replica to have been restarted."""
        return attempts >= max_attempts and time.monotonic() - failing_since >= self._recovery_s

    async def _endpoints_again(self, call: _Call) -> tuple[Endpoint, ...]:
        """The group's endpoints now: replicas come and go while a call runs."""
        route = await self._route_again(call)
        return () if route is None else route.endpoints

    async def _endpoints_between_chunks(self, call: _Call) -> tuple[Endpoint, ...] | None:
        """The group's endpoints, read again when the call's route is older than ROUTE_TTL_S
        (another call's fresher read serves too); None when it is not, or none is ready."""
        now = time.monotonic()
        if now - call.resolved_at < ROUTE_TTL_S:
            return None
        # Claimed before the read, so the call's other workers do not read it as well.
        call.resolved_at = now
        cached = self._routes.get(call.name)
        if cached is not None and now - cached[1] < ROUTE_TTL_S:
            route: Route | None = self._checked_route(call, cached[0])
        else:
            route = await self._route_again(call)
        return None if route is None or not route.endpoints else route.endpoints

    async def _route_again(self, call: _Call) -> Route | None:
        """The group's route read now (None while no replica is ready), for ``call``."""
        try:
            route = await asyncio.to_thread(self._catalog.resolve, call.name)
        except _PASSING_RESOLVE_ERRORS:
            return None
        except ResolveError as error:
            raise type(error)(f"{call.feature}: {error}") from None
        self._routes[call.name] = (route, time.monotonic())
        return self._checked_route(call, route)

    def _checked_route(self, call: _Call, route: Route) -> Route:
        """``route`` as the call's route, unless the model's schemas changed since it began."""
        if not (
            route.input_schema.equals(call.route.input_schema)
            and route.output_schema.equals(call.route.output_schema)
        ):
            raise ModelCallError(
                f"{call.prefix}: scaling group {route.group!r} changed its model's schemas during "
                f"the call (to model {route.model_name} version {route.model_version}): expected "
                f"the schemas the call started with; run the query again"
            )
        call.route = route
        return route

    async def _round(self, call: _Call, endpoints: list[Endpoint], max_attempts: int) -> None:
        """Send pending chunks to ``endpoints`` until none is left or every endpoint failed.

        Each endpoint gets ``max_in_flight_per_endpoint`` workers taking chunks one at a time.
        After each chunk a worker may read the route again: new endpoints get workers of their
        own, and those that left the route take no more chunks.
        """
        if len(call.pending) == 1:
            await self._round_one(call, endpoints, max_attempts)
            return
        changed = asyncio.Condition()
        down: set[Endpoint] = set()
        serving: set[Endpoint] = set()
        in_flight = 0
        per_endpoint = min(self._max_in_flight, len(call.pending))

        def may_move(endpoint: Endpoint) -> bool:
            return endpoint in down or bool(call.pending) or in_flight == 0

        async def worker(endpoint: Endpoint) -> None:
            nonlocal in_flight
            while True:
                async with changed:
                    await changed.wait_for(lambda: may_move(endpoint))
                    if endpoint in down or not call.pending:
                        return
                    chunk = call.pending.popleft()
                    in_flight += 1
                answer = await self._attempt(call, endpoint, chunk, max_attempts)
                if answer is None:
                    async with changed:
                        # Another replica takes the chunk at once; this one sits out the round.
                        in_flight -= 1
                        down.add(endpoint)
                        call.pending.appendleft(chunk)
                        changed.notify_all()
                    return
                call.results[chunk.index] = answer
                fresh = await self._endpoints_between_chunks(call) if call.pending else None
                async with changed:
                    in_flight -= 1
                    if fresh is not None:
                        down.update(serving.difference(fresh))
                        serve(fresh)
                    changed.notify_all()

        def serve(endpoints_now: Sequence[Endpoint]) -> None:
            for endpoint in endpoints_now:
                if endpoint not in serving:
                    serving.add(endpoint)
                    for _ in range(per_endpoint):
                        tasks.create_task(worker(endpoint))

        try:
            async with asyncio.TaskGroup() as tasks:
                serve(endpoints)
        except BaseExceptionGroup as failed:
            # The first failure, as a call of one chunk would raise it.
            raise failed.exceptions[0] from None

    async def _round_one(self, call: _Call, endpoints: list[Endpoint], max_attempts: int) -> None:
        """``_round`` for a single chunk (an online query): the endpoints one after another.

        The same outcome as the worker tasks' round, without them: each endpoint takes the
        chunk at most once, a transport failure moves it to the next, and when all failed it
        stays pending for the next round. Successive calls start at successive endpoints, so
        one-chunk calls spread over the replicas too.
        """
        if not endpoints:
            return
        chunk = call.pending[0]
        first = self._next_endpoint % len(endpoints)
        self._next_endpoint = first + 1
        for endpoint in endpoints[first:] + endpoints[:first]:
            answer = await self._attempt(call, endpoint, chunk, max_attempts)
            if answer is not None:
                call.results[chunk.index] = answer
                call.pending.popleft()
                return

    async def _attempt(
        self, call: _Call, endpoint: Endpoint, chunk: _Chunk, max_attempts: int
    ) -> pa.Array | None:
        """The chunk's answer from ``endpoint``, or None after a transport failure that leaves
        attempts to make (the failure is recorded on the chunk)."""
        try:
            answer = await self._send(call, endpoint, chunk)
        except TransportError as error:
            chunk.attempts += 1
            chunk.tried.append(endpoint.target)
            chunk.last_error = error
            if error.code == _DEADLINE_EXCEEDED:
                chunk.timed_out.add(endpoint.target)
            if chunk.failing_since is None:
                chunk.failing_since = time.monotonic()
            timed_out_everywhere = {e.target for e in call.route.endpoints} <= chunk.timed_out
            if self._gave_up(chunk.attempts, chunk.failing_since, max_attempts) or (
                timed_out_everywhere
            ):
                raise _transport_error(call, chunk, self._deadline_s) from None
            if call.recorder is not None:
                call.recorder.retried(call.route.group)
            return None
        if call.recorder is not None:
            call.recorder.answered(call.route.group, endpoint.target, chunk.batch.num_rows)
        return answer

    async def _send(self, call: _Call, endpoint: Endpoint, chunk: _Chunk) -> pa.Array:
        try:
            answer = await self._client.call(
                endpoint.target,
                chunk.batch,
                name=call.route.group,
                tls=endpoint.tls,
                deadline_s=self._deadline_s,
            )
        except TransportError:
            raise
        except RemoteHandlerError as error:
            raise _handler_error(call, chunk, error) from None
        except RemoteCallError as error:
            raise ModelCallError(
                f"{call.prefix} failed at {error.endpoint} for {chunk.rows}: {error}"
            ) from None
        if len(answer) != chunk.batch.num_rows:
            raise ModelResultError(
                f"{call.prefix}: {call.model} answered {len(answer)} values for "
                f"{chunk.batch.num_rows} rows ({chunk.rows}) at {endpoint.target}: expected one "
                f"value per row"
            )
        return _typed_answer(call, endpoint, answer)


def check_arguments(
    feature: str, name: str, route: Route, argument_types: Sequence[pa.DataType]
) -> None:
    """Raise as a call of ``name`` for ``feature`` would with arguments of these types: one
    argument per input_schema field, each converting to its field's type without loss.

    ``chalk apply`` checks a graph's calls with it; ``ModelCaller`` checks each call.

    Examples
    --------
    >>> route = Route("ner", "ner", 1, pa.schema({"text": pa.large_string()}),
    ...               pa.schema({"entities": pa.large_string()}), None, ())
    >>> check_arguments("doc.entities", "model.ner", route, [pa.string()])
    >>> check_arguments("doc.entities", "model.ner", route, [pa.string(), pa.int64()])
    Traceback (most recent call last):
    ...
    chalk.engine.calls.ModelArgumentCountError: doc.entities: catalog_call('model.ner') passes 2 arguments but model ner version 1 takes 1 (text): expected one argument per input_schema field, in that order
    """  # noqa: E501
    call = _Call(feature, name, route, {}, deque())
    fields = list(route.input_schema)
    if len(argument_types) != len(fields):
        names = ", ".join(f.name for f in fields)
        plural = "" if len(argument_types) == 1 else "s"
        raise ModelArgumentCountError(
            f"{call.prefix} passes {len(argument_types)} argument{plural} but {call.model} "
            f"takes {len(fields)} ({names}): expected one argument per input_schema field, in "
            f"that order"
        )
    for index, (source, target) in enumerate(zip(argument_types, fields, strict=True)):
        if not converts_without_loss(source, target.type):
            where = f"argument {index + 1}"
            raise ModelCallTypeError(
                f"{call.prefix} {where} is {_text(source)}, but {call.model} takes field "
                f"{target.name!r} ({where}) as {_text(target.type)}: expected a type that "
                f"converts to {_text(target.type)} without loss ({_SAFE_CASTS}); convert it "
                f'with cast(..., "{_text(target.type)}") or change the feature\'s type'
            )


def _arguments(call: _Call, args: Sequence[pa.Array]) -> pa.RecordBatch:
    """The arguments as a batch named and typed by input_schema, argument i as field i."""
    fields = list(call.route.input_schema)
    check_arguments(call.feature, call.name, call.route, [column.type for column in args])
    columns = [_one_array(column) for column in args]
    lengths = {len(column) for column in columns}
    if len(lengths) > 1:
        raise ModelCallError(
            f"{call.prefix} got argument columns of different lengths "
            f"({', '.join(str(len(c)) for c in columns)}): expected one value per row in each"
        )
    cast = [
        _cast_argument(call, index, column, fields[index]) for index, column in enumerate(columns)
    ]
    return pa.RecordBatch.from_arrays(cast, names=[f.name for f in fields])


def _one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        # combine_chunks copies even a single chunk (8 MB for 1M float64 rows).
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _cast_argument(call: _Call, index: int, column: pa.Array, target: pa.Field) -> pa.Array:
    source = column.type
    if source == target.type:
        return column
    where = f"argument {index + 1}"
    try:
        return pc.cast(column, target.type, safe=True)
    except pa.ArrowException as error:
        raise ModelCallTypeError(
            f"{call.prefix} {where} cannot be converted from {_text(source)} to "
            f"{_text(target.type)} for field {target.name!r} of {call.model} without loss: "
            f"{error}"
        ) from None


def _typed_answer(call: _Call, endpoint: Endpoint, answer: pa.Array) -> pa.Array:
    target = call.output_type
    if answer.type == target:
        return answer
    # A handler returning Python ints answers int64 for an int32 output: fine when they fit.
    both_ints = pa.types.is_integer(answer.type) and pa.types.is_integer(target)
    error_text = ""
    if both_ints or converts_without_loss(answer.type, target):
        try:
            return pc.cast(answer, target, safe=True)
        except pa.ArrowException as error:
            error_text = f": {error}"
    output = call.route.output_schema.field(0).name
    raise ModelResultError(
        f"{call.prefix}: {call.model} answered {_text(answer.type)} at {endpoint.target}, but "
        f"its output_schema field {output!r} is {_text(target)}{error_text}: expected values "
        f"that convert to {_text(target)} without loss; fix the handler or the output_schema"
    )


def _handler_error(call: _Call, chunk: _Chunk, error: RemoteHandlerError) -> ModelCallError:
    if error.code == "OK":
        # Our client found the answer malformed (wrong length or shape); no handler raised.
        return ModelResultError(
            f"{call.prefix}: {call.model} answered badly at {error.endpoint} for {chunk.rows}: "
            f"{error.remote_message}"
        )
    what = f"{error.kind}: {error.remote_message}" if error.kind else error.remote_message
    message = (
        f"{call.feature}: the handler of scaling group {call.route.group!r} ({call.model}) "
        f"failed at {error.endpoint} on {chunk.rows}: {what}"
    )
    if error.remote_traceback:
        message += f"\n\nRemote traceback:\n{error.remote_traceback.rstrip()}"
    return ModelHandlerError(
        message,
        kind=error.kind,
        remote_message=error.remote_message,
        remote_traceback=error.remote_traceback,
        endpoint=error.endpoint,
    )


def _transport_error(call: _Call, chunk: _Chunk, deadline_s: float | None) -> ModelTransportError:
    tried = list(dict.fromkeys(chunk.tried))
    if chunk.last_error is not None and chunk.last_error.code == _DEADLINE_EXCEEDED:
        deadline = DEFAULT_DEADLINE_S if deadline_s is None else deadline_s
        return ModelTransportError(
            f"{call.prefix}: scaling group {call.route.group!r} did not answer {chunk.rows} "
            f"within the deadline of {deadline:g}s (tried {', '.join(tried)}): expected each "
            f"model call to finish within it; give a slow model a longer one with "
            f"ChalkClient(model_call_deadline_s=...)",
            endpoints=tried,
        )
    if chunk.last_error is None:
        detail = "no replica was ready to take them"
    else:
        detail = (
            f"they failed {chunk.attempts} times (tried {', '.join(tried)}); last error: "
            f"{chunk.last_error.code}: {chunk.last_error.details}"
        )
    return ModelTransportError(
        f"{call.prefix} could not reach scaling group {call.route.group!r} for {chunk.rows}: "
        f"{detail}: expected a ready replica to answer; check the group with "
        f"`chalk scaling-group get --name {call.route.group}`",
        endpoints=tried,
    )
