"""Model calls: the argument columns of ``catalog_call("model.<group>", ...)`` sent to a group.

The executor hands a call's columns to ``ModelCaller`` (one per process: ``ChalkClient``,
``chalk query``, the server), which resolves the group, casts, chunks, has the ``Dispatcher``
send the chunks, and re-joins the answers in row order. Over 500 lines: ``ModelCaller`` is
the one place where dedup, the answer cache, held calls and demand meet one call; each of
those mechanisms lives in its own module (dedup, cache/, holds, demand).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, overload

import pyarrow as pa

from chalk.catalog.records import Route
from chalk.engine.addresses import AddressCounts, dns_name
from chalk.engine.batching import DEFAULT_BATCH_MAX_DELAY_S
from chalk.engine.cache.answers import answered_by, joined_answers, missed_rows
from chalk.engine.cache.keys import row_keys
from chalk.engine.cache.memory import MemoryAnswerStore
from chalk.engine.cache.store import AnswerScope, AnswerStore, CacheStats
from chalk.engine.call_schema import argument_batch
from chalk.engine.chunking import (
    DEFAULT_CHUNKS_PER_ENDPOINT,
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_CHUNK_ROWS,
    DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT,
    DEFAULT_MIN_CHUNK_ROWS,
    ChunkLimits,
)
from chalk.engine.dedup import dedup_enabled, dedupe, fan_out
from chalk.engine.demand import DemandPublisher, GroupLoad, demand_sink
from chalk.engine.dispatch import DEFAULT_RECOVERY_S, Dispatcher
from chalk.engine.event_loop import EventLoopThread, Inbox, Reply, refuse_on, run_on
from chalk.engine.holds import DEFAULT_HOLD_TIMEOUT_S, DEFAULT_MAX_HELD_CALLS, HeldCalls
from chalk.engine.model_call import Chunk, ModelCall
from chalk.engine.recorder import CallRecorder, current_recorder
from chalk.engine.routes import Resolver, RouteCache
from chalk.shim.client import DEFAULT_DEADLINE_S, DEFAULT_MAX_REQUEST_BYTES, RemoteCallClient

__all__ = ["ModelCaller"]


class ModelCaller:
    """Calls models for ``catalog_call``: resolve, cast, chunk, send, retry, re-join.

    Argument i becomes input_schema field i (by position, never by name) and is cast to its
    type when that loses nothing (see ``chalk.engine.arrow_types.converts_without_loss``).
    Rows are cut into chunks of at most ``max_chunk_rows`` rows and ``max_chunk_bytes``
    bytes, and a call of at least twice ``min_chunk_rows`` rows into about
    ``chunks_per_endpoint`` chunks per endpoint of the group (none under ``min_chunk_rows``
    rows), so that every replica gets work and a faster one takes more, unless the limits
    already cut enough chunks to fill every replica's in-flight slots (see
    ``chalk.engine.chunking.chunk_rows``); smaller calls (an online query's) stay one chunk.

    The caller's ``Dispatcher`` (``chalk.engine.dispatch``) then sends each chunk as one call
    to one replica, through the group's queue (``chalk.engine.batching``): each replica has
    ``max_in_flight_per_endpoint`` slots shared by every call of this caller; a chunk that
    finds them full waits, merged with other calls' queued chunks (never a non-deterministic
    model's) up to the row and byte limits, until a slot frees, or, for a call with nothing
    in flight, until the group's ``batch_max_delay_ms`` (else ``batch_max_delay_s``) passed.
    Between chunks a long call reads the group's route again (at most every
    ``chalk.engine.routes.ROUTE_TTL_S``): replicas that became ready meanwhile (the
    autoscaler added them) take chunks too, and replicas that left take no more. Failures
    follow DESIGN.md's table: a chunk refused before it was sent goes to another replica;
    when every replica refused, the ``Dispatcher`` backs off, resolves the group again and
    goes on, up to ``max_attempts`` attempts per chunk (default: the number of endpoints
    plus 2) and for at least ``recovery_s`` after the first failure, so that a replica being
    restarted can take it. A connection lost after sending (the replica died) is retried
    once; a chunk that let its deadline pass on a replica is not sent there again; a handler
    error is never retried, except each call's part of a merged chunk, alone, once. Answers
    are re-joined in row order and typed by output_schema; nulls pass through to the model
    and back.

    A group with no ready replica (starting, scaled to zero, waiting for capacity) holds the
    call (``chalk.engine.holds``): its route is read every 100 ms until a replica is ready, for
    at most ``hold_timeout_s`` or the call's deadline, whichever is smaller, and at most
    ``max_held_calls`` calls at once; past either bound, and at once for a crash-looping
    group, the call fails with ``ModelUnavailableError`` naming the group, the wait and why.
    On Kubernetes a group at zero keeps its endpoint (its headless Service's ``dns:`` name),
    which then resolves to no address: that call is held the same way, counting the Service's
    addresses again with each read, and when they appear the channels to it are dropped
    (gRPC's resolver would otherwise wait out its back-off after resolving nothing). So too
    while its pods are up: a recount (every 5 s while calls flow) that finds other pods than
    before, and one at least 5 s later that confirms them, renew the channels, so a pod the
    group was scaled up to takes calls (gRPC's resolver looks again only when a connection
    fails). A held call is kept on the call's recorder until a replica is ready
    (``CallRecorder.still_held``: what chalk serve's 504 names).
    ``loads()`` (and ``demand()``) count, per group, model calls in flight, chunks waiting
    and calls held; for groups of the local backend they are published to the catalog's
    ``demand`` rows (``chalk.engine.demand``) for the local controller's autoscaler.

    A caller belongs to one event loop: ``loop`` when given (share one across a process, e.g.
    an ``EventLoopThread``'s), else the loop its ``call`` is first awaited on, else a
    background thread of its own, started by the first ``call_blocking``. ``call_blocking``
    may be used from several threads at once.

    Identical argument rows of a call are sent once and their answer fanned back to each of
    them (``chalk.engine.dedup``; a null is a value like any other, every NaN equals every
    NaN), before the rows are cut into chunks. Never for a model version registered with
    ``deterministic=False``; ``dedup=False`` (or ``CHALK_DEDUP=0`` in the environment when
    ``dedup`` is not given) sends every row.

    A call for a feature with ``max_staleness`` (``max_staleness_s``) first looks its distinct
    argument rows up in ``answers`` (``chalk.engine.cache``: keyed by ``row_keys`` under the
    model version's ``AnswerScope``), sends only the rows it did not find, and keeps the
    model's answers to them there; never for a model version registered with
    ``deterministic=False``. By default ``answers`` is a ``MemoryAnswerStore`` of the caller's
    own; the caller closes its store when it closes.

    Calls made inside ``recording(recorder)`` count their chunks, rows, answering replicas,
    retries, rows asked and sent, dedup hits and cache hits in the ``CallRecorder``.

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
    batch_max_delay_s
        How long a queued chunk of a call with nothing in flight waits for a free slot
        before it goes anyway, for groups whose spec sets no ``batch_max_delay_ms``.
    hold_timeout_s
        How long a call waits for a replica of a group that has none ready (at most the
        deadline: ``deadline_s``, else the client's default of 120 s).
    max_held_calls
        How many calls wait for a ready replica at once; the next fails at once.

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
        batch_max_delay_s: float = DEFAULT_BATCH_MAX_DELAY_S,
        dedup: bool | None = None,
        hold_timeout_s: float = DEFAULT_HOLD_TIMEOUT_S,
        max_held_calls: int = DEFAULT_MAX_HELD_CALLS,
        answers: AnswerStore | None = None,
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
        self._owns_client = client is None
        # Large enough that the client never splits a chunk into several calls.
        self._client = client or RemoteCallClient(
            max_request_bytes=max(DEFAULT_MAX_REQUEST_BYTES, max_chunk_bytes)
        )
        self._loop = loop
        # The addresses behind dns: endpoints: for their slots, to see a Service at zero, and
        # to renew a channel whose Service's pods changed.
        addresses = AddressCounts(changed=self._addresses_changed)
        self._routes = RouteCache(catalog, addresses)
        self._held = HeldCalls(
            catalog, hold_timeout_s=hold_timeout_s, max_held=max_held_calls, addresses=addresses
        )
        self._hold_deadline_s = DEFAULT_DEADLINE_S if deadline_s is None else deadline_s
        # When this process last called each group (time.time()), and who publishes its
        # demand (where the catalog keeps demand rows).
        self._last_calls: dict[str, float] = {}
        sink = demand_sink(catalog)
        self._publisher = None if sink is None else DemandPublisher(sink, self.loads)
        self._thread: EventLoopThread | None = None
        self._inbox: Inbox | None = None
        self._lock = threading.Lock()
        self._dedup = dedup_enabled(dedup)
        self.answers: AnswerStore = MemoryAnswerStore() if answers is None else answers
        self._limits = ChunkLimits(
            max_rows=max_chunk_rows,
            max_bytes=max_chunk_bytes,
            chunks_per_endpoint=chunks_per_endpoint,
            min_rows=min_chunk_rows,
            in_flight_per_endpoint=max_in_flight_per_endpoint,
        )
        self._dispatcher = Dispatcher(
            self._client,
            self._routes,
            limits=self._limits,
            max_in_flight_per_endpoint=max_in_flight_per_endpoint,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            deadline_s=deadline_s,
            recovery_s=recovery_s,
            hold=self._hold,
            batch_max_delay_s=batch_max_delay_s,
            addresses=addresses,
        )

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
        max_staleness_s: float | None = None,
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
        max_staleness_s: float | None = None,
    ) -> pa.ChunkedArray: ...

    async def call(
        self,
        *,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        as_chunks: bool = False,
        recorder: CallRecorder | None = None,
        max_staleness_s: float | None = None,
    ) -> pa.Array | pa.ChunkedArray:
        """Call ``name`` (``model.<group>``) on the argument columns for ``feature``.

        Returns one value per row, in row order, typed by the model's output_schema: one
        array, or with ``as_chunks=True`` a ChunkedArray of the chunks' answers, which saves
        copying them into one (8 MB for a million float64 values). ``recorder`` (by default
        the one ``recording`` set in this context) counts the call's chunks. Raises
        ``ModelCallError`` subclasses naming ``feature``; the catalog's ``ResolveError``
        subclasses keep their class and gain the feature as a prefix. ``max_staleness_s``
        (the feature's ``max_staleness``; None: no caching) lets answers kept for this model
        version answer, for at most that long after the model gave them.
        """
        self._claim_loop(feature)
        recorder = recorder or current_recorder()
        return await self._call(feature, name, args, as_chunks, recorder, max_staleness_s)

    async def _call(
        self,
        feature: str,
        name: str,
        args: Sequence[pa.Array],
        as_chunks: bool,
        recorder: CallRecorder | None,
        max_staleness_s: float | None = None,
    ) -> pa.Array | pa.ChunkedArray:
        route, resolved_at, no_pod = routed = await self._routes.resolve(feature, name)
        if max_staleness_s is not None and route.deterministic:
            call = ModelCall(feature, name, route, resolved_at=resolved_at, recorder=recorder)
            return await self._cached(call, args, as_chunks, max_staleness_s, no_pod)
        if routed.held:
            route, resolved_at = await self._hold(feature, name, route, no_pod, recorder)
        call, indices = self._chunked(feature, name, route, resolved_at, args, recorder)
        return await self._sent(call, indices, as_chunks)

    async def _hold(
        self,
        feature: str,
        name: str,
        route: Route,
        no_pod: str = "",
        recorder: CallRecorder | None = None,
    ) -> tuple[Route, float]:
        """The route of ``name`` once its group has a ready replica (``chalk.engine.holds``);
        ``no_pod``: the DNS name of its Service when that resolves to no pod; ``recorder``:
        the call's, which keeps the wait until it ends."""
        self._called(route)
        ready, read_at = await self._held.until_ready(
            feature,
            name,
            route,
            no_pod=no_pod,
            deadline_s=self._hold_deadline_s,
            # Only the local controller reads demand rows; on Kubernetes demand travels as
            # chalk serve's metrics.
            held=self._held_now if route.backend == "local" else _not_told,
            recorder=recorder,
        )
        # A channel that resolved the Service to nothing waits out gRPC's back-off before it
        # looks again: the first call after the hold opens a new one (one per read: the calls
        # released by the same read share the new channel).
        for endpoint in ready.endpoints:
            if dns_name(endpoint.target) is not None:
                self._client.drop(endpoint.target, tls=endpoint.tls, opened_before=read_at)
        return ready, read_at

    def _addresses_changed(self, target: str, since: float) -> None:
        """A lookup started at ``since`` found the pods behind the ``dns:`` target ``target``
        changed: the channels opened before then go (once their calls end), and the next call
        opens one whose resolver sees them all. gRPC's resolver looks again only when a
        connection fails: a pod added would otherwise take no call from this process."""
        for tls in (False, True):
            self._client.drop(target, tls=tls, opened_before=since)

    def _called(self, route: Route) -> None:
        """Note a call to ``route``'s group: its last call time, and its demand's publisher."""
        self._last_calls[route.group] = time.time()
        if self._publisher is not None and route.backend == "local":
            self._publisher.called(route.group)

    def _held_now(self, group: str) -> None:
        """A call to ``group`` found no ready replica: the controller hears of it at once."""
        if self._publisher is not None:
            self._publisher.urgent(group)

    async def _cached(
        self,
        call: ModelCall,
        args: Sequence[pa.Array],
        as_chunks: bool,
        ttl_s: float,
        no_pod: str = "",
    ) -> pa.Array | pa.ChunkedArray:
        """``call`` answered from the store where it can, the model asked for the rest.

        A call whose every row is cached needs no replica: a group scaled to zero answers it
        without waking (and without counting it as a call to the group).

        Answers are kept only under the version that gave them: only when the route the
        rows were sent on and the call's route at its end (the dispatch reads it again
        between chunks) are both settled on the scope's version (``Route.settled``). Mid-roll
        the old version's replicas answer while the route names the new one: nothing is kept
        then. Lookups stay safe mid-roll: the current version's answers were kept only while
        it alone answered."""
        route, recorder = call.route, call.recorder
        batch = argument_batch(call, args)
        if batch.num_rows == 0:
            return _joined(call, [], None, as_chunks)
        distinct, indices = dedupe(batch) if self._dedup else (batch, None)
        if recorder is not None:
            recorder.deduplicated(route.group, asked=batch.num_rows, sent=distinct.num_rows)
        scope = AnswerScope(
            route.group,
            route.model_name,
            route.model_version,
            ttl_s,
            call.output_type,
            route.version_digest,
        )
        keys = row_keys(distinct)
        lookup = await self.answers.get(scope, keys)
        missed = missed_rows(lookup)
        if recorder is not None:
            hits = len(keys) - len(missed)
            recorder.looked_up(route.group, hits=hits, misses=len(missed), error=lookup.error)
            self._cache_figures(recorder, route.group)
        answer = lookup.answers
        if len(missed):
            if route.endpoints and not no_pod:
                self._called(route)
            else:
                route, resolved_at = await self._hold(
                    call.feature, call.name, route, no_pod, recorder
                )
                call = ModelCall(
                    call.feature, call.name, route, resolved_at=resolved_at, recorder=recorder
                )
            sent = distinct if len(missed) == len(keys) else distinct.take(missed)
            start = 0
            for index, chunk in enumerate(self._limits.cut(sent, endpoints=len(route.endpoints))):
                call.pending.append(Chunk(index, start, chunk, distinct=True))
                start += chunk.num_rows
            answered = await self._sent(call, None, as_chunks=False)
            assert isinstance(answered, pa.Array)
            if answered_by(route, scope) and answered_by(call.route, scope):
                await self.answers.put(scope, keys.take(missed), answered)
                if recorder is not None:
                    self._cache_figures(recorder, route.group)
            answer = joined_answers(lookup, answered)
        elif answer.type != call.output_type:
            answer = answer.cast(call.output_type)
        answer = fan_out(answer, indices)
        return pa.chunked_array([answer], type=call.output_type) if as_chunks else answer

    def _cache_figures(self, recorder: CallRecorder, group: str) -> None:
        """Tell ``recorder`` the store's bytes and evictions for ``group`` now."""
        figures = self.answers.stats().get(group) or CacheStats()
        recorder.cache_figures(group, nbytes=figures.bytes, evictions=figures.evictions)

    def _chunked(
        self,
        feature: str,
        name: str,
        route: Route,
        resolved_at: float,
        args: Sequence[pa.Array],
        recorder: CallRecorder | None,
    ) -> tuple[ModelCall, pa.Array | None]:
        """The call, its argument rows deduplicated and cut into pending chunks (none for
        no rows), and the dedup's indices (None: every row is sent)."""
        call = ModelCall(feature, name, route, resolved_at=resolved_at, recorder=recorder)
        self._called(route)
        batch = argument_batch(call, args)
        if batch.num_rows == 0:
            return call, None
        distinct, indices = dedupe(batch) if self._dedup and route.deterministic else (batch, None)
        if recorder is not None:
            recorder.deduplicated(route.group, asked=batch.num_rows, sent=distinct.num_rows)
        chunks = self._limits.cut(distinct, endpoints=len(route.endpoints))
        start = 0
        for index, chunk in enumerate(chunks):
            call.pending.append(Chunk(index, start, chunk, distinct=indices is not None))
            start += chunk.num_rows
        return call, indices

    async def _sent(
        self, call: ModelCall, indices: pa.Array | None, as_chunks: bool
    ) -> pa.Array | pa.ChunkedArray:
        """The answer of ``call`` once its pending chunks were sent."""
        count = len(call.pending)
        if count:
            await self._dispatcher.send_all(call)
        return _joined(call, [call.results[index] for index in range(count)], indices, as_chunks)

    def demand(self) -> dict[str, tuple[int, int]]:
        """Per scaling group this caller has called: ``(in_flight, waiting)``, the model
        calls in flight and the chunks waiting in its queue (counted before merging) or held
        while no replica may take them.

        Safe to read from any thread (a snapshot of a few counters per group).
        """
        return {group: (load.in_flight, load.waiting) for group, load in self.loads().items()}

    def loads(self) -> dict[str, GroupLoad]:
        """Per scaling group this caller has called: model calls in flight, calls waiting
        (chunks queued, counted before merging, or between attempts while no replica may take
        them, and calls held while the group has no ready replica), the held ones alone, and
        when it was last called. Safe to read from any thread."""
        queues = {queue.group: queue.demand for queue in list(self._dispatcher.queues.values())}
        held = dict(self._held.counts)
        last = dict(self._last_calls)
        loads: dict[str, GroupLoad] = {}
        for group in queues.keys() | held.keys() | last.keys():
            in_flight, waiting = queues.get(group, (0, 0))
            at = last.get(group)
            loads[group] = GroupLoad(
                in_flight=in_flight,
                waiting=waiting + held.get(group, 0),
                held=held.get(group, 0),
                last_call_at=None if at is None else dt.datetime.fromtimestamp(at, dt.UTC),
            )
        return loads

    def _claim_loop(self, feature: str) -> None:
        """Make the running loop this caller's, unless it already has another."""
        running = asyncio.get_running_loop()
        with self._lock:
            if self._loop is None:
                self._loop = running
            elif self._loop is not running:
                raise RuntimeError(
                    f"{feature}: this ModelCaller belongs to another event loop: expected "
                    f"call() awaited on its loop; use call_blocking() from other threads"
                )

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
        max_staleness_s: float | None = None,
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
        max_staleness_s: float | None = None,
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
        max_staleness_s: float | None = None,
    ) -> pa.Array | pa.ChunkedArray:
        """``call`` from synchronous code: runs it on the caller's loop and waits.

        The recorder defaults to the one ``recording`` set in the calling thread.
        """
        recorder = recorder or current_recorder()
        loop = self.loop
        if max_staleness_s is not None:
            # The store is asked on the loop, before anything is sent.
            cached = self._call(feature, name, args, as_chunks, recorder, max_staleness_s)
            return run_on(loop, cached, timeout_s)
        fresh = self._routes.fresh(name)
        if fresh is None:
            # The route is read on the loop (shared by the calls that find it expired).
            return run_on(loop, self._call(feature, name, args, as_chunks, recorder), timeout_s)
        refuse_on(loop)
        call, indices = self._chunked(feature, name, fresh.route, fresh.read_at, args, recorder)
        if len(call.pending) != 1:
            return run_on(loop, self._sent(call, indices, as_chunks), timeout_s)
        # One chunk (an online query's): handed to the loop through the inbox, and answered
        # from the queue's callback, with no task or coroutine unless it must be retried.
        reply: Reply[pa.Array] = Reply()
        stop: list[Callable[[], None]] = []
        inbox = self._inbox_of(loop)

        def start() -> None:
            stop.append(self._dispatcher.start_one(call, reply.send))

        def stop_it() -> None:  # on the loop after ``start``: the inbox keeps their order
            stop[0]()

        inbox.put(start)
        answer = reply.wait(loop, timeout_s, cancel=lambda: inbox.put(stop_it))
        return _joined(call, [answer], indices, as_chunks)

    def _inbox_of(self, loop: asyncio.AbstractEventLoop) -> Inbox:
        inbox = self._inbox
        if inbox is None or inbox.loop is not loop:
            with self._lock:
                if self._inbox is None or self._inbox.loop is not loop:
                    self._inbox = Inbox(loop)
                inbox = self._inbox
        return inbox

    async def aclose(self) -> None:
        """Close the caller's own client and its answer store (on its loop) and withdraw its
        demand; the loop and thread stay."""
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.close)
        if self._owns_client:
            await self._client.close()
        await self.answers.aclose()

    def close(self) -> None:
        """Close the caller's own client, withdraw its demand and stop its own loop thread;
        idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed() and loop.is_running():
            run_on(loop, self.aclose(), None)
        elif self._publisher is not None:
            self._publisher.close()
        if thread is not None:
            thread.stop()

    def __enter__(self) -> ModelCaller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _not_told(_group: str) -> None:
    """A held call's group is not told to a demand publisher (none reads its rows)."""


def _joined(
    call: ModelCall, answers: list[pa.Array], indices: pa.Array | None, as_chunks: bool
) -> pa.Array | pa.ChunkedArray:
    """The chunks' answers in row order, fanned back to the rows the dedup merged."""
    if not answers:
        empty = pa.array([], type=call.output_type)
        return pa.chunked_array([empty]) if as_chunks else empty
    if as_chunks:
        return fan_out(pa.chunked_array(answers, type=call.output_type), indices)
    return fan_out(answers[0] if len(answers) == 1 else pa.concat_arrays(answers), indices)
