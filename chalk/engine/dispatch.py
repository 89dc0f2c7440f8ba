"""The dispatch of a call's chunks to its scaling group's replicas through the group's queue,
and what happens when a chunk fails (DESIGN.md's table "What the engine does when a chunk
fails").

``ModelCaller`` owns one ``Dispatcher`` and hands it each call once the call is cut into
chunks; the dispatcher owns the process's ``GroupQueue`` per group and its ``EndpointSlots``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias

import pyarrow as pa

from chalk.catalog.records import Endpoint, Route
from chalk.common.backoff import capped_backoff
from chalk.engine.addresses import AddressCounts, dns_name
from chalk.engine.batching import (
    DEFAULT_BATCH_MAX_DELAY_S,
    EndpointSlots,
    GroupQueue,
    QueueDeadline,
    Sent,
)
from chalk.engine.call_schema import typed_answer
from chalk.engine.chunking import ChunkLimits
from chalk.engine.errors import ModelCallError, ModelResultError
from chalk.engine.model_call import (
    DEADLINE_EXCEEDED,
    Chunk,
    ModelCall,
    crashed_error,
    handler_error,
    queue_deadline_error,
    transport_error,
)
from chalk.engine.recorder import CallRecorder
from chalk.engine.routes import RouteCache
from chalk.shim.client import DEFAULT_DEADLINE_S, RemoteCallClient
from chalk.shim.errors import RemoteCallError, RemoteHandlerError, TransportError

__all__ = ["DEFAULT_RECOVERY_S", "Dispatcher", "Hold", "lost_after_sending"]

# How long a call keeps trying while no replica can take a chunk: long enough for a replica
# that died to be restarted (a local one is back in about 2 s).
DEFAULT_RECOVERY_S: Final = 10.0
# A dns: target's name resolved to nothing, or its lookup failed: nothing was sent (gRPC's
# words, before and since 1.6x).
_UNRESOLVED_MARKS: Final = ("errors resolving", "dns resolution failed")
# Transport failures that happened before the request reached a handler: gRPC could not
# connect, a draining replica refused it (our runtime's words), a server going away told
# gRPC it would not take the stream, or the name resolved to nothing.
_REFUSED_MARKS: Final = (
    "failed to connect",
    "connection refused",
    "shutting down",
    "goaway",
    *_UNRESOLVED_MARKS,
)

# Waits, for a call of ``feature`` to ``name``, until the group of ``route`` (one with no
# endpoints, or whose Service, the fourth argument, resolves to no pod) has a ready replica,
# recorded in the call's recorder; its route then and when it was read
# (``ModelCaller._hold``: ``chalk.engine.holds.HeldCalls.until_ready``).
Hold: TypeAlias = Callable[
    [str, str, Route, str, CallRecorder | None], Awaitable[tuple[Route, float]]
]


def lost_after_sending(error: TransportError) -> bool:
    """Whether ``error`` lost the connection after the request was sent (the replica died),
    rather than being refused before (nothing ran) or letting the deadline pass.

    Examples
    --------
    >>> lost = "Stream removed (recvmsg:Connection reset by peer (104))"
    >>> lost_after_sending(TransportError(endpoint="a:1", code="UNAVAILABLE", details=lost))
    True
    >>> refused = "failed to connect to all addresses; last error: Connection refused"
    >>> lost_after_sending(TransportError(endpoint="a:1", code="UNAVAILABLE", details=refused))
    False
    >>> draining = "the model replica is shutting down"
    >>> lost_after_sending(TransportError(endpoint="a:1", code="UNAVAILABLE", details=draining))
    False
    >>> unresolved = "errors resolving ner.ml.svc.cluster.local:8080: ... Domain name not found"
    >>> lost_after_sending(TransportError(endpoint="a:1", code="UNAVAILABLE", details=unresolved))
    False
    """
    if error.code == DEADLINE_EXCEEDED:
        return False
    details = error.details.lower()
    return not any(mark in details for mark in _REFUSED_MARKS)


class Dispatcher:
    """Sends each call's chunks through their group's queue until every chunk has its answer
    in ``call.results``, or raises the error that ends the call.

    Each chunk goes on alone (its own coroutine) and follows DESIGN.md's failure table: a
    refusal (nothing was sent) goes to another endpoint at once, and once every endpoint
    refused, after a back-off (``backoff_s`` doubling up to ``max_backoff_s``) to the route
    read again, until ``max_attempts`` attempts (default: the endpoints plus 2) and
    ``recovery_s`` since the first failure are spent. A connection lost after sending (the
    replica died) is retried once; a second death fails the call. A chunk whose route, read
    again, has no endpoints (or a Service with no pod, counted afresh) is held (``hold``)
    within the hold bound, as a new call is. A ``dns:`` target whose name resolved to nothing
    counts as a refusal, and its channel is dropped (its resolver would wait out gRPC's
    back-off). A replica that let the chunk's deadline pass is not tried again. A handler
    error is never retried, except that each call's part of a merged model call is retried
    alone once.
    """

    def __init__(
        self,
        client: RemoteCallClient,
        routes: RouteCache,
        *,
        limits: ChunkLimits,
        max_in_flight_per_endpoint: int,
        max_attempts: int | None,
        backoff_s: float,
        max_backoff_s: float,
        deadline_s: float | None,
        recovery_s: float,
        hold: Hold,
        batch_max_delay_s: float = DEFAULT_BATCH_MAX_DELAY_S,
        addresses: AddressCounts | None = None,
    ) -> None:
        self._client = client
        self._hold = hold
        self.routes = routes
        self._limits = limits
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._deadline_s = deadline_s
        self._recovery_s = recovery_s
        self._batch_max_delay_s = batch_max_delay_s
        self._slots = EndpointSlots(
            max_in_flight_per_endpoint, addresses=addresses or AddressCounts()
        )
        self.queues: dict[str, GroupQueue] = {}
        # Per group, the route its queue's endpoints were last set from, and those endpoints.
        self._routes_set: dict[str, tuple[Route, tuple[Endpoint, ...]]] = {}

    async def send_all(self, call: ModelCall) -> None:
        """Send ``call``'s pending chunks until each has its answer; the first error ends it."""
        queue = self._queue(call)
        chunks = list(call.pending)
        call.pending.clear()
        if len(chunks) == 1:
            call.results[chunks[0].index] = await self._send(call, queue, chunks[0])
            return
        try:
            async with asyncio.TaskGroup() as tasks:
                for chunk in chunks:
                    tasks.create_task(self._send_into_results(call, queue, chunk))
        except BaseExceptionGroup as failed:
            # The first failure, as a call of one chunk would raise it.
            raise failed.exceptions[0] from None

    def start_one(
        self, call: ModelCall, done: Callable[[pa.Array | None, BaseException | None], None]
    ) -> Callable[[], None]:
        """``send_all`` for a call of one pending chunk, without a task of its own: on the
        loop, the chunk is queued now and ``done(answer, None)`` or ``done(None, error)`` is
        called with how it ended. An attempt that does not simply succeed continues as
        ``send_all`` would (a task then). Returns what stops the call (on the loop; ``done``
        is not called after it)."""
        loop = asyncio.get_running_loop()
        chunk = call.pending.popleft()
        queue = self._queue(call)
        first = queue.submit(
            call, chunk, exclude=frozenset(chunk.timed_out), deadline_s=self._queue_deadline_s()
        )
        task: asyncio.Task[pa.Array] | None = None
        stopped = False

        def finished(ended: asyncio.Task[pa.Array]) -> None:
            if stopped:
                return
            if ended.cancelled():  # the loop is stopping: as run_on's cancelled coroutine
                done(None, concurrent.futures.CancelledError())
            else:
                error = ended.exception()
                done(None if error is not None else ended.result(), error)

        def arrived(sent_future: asyncio.Future[Sent]) -> None:
            nonlocal task
            if stopped:
                return
            sent = None
            if not sent_future.cancelled() and sent_future.exception() is None:
                sent = sent_future.result()
            if sent is not None and sent.endpoint is not None and sent.error is None:
                self._record(call, sent)
                assert sent.answer is not None, "a Sent without an error carries the answer"
                try:
                    answer = typed_answer(call, sent.endpoint, sent.answer)
                except ModelCallError as error:
                    call.ended = True
                    done(None, error)
                    return
                done(answer, None)
                return
            task = loop.create_task(self._send(call, queue, chunk, first=sent_future))
            task.add_done_callback(finished)

        def stop() -> None:
            nonlocal stopped
            stopped = True
            call.ended = True
            if task is not None:
                task.cancel()
            elif not first.done():
                queue.withdraw(first)
                first.cancel()

        first.add_done_callback(arrived)
        return stop

    def _queue(self, call: ModelCall) -> GroupQueue:
        route = call.route
        queue = self.queues.get(route.group)
        if queue is None:
            queue = GroupQueue(
                route.group, self._slots, self._send_batch, self._limits, self._batch_max_delay_s
            )
            self.queues[route.group] = queue
        seen = self._routes_set.get(route.group)
        if seen is not None and seen[0] is route and seen[1] is queue.endpoints:
            # Set from this very route (a cached route is the same object) and not changed
            # since by a retry's fresher read: nothing to do again for every call.
            return queue
        if route.batch_max_delay_s is not None:
            queue.max_delay_s = route.batch_max_delay_s
        queue.set_endpoints(tuple(dict.fromkeys(route.endpoints)))
        self._routes_set[route.group] = (route, queue.endpoints)
        self._slots.watch(queue.endpoints, queue.pump)
        return queue

    async def _send_into_results(self, call: ModelCall, queue: GroupQueue, chunk: Chunk) -> None:
        call.results[chunk.index] = await self._send(call, queue, chunk)
        queued = queue.waiting
        if queued:
            # A long call: replicas that became ready meanwhile take the chunks left.
            fresh = await self.routes.endpoints_between_chunks(call)
            if fresh is not None:
                queue.set_endpoints(tuple(dict.fromkeys(fresh)))

    async def _send(
        self,
        call: ModelCall,
        queue: GroupQueue,
        chunk: Chunk,
        *,
        first: asyncio.Future[Sent] | None = None,
    ) -> pa.Array:
        """``chunk``'s answer, after the retries the failure table allows; when it fails,
        the call's chunks still queued are not sent. ``first``: the chunk's first attempt,
        already queued."""
        try:
            return await self._attempts(call, queue, chunk, first)
        except ModelCallError:
            call.ended = True
            raise

    def _queue_deadline_s(self) -> float:
        return DEFAULT_DEADLINE_S if self._deadline_s is None else self._deadline_s

    async def _attempts(
        self, call: ModelCall, queue: GroupQueue, chunk: Chunk, first: asyncio.Future[Sent] | None
    ) -> pa.Array:
        max_attempts = self._max_attempts or len(call.route.endpoints) + 2
        refused: set[str] = set()
        rounds = 0
        deadline_s = self._queue_deadline_s()
        while True:
            if first is not None:
                future, first = first, None
            else:
                exclude = frozenset(refused | chunk.timed_out)
                future = queue.submit(call, chunk, exclude=exclude, deadline_s=deadline_s)
            try:
                sent = await future
            except QueueDeadline as late:
                raise queue_deadline_error(call, chunk, late.waited_s) from None
            except asyncio.CancelledError:
                queue.withdraw(future)
                raise
            if sent.endpoint is None:
                if chunk.failing_since is not None and self._gave_up(chunk, max_attempts):
                    raise transport_error(call, chunk, self._deadline_s)
                rounds += 1
                await self._back_off(call, queue, chunk, rounds)
                refused.clear()
                continue
            self._record(call, sent)
            if sent.error is None:
                assert sent.answer is not None, "a Sent without an error carries the answer"
                return typed_answer(call, sent.endpoint, sent.answer)
            await self._after_failure(call, chunk, sent, max_attempts, refused)

    async def _back_off(
        self, call: ModelCall, queue: GroupQueue, chunk: Chunk, rounds: int
    ) -> None:
        """No endpoint may take ``chunk`` now: wait (counted as held in the group's demand),
        then read the route again."""
        chunk.failing_since = chunk.failing_since or time.monotonic()
        queue.held += 1
        try:
            await asyncio.sleep(
                capped_backoff(rounds, initial_s=self._backoff_s, max_s=self._max_backoff_s)
            )
        finally:
            queue.held -= 1
        routed = await self.routes.route_again(call, recount=True)
        route = None if routed is None else routed.route
        if routed is not None and routed.held:
            # The group lost its last ready replica (scaled to zero, restarting): the chunk is
            # held as a new call is, within the hold bound, and then starts its retries afresh.
            held, read_at = await self._hold(
                call.feature, call.name, routed.route, routed.no_pod, call.recorder
            )
            route = self.routes.adopt(call, held, read_at)
            chunk.failing_since = None
            chunk.attempts = 0
        queue.set_endpoints(() if route is None else tuple(dict.fromkeys(route.endpoints)))

    async def _after_failure(
        self, call: ModelCall, chunk: Chunk, sent: Sent, max_attempts: int, refused: set[str]
    ) -> None:
        """Raise the error that ends the call, or record why ``chunk`` goes again."""
        error, endpoint = sent.error, sent.endpoint
        assert error is not None, "only a failed Sent comes here"
        assert endpoint is not None, "a Sent that was not sent carries no error"
        merged = sent.queries > 1
        if not isinstance(error, TransportError):
            if merged and not chunk.alone:
                # Another call's rows may have failed it: each part goes again alone.
                chunk.alone = True
                return
            raise _call_error(call, chunk, endpoint, error) from None
        chunk.attempts += 1
        chunk.tried.append(endpoint.target)
        chunk.last_error = error
        chunk.failing_since = chunk.failing_since or time.monotonic()
        if lost_after_sending(error):
            chunk.deaths += 1
            if chunk.deaths >= 2:
                replica = await self.routes.exited_replica(call, endpoint.target)
                raise crashed_error(call, chunk, error, replica)
            # Split before the retry: only the call whose rows kill it dies the second time.
            chunk.alone = True
            # The dying replica may still take a connection: the retry goes elsewhere, or to
            # it after the back-off, restarted.
            refused.add(endpoint.target)
        elif error.code == DEADLINE_EXCEEDED:
            chunk.timed_out.add(endpoint.target)
            if {e.target for e in call.route.endpoints} <= chunk.timed_out:
                raise transport_error(call, chunk, self._deadline_s)
        else:
            refused.add(endpoint.target)
            if _unresolved(error) and dns_name(endpoint.target) is not None:
                # Its resolver now waits out gRPC's back-off (up to 2 minutes): the retry
                # takes a new channel, which looks the name up again; not one opened after
                # this attempt was sent (another retry's, which may have resolved).
                self._client.drop(endpoint.target, tls=endpoint.tls, opened_before=sent.sent_at)
            if self._gave_up(chunk, max_attempts):
                raise transport_error(call, chunk, self._deadline_s)
        if call.recorder is not None:
            call.recorder.retried(call.route.group)

    def _gave_up(self, chunk: Chunk, max_attempts: int) -> bool:
        """Enough attempts, and long enough for a replica to have been restarted."""
        assert chunk.failing_since is not None
        return (
            chunk.attempts >= max_attempts
            and time.monotonic() - chunk.failing_since >= self._recovery_s
        )

    def _record(self, call: ModelCall, sent: Sent) -> None:
        if call.recorder is None or sent.endpoint is None:
            return
        group = call.route.group
        call.recorder.left_queue(
            group, queries=sent.queries, waited_s=sent.waited_s, reason=sent.reason
        )
        if sent.error is None and sent.answer is not None:
            call.recorder.answered(
                group, sent.endpoint.target, len(sent.answer), seconds=sent.call_s
            )

    async def _send_batch(
        self, endpoint: Endpoint, batch: pa.RecordBatch, call: ModelCall
    ) -> pa.Array:
        """One model call of ``batch`` (one call's rows, or several calls' merged)."""
        answer = await self._client.call(
            endpoint.target,
            batch,
            name=call.route.group,
            tls=endpoint.tls,
            deadline_s=self._deadline_s,
        )
        if len(answer) != batch.num_rows:
            raise _WrongLength(len(answer), batch.num_rows)
        return answer


def _unresolved(error: TransportError) -> bool:
    """Whether ``error`` says its target's name resolved to nothing (or failed to)."""
    details = error.details.lower()
    return any(mark in details for mark in _UNRESOLVED_MARKS)


class _WrongLength(Exception):
    """The model answered a number of values other than the rows it was sent."""

    def __init__(self, answered: int, rows: int) -> None:
        super().__init__(f"{answered} values for {rows} rows")
        self.answered = answered
        self.rows = rows


def _call_error(
    call: ModelCall, chunk: Chunk, endpoint: Endpoint, error: BaseException
) -> ModelCallError:
    """The error that ends ``call`` for a model call of ``chunk`` that failed as ``error``."""
    if isinstance(error, RemoteHandlerError):
        return handler_error(call, chunk, error)
    if isinstance(error, _WrongLength):
        return ModelResultError(
            f"{call.prefix}: {call.model} answered {error.answered} values for "
            f"{error.rows} rows ({chunk.rows}) at {endpoint.target}: expected one value per row"
        )
    if isinstance(error, RemoteCallError):
        return ModelCallError(f"{call.prefix} failed at {error.endpoint} for {chunk.rows}: {error}")
    if isinstance(error, ModelCallError):
        return error
    raise error
