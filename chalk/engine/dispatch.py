"""The dispatch of a call's chunks to its scaling group's replicas: rounds over the endpoints,
retries of transport failures elsewhere, back-off and a fresh route between rounds.

``ModelCaller`` owns one ``Dispatcher`` and hands it each call once the call is cut into
chunks; a ``_Round`` holds the state of one round of a call of several chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Final

import pyarrow as pa

from chalk.catalog.records import Endpoint
from chalk.common.backoff import capped_backoff
from chalk.engine.call_schema import typed_answer
from chalk.engine.errors import ModelCallError, ModelResultError
from chalk.engine.model_call import (
    DEADLINE_EXCEEDED,
    Chunk,
    ModelCall,
    handler_error,
    transport_error,
)
from chalk.engine.routes import RouteCache
from chalk.shim.client import RemoteCallClient
from chalk.shim.errors import RemoteCallError, RemoteHandlerError, TransportError

__all__ = ["DEFAULT_RECOVERY_S", "Dispatcher"]

# How long a call keeps trying while no replica can take a chunk: long enough for a replica
# that died to be restarted (a local one is back in about 2 s).
DEFAULT_RECOVERY_S: Final = 10.0


class Dispatcher:
    """Sends each call's pending chunks to the group's endpoints until every chunk has its
    answer in ``call.results``, or raises the error that ends the call.

    A round gives every endpoint of the route up to ``max_in_flight_per_endpoint`` chunks of
    the call at once (a call of one chunk: the endpoints one after another). A chunk that
    fails in transport goes to another endpoint; when every endpoint has failed, the round
    ends, and after a back-off (``backoff_s`` doubling up to ``max_backoff_s``) the next one
    starts on the route read again. A chunk gives up after ``max_attempts`` attempts (default:
    the number of endpoints plus 2) and at least ``recovery_s`` after its first failure, or
    once it let its deadline pass on every endpoint. Handler errors are never retried.
    """

    def __init__(
        self,
        client: RemoteCallClient,
        routes: RouteCache,
        *,
        max_in_flight_per_endpoint: int,
        max_attempts: int | None,
        backoff_s: float,
        max_backoff_s: float,
        deadline_s: float | None,
        recovery_s: float,
    ) -> None:
        self._client = client
        self.routes = routes
        self._max_in_flight = max_in_flight_per_endpoint
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._deadline_s = deadline_s
        self._recovery_s = recovery_s
        # Where the next one-chunk call starts among a route's endpoints (loop thread only).
        self._next_endpoint = 0

    async def send_all(self, call: ModelCall) -> None:
        """Send ``call``'s pending chunks, round after round, until none is left."""
        max_attempts = self._max_attempts or len(call.route.endpoints) + 2
        endpoints = call.route.endpoints
        failing_since = None
        round_number = 0
        while True:
            if round_number:
                await asyncio.sleep(
                    capped_backoff(
                        round_number, initial_s=self._backoff_s, max_s=self._max_backoff_s
                    )
                )
                endpoints = await self.routes.endpoints_again(call)
            await self._round(call, list(dict.fromkeys(endpoints)), max_attempts)
            if not call.pending:
                return
            failing_since = failing_since or time.monotonic()
            round_number += 1
            if self._gave_up(round_number, failing_since, max_attempts):
                raise transport_error(call, call.pending[0], self._deadline_s)

    async def attempt(
        self, call: ModelCall, endpoint: Endpoint, chunk: Chunk, max_attempts: int
    ) -> pa.Array | None:
        """The chunk's answer from ``endpoint``, or None after a transport failure that leaves
        attempts to make (the failure is recorded on the chunk)."""
        sent = time.perf_counter()
        try:
            answer = await self._send(call, endpoint, chunk)
        except TransportError as error:
            chunk.attempts += 1
            chunk.tried.append(endpoint.target)
            chunk.last_error = error
            if error.code == DEADLINE_EXCEEDED:
                chunk.timed_out.add(endpoint.target)
            if chunk.failing_since is None:
                chunk.failing_since = time.monotonic()
            timed_out_everywhere = {e.target for e in call.route.endpoints} <= chunk.timed_out
            if self._gave_up(chunk.attempts, chunk.failing_since, max_attempts) or (
                timed_out_everywhere
            ):
                raise transport_error(call, chunk, self._deadline_s) from None
            if call.recorder is not None:
                call.recorder.retried(call.route.group)
            return None
        if call.recorder is not None:
            call.recorder.answered(
                call.route.group,
                endpoint.target,
                chunk.batch.num_rows,
                seconds=time.perf_counter() - sent,
            )
        return answer

    def _gave_up(self, attempts: int, failing_since: float, max_attempts: int) -> bool:
        """Enough attempts, and long enough for a replica to have been restarted."""
        return attempts >= max_attempts and time.monotonic() - failing_since >= self._recovery_s

    async def _round(self, call: ModelCall, endpoints: list[Endpoint], max_attempts: int) -> None:
        """Send pending chunks to ``endpoints`` until none is left or every endpoint failed."""
        if len(call.pending) == 1:
            await self._round_one(call, endpoints, max_attempts)
            return
        per_endpoint = min(self._max_in_flight, len(call.pending))
        await _Round(self, call, max_attempts, per_endpoint).run(endpoints)

    async def _round_one(
        self, call: ModelCall, endpoints: list[Endpoint], max_attempts: int
    ) -> None:
        """``_round`` for a single chunk (an online query): the endpoints one after another.

        The same outcome as a ``_Round`` of worker tasks, without them: each endpoint takes the
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
            answer = await self.attempt(call, endpoint, chunk, max_attempts)
            if answer is not None:
                call.results[chunk.index] = answer
                call.pending.popleft()
                return

    async def _send(self, call: ModelCall, endpoint: Endpoint, chunk: Chunk) -> pa.Array:
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
            raise handler_error(call, chunk, error) from None
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
        return typed_answer(call, endpoint, answer)


class _Round:
    """One round of a call of several chunks: ``per_endpoint`` workers per endpoint, each
    taking pending chunks one at a time.

    After each chunk a worker may read the route again: new endpoints get workers of their
    own, and those that left the route take no more chunks. An endpoint that fails a chunk
    in transport is down for the rest of the round and the chunk goes back to the front of
    the queue, for another endpoint at once. The round ends when no chunk is pending, or none
    is in flight and every endpoint is down.
    """

    def __init__(
        self, dispatcher: Dispatcher, call: ModelCall, max_attempts: int, per_endpoint: int
    ) -> None:
        self._dispatcher = dispatcher
        self._call = call
        self._max_attempts = max_attempts
        self._per_endpoint = per_endpoint
        self._changed = asyncio.Condition()
        self._down: set[Endpoint] = set()
        self._serving: set[Endpoint] = set()
        self._in_flight = 0
        self._tasks: asyncio.TaskGroup | None = None

    async def run(self, endpoints: Sequence[Endpoint]) -> None:
        """Serve ``endpoints`` (and those that join) until the round ends."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._serve(endpoints)
        except BaseExceptionGroup as failed:
            # The first failure, as a call of one chunk would raise it.
            raise failed.exceptions[0] from None

    def _serve(self, endpoints: Sequence[Endpoint]) -> None:
        """Start workers for each of ``endpoints`` not served yet."""
        assert self._tasks is not None, "run() opens the task group first"
        for endpoint in endpoints:
            if endpoint not in self._serving:
                self._serving.add(endpoint)
                for _ in range(self._per_endpoint):
                    self._tasks.create_task(self._worker(endpoint))

    def _may_move(self, endpoint: Endpoint) -> bool:
        """Whether a waiting worker of ``endpoint`` has something to do: take a chunk, or stop."""
        return endpoint in self._down or bool(self._call.pending) or self._in_flight == 0

    async def _worker(self, endpoint: Endpoint) -> None:
        call = self._call
        while True:
            chunk = await self._take(endpoint)
            if chunk is None:
                return
            answer = await self._dispatcher.attempt(call, endpoint, chunk, self._max_attempts)
            if answer is None:
                await self._give_back(endpoint, chunk)
                return
            call.results[chunk.index] = answer
            routes = self._dispatcher.routes
            fresh = await routes.endpoints_between_chunks(call) if call.pending else None
            await self._finished(fresh)

    async def _take(self, endpoint: Endpoint) -> Chunk | None:
        """The next pending chunk for a worker of ``endpoint``; None when it should stop."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._may_move(endpoint))
            if endpoint in self._down or not self._call.pending:
                return None
            self._in_flight += 1
            return self._call.pending.popleft()

    async def _give_back(self, endpoint: Endpoint, chunk: Chunk) -> None:
        """Another endpoint takes the chunk at once; this one sits out the round."""
        async with self._changed:
            self._in_flight -= 1
            self._down.add(endpoint)
            self._call.pending.appendleft(chunk)
            self._changed.notify_all()

    async def _finished(self, fresh: Sequence[Endpoint] | None) -> None:
        """A chunk answered; ``fresh`` is the route read meanwhile (None: not read)."""
        async with self._changed:
            self._in_flight -= 1
            if fresh is not None:
                self._down.update(self._serving.difference(fresh))
                self._serve(fresh)
            self._changed.notify_all()
