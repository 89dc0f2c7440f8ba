"""Model calls: the argument columns of ``catalog_call("model.<group>", ...)`` sent to a group.

The executor hands a call's columns to ``ModelCaller`` (one per process: ``ChalkClient``,
``chalk query``, the server), which resolves the group, casts, chunks, has the ``Dispatcher``
send the chunks, and re-joins the answers in row order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Literal, overload

import pyarrow as pa

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
from chalk.engine.dispatch import DEFAULT_RECOVERY_S, Dispatcher
from chalk.engine.event_loop import EventLoopThread, run_on
from chalk.engine.model_call import Chunk, ModelCall
from chalk.engine.recorder import CallRecorder, current_recorder
from chalk.engine.routes import Resolver, RouteCache
from chalk.shim.client import DEFAULT_MAX_REQUEST_BYTES, RemoteCallClient

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
    to one replica, with at most ``max_in_flight_per_endpoint`` chunks of a call in flight
    per replica. Between chunks a long call reads the group's route again (at most every
    ``chalk.engine.routes.ROUTE_TTL_S``): replicas that became ready meanwhile (the
    autoscaler added them) take chunks too, and replicas that left take no more. A chunk that
    fails in transport (refused, UNAVAILABLE, deadline, reset) goes to another replica; when
    every replica of the route has failed, its ``Dispatcher`` backs off, resolves the group again
    (picking up replaced replicas) and goes on, up to ``max_attempts`` attempts per chunk
    (default: the number of endpoints plus 2) and for at least ``recovery_s`` after the first
    failure, so that a replica being restarted can take the chunk. A chunk that let its
    deadline pass on a replica is not sent there again. A handler error is never retried.
    Answers are re-joined in row order and typed by output_schema; nulls pass through to the
    model and back.

    A caller belongs to one event loop: ``loop`` when given (share one across a process, e.g.
    an ``EventLoopThread``'s), else the loop its ``call`` is first awaited on, else a
    background thread of its own, started by the first ``call_blocking``. ``call_blocking``
    may be used from several threads at once.

    Identical argument rows of a call are sent once and their answer fanned back to each of
    them (``chalk.engine.dedup``; a null is a value like any other, every NaN equals every
    NaN), before the rows are cut into chunks. Never for a model version registered with
    ``deterministic=False``; ``dedup=False`` (or ``CHALK_DEDUP=0`` in the environment when
    ``dedup`` is not given) sends every row.

    Calls made inside ``recording(recorder)`` count their chunks, rows, answering replicas,
    retries, rows asked and sent and dedup hits in the ``CallRecorder``.

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
        dedup: bool | None = None,
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
        self._routes = RouteCache(catalog)
        self._dispatcher = Dispatcher(
            self._client,
            self._routes,
            max_in_flight_per_endpoint=max_in_flight_per_endpoint,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            deadline_s=deadline_s,
            recovery_s=recovery_s,
        )
        self._thread: EventLoopThread | None = None
        self._lock = threading.Lock()
        self._dedup = dedup_enabled(dedup)
        self._limits = ChunkLimits(
            max_rows=max_chunk_rows,
            max_bytes=max_chunk_bytes,
            chunks_per_endpoint=chunks_per_endpoint,
            min_rows=min_chunk_rows,
            in_flight_per_endpoint=max_in_flight_per_endpoint,
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
        self._claim_loop(feature)
        route, resolved_at = await self._routes.resolve(feature, name)
        recorder = recorder or current_recorder()
        call = ModelCall(feature, name, route, resolved_at=resolved_at, recorder=recorder)
        batch = argument_batch(call, args)
        if batch.num_rows == 0:
            empty = pa.array([], type=call.output_type)
            return pa.chunked_array([empty]) if as_chunks else empty
        distinct, indices = dedupe(batch) if self._dedup and route.deterministic else (batch, None)
        if recorder is not None:
            recorder.deduplicated(route.group, asked=batch.num_rows, sent=distinct.num_rows)
        chunks = self._limits.cut(distinct, endpoints=len(route.endpoints))
        start = 0
        for index, chunk in enumerate(chunks):
            call.pending.append(Chunk(index, start, chunk, distinct=indices is not None))
            start += chunk.num_rows
        await self._dispatcher.send_all(call)
        answers = [call.results[index] for index in range(len(chunks))]
        if as_chunks:
            return fan_out(pa.chunked_array(answers, type=call.output_type), indices)
        return fan_out(answers[0] if len(answers) == 1 else pa.concat_arrays(answers), indices)

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
        recorder = recorder or current_recorder()
        if as_chunks:
            chunked = self.call(
                feature=feature, name=name, args=args, as_chunks=True, recorder=recorder
            )
            return run_on(self.loop, chunked, timeout_s)
        whole = self.call(feature=feature, name=name, args=args, recorder=recorder)
        return run_on(self.loop, whole, timeout_s)

    async def aclose(self) -> None:
        """Close the caller's own client (on its loop); the loop and thread stay."""
        if self._owns_client:
            await self._client.close()

    def close(self) -> None:
        """Close the caller's own client and stop its own loop thread; idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed() and loop.is_running():
            run_on(loop, self.aclose(), None)
        if thread is not None:
            thread.stop()

    def __enter__(self) -> ModelCaller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
