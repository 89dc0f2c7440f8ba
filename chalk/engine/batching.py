"""The per-process queue of a scaling group's chunks: in-flight slots per endpoint shared by
every call of the process, and queued chunks of different calls merged into one model call.

The ``Dispatcher`` submits each attempt of a chunk to its group's ``GroupQueue`` and gets a
``Sent`` back; ``ModelCaller.demand`` reads the queues' counts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import pyarrow as pa

from chalk.catalog.records import Endpoint
from chalk.engine.addresses import DNS_RECOUNT_S, AddressCounts, dns_name
from chalk.engine.chunking import ChunkLimits
from chalk.engine.model_call import Chunk, ModelCall

__all__ = [
    "DEFAULT_BATCH_MAX_DELAY_S",
    "EndpointSlots",
    "GroupQueue",
    "LeaveReason",
    "QueueDeadline",
    "Sent",
]

# How long a queued chunk of a call with nothing in flight waits for a free slot before it
# goes out anyway: long enough for a slot of a 1 ms model to free (bench/calls.py), short
# enough that a query never notices it. See bench/README.md for how it was picked.
DEFAULT_BATCH_MAX_DELAY_S: Final = 0.005

LeaveReason = Literal["slot_free", "full", "delay"]

# Sends one (possibly merged) batch to one endpoint: the model's answer, one value per row.
SendBatch = Callable[[Endpoint, pa.RecordBatch, ModelCall], Awaitable[pa.Array]]


class QueueDeadline(Exception):
    """A queued chunk's deadline passed before a slot took it (the dispatcher names it)."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"waited {waited_s:.3f}s in the queue")
        self.waited_s = waited_s


@dataclass(frozen=True, slots=True)
class Sent:
    """How one attempt of a chunk went: the endpoint it went to (None: no endpoint could take
    it), its answer or the error of the whole model call, how many calls' chunks shared that
    model call, how long the chunk waited in the queue, why it left, how long the model call
    took, and when it was sent (``time.monotonic()``; 0.0: never)."""

    endpoint: Endpoint | None
    answer: pa.Array | None = None
    error: BaseException | None = None
    queries: int = 0
    waited_s: float = 0.0
    reason: LeaveReason = "slot_free"
    call_s: float = 0.0
    sent_at: float = 0.0


@dataclass(eq=False, slots=True)
class _Part:
    """One attempt of one call's chunk, queued or on its way."""

    call: ModelCall
    chunk: Chunk
    exclude: frozenset[str]
    future: asyncio.Future[Sent]
    queued_at: float
    deadline_at: float
    launched: bool = False

    @property
    def mergeable(self) -> bool:
        return self.call.route.deterministic and not self.chunk.alone


@dataclass(slots=True)
class EndpointSlots:
    """In-flight model calls per endpoint target, shared by every group queue of a process.

    ``limit`` calls per address take free slots; a queued chunk past its group's maximum
    delay may go over them (``GroupQueue``). A ``dns:`` target (a headless Service: gRPC
    spreads its calls over the addresses, round_robin) has ``limit`` slots per address it
    resolves to, counted by ``addresses`` (``watch``; one until the first count answers) and
    again every ``DNS_RECOUNT_S``.
    """

    limit: int
    in_flight: dict[str, int] = field(default_factory=dict)
    # Addresses behind each dns:/// target, as last counted (every other target has one).
    widths: dict[str, int] = field(default_factory=dict)
    addresses: AddressCounts = field(default_factory=AddressCounts)
    _counted_at: dict[str, float] = field(default_factory=dict)
    _counts: set[asyncio.Task[None]] = field(default_factory=set)
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def pick(self, endpoints: tuple[Endpoint, ...], *, under_limit: bool) -> Endpoint | None:
        """The least busy of ``endpoints`` per address (ties taken in turn); with
        ``under_limit``, only one with a free slot."""
        if not endpoints:
            return None
        start = next(self._turn) % len(endpoints)
        best: Endpoint | None = None
        best_share = 0.0
        for endpoint in endpoints[start:] + endpoints[:start]:
            load = self.in_flight.get(endpoint.target, 0)
            width = self.widths.get(endpoint.target, 1)
            if under_limit and load >= self.limit * width:
                continue
            share = load / width
            if best is None or share < best_share:
                best, best_share = endpoint, share
        return best

    def watch(self, endpoints: tuple[Endpoint, ...], changed: Callable[[], None]) -> None:
        """Count the addresses behind each ``dns:`` target of ``endpoints`` not counted
        within ``DNS_RECOUNT_S`` (on the running loop, in the background); ``changed`` runs
        when a count changed."""
        now = time.monotonic()
        for endpoint in endpoints:
            if dns_name(endpoint.target) is None:
                continue
            counted_at = self._counted_at.get(endpoint.target)
            if counted_at is not None and now - counted_at < DNS_RECOUNT_S:
                continue
            self._counted_at[endpoint.target] = now
            task = asyncio.get_running_loop().create_task(self._recount(endpoint.target, changed))
            self._counts.add(task)
            task.add_done_callback(self._counts.discard)

    async def _recount(self, target: str, changed: Callable[[], None]) -> None:
        try:
            addresses = await self.addresses.count(target)
        except OSError:
            return  # the last count stands; gRPC's own resolution reports what is wrong
        if addresses >= 1 and addresses != self.widths.get(target, 1):
            self.widths[target] = addresses
            changed()

    def take(self, target: str) -> None:
        self.in_flight[target] = self.in_flight.get(target, 0) + 1

    def give_back(self, target: str) -> None:
        left = self.in_flight.get(target, 0) - 1
        if left > 0:
            self.in_flight[target] = left
        else:
            self.in_flight.pop(target, None)


class GroupQueue:
    """The chunks of one scaling group waiting for a slot, and the model calls in flight.

    A chunk goes out at once while one of the group's endpoints has a free slot. Otherwise it
    waits here; when a slot frees, the queue's oldest chunk leaves merged with the chunks
    queued behind it (of other calls of the process, one chunk each) up to the row and byte
    limits, as one model call ("slot_free"). A chunk of a call with nothing else in flight
    leaves without a free slot when it has waited ``max_delay_s`` ("delay"), or when its
    merged chunk reached the limits ("full"): a call's own many chunks still take turns on
    the slots. A non-deterministic model's chunks, and a chunk retried alone, are never
    merged. A chunk whose deadline passes while queued leaves with ``QueueDeadline``. Used on
    the caller's event loop only.
    """

    def __init__(
        self,
        group: str,
        slots: EndpointSlots,
        send: SendBatch,
        limits: ChunkLimits,
        max_delay_s: float,
    ) -> None:
        self.group = group
        self.max_delay_s = max_delay_s
        self.endpoints: tuple[Endpoint, ...] = ()
        # Chunks in flight (a merged model call carries several: demand counts calls before
        # merging, so 8 queries in 2 merged sends are 8), and chunks held between attempts
        # while no endpoint may take them (the dispatcher's back-off).
        self.in_flight = 0
        self.held = 0
        self._parts: deque[_Part] = deque()
        # The queued parts' rows and bytes together (``_more_than_limits`` on every pump).
        self._queued_rows = 0
        self._queued_bytes = 0
        self._slots = slots
        self._send = send
        self._limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Chunks waiting in the queue (counted before merging)."""
        return len(self._parts)

    @property
    def demand(self) -> tuple[int, int]:
        """``(in_flight, waiting)``: chunks in flight (each part of a merged model call
        counts), and chunks waiting for a slot or held while no endpoint may take them."""
        return self.in_flight, len(self._parts) + self.held

    def submit(
        self, call: ModelCall, chunk: Chunk, *, exclude: frozenset[str], deadline_s: float
    ) -> asyncio.Future[Sent]:
        """Queue one attempt of ``chunk`` (not to ``exclude``); its ``Sent`` arrives when it
        was answered or failed, or at once when no endpoint may take it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sent] = loop.create_future()
        if not _allowed(self.endpoints, exclude):
            future.set_result(Sent(None))
            return future
        now = loop.time()
        part = _Part(call, chunk, exclude, future, now, now + deadline_s)
        self._enqueue(part)
        if self._may_leave_now(part):
            self.pump()
        else:
            # Nothing may leave before the timer (no free slot, nothing past its delay): one
            # pump per model call instead of one per chunk queued (each scans the whole queue).
            self._wake_for(loop, part)
        return future

    def _may_leave_now(self, part: _Part) -> bool:
        """Whether a pump right after ``part`` was queued could send anything: the queue was
        empty, a slot is free, ``part`` is past its delay already, or the queue holds enough
        rows to fill a merged chunk. Otherwise the last pump's verdict on the others stands
        and the timer sends them."""
        head = self._parts[0]
        return (
            head is part
            or self.max_delay_s <= 0
            or self._more_than_limits()
            or self._slots.pick(_usable(self.endpoints, head), under_limit=True) is not None
        )

    def _wake_for(self, loop: asyncio.AbstractEventLoop, part: _Part) -> None:
        """The timer, moved earlier if ``part``'s delay or deadline comes before it."""
        when = part.deadline_at
        if not part.call.in_flight:
            when = min(when, part.queued_at + self.max_delay_s)
        if self._timer is None or when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = loop.call_at(when, self.pump), when

    def set_endpoints(self, endpoints: tuple[Endpoint, ...]) -> None:
        """The group's endpoints as last read; queued chunks may go to new ones at once."""
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            self.pump()

    def withdraw(self, future: asyncio.Future[Sent]) -> None:
        """Forget the queued part of ``future`` (its call ended); one in flight runs on."""
        for part in self._parts:
            if part.future is future:
                self._dequeue(part)
                return

    def _enqueue(self, part: _Part) -> None:
        self._parts.append(part)
        self._queued_rows += part.chunk.batch.num_rows
        self._queued_bytes += part.chunk.batch.nbytes

    def _dequeue(self, part: _Part) -> None:
        self._parts.remove(part)
        self._queued_rows -= part.chunk.batch.num_rows
        self._queued_bytes -= part.chunk.batch.nbytes

    def pump(self) -> None:
        """Send what may go now; wake again when the next queued chunk's delay or deadline
        passes."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._drop_expired(now)
        self._send_to_free_slots(now)
        self._send_past_delay(now)
        self._wake_at(loop)

    def _drop_expired(self, now: float) -> None:
        """Parts of calls that ended (another chunk failed) leave; parts past their deadline
        leave with ``QueueDeadline``; parts no endpoint may take any more with ``Sent(None)``."""
        for part in list(self._parts):
            if part.call.ended:
                self._dequeue(part)
                part.future.cancel()
            elif part.deadline_at <= now:
                self._dequeue(part)
                part.future.set_exception(QueueDeadline(now - part.queued_at))
            elif not _allowed(self.endpoints, part.exclude):
                self._dequeue(part)
                part.future.set_result(Sent(None))

    def _send_to_free_slots(self, now: float) -> None:
        while self._parts:
            head = self._parts[0]
            endpoint = self._slots.pick(_usable(self.endpoints, head), under_limit=True)
            if endpoint is None:
                return
            self._launch(endpoint, self._merged(head, endpoint), now, "slot_free")

    def _send_past_delay(self, now: float) -> None:
        # Parts queue in the order they were queued in: the first one not past its delay ends
        # the scan, unless the queue holds enough rows to fill a merged chunk.
        may_fill = self._more_than_limits()
        for part in list(self._parts):
            if part.launched:
                continue
            past_delay = now - part.queued_at >= self.max_delay_s
            if not past_delay and not may_fill:
                return
            if part.call.in_flight:
                continue
            endpoint = self._slots.pick(_usable(self.endpoints, part), under_limit=False)
            if endpoint is None:
                continue
            merged = self._merged(part, endpoint)
            if len(merged) > 1 and self._full(merged):
                self._launch(endpoint, merged, now, "full")
            elif past_delay:
                self._launch(endpoint, merged, now, "delay")

    def _more_than_limits(self) -> bool:
        """Whether the queued parts together exceed the row or byte limit of one chunk."""
        return (
            self._queued_rows > self._limits.max_rows or self._queued_bytes > self._limits.max_bytes
        )

    def _wake_at(self, loop: asyncio.AbstractEventLoop) -> None:
        when: float | None = None
        if self._parts:
            when = min(part.deadline_at for part in self._parts)
            idle = [part.queued_at for part in self._parts if not part.call.in_flight]
            if idle:
                when = min(when, min(idle) + self.max_delay_s)
        if self._timer is not None:
            # A pending timer for the same moment stays (a pump per queued chunk otherwise
            # cancels and makes one each time).
            if when == self._timer_at and when > loop.time():
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer, self._timer_at = loop.call_at(when, self.pump), when

    def _merged(self, first: _Part, endpoint: Endpoint) -> list[_Part]:
        """``first`` and the queued parts that may ride with it to ``endpoint``, in queue
        order, within the row and byte limits."""
        merged = [first]
        if not first.mergeable:
            return merged
        rows, nbytes = first.chunk.batch.num_rows, first.chunk.batch.nbytes
        calls = {id(first.call)}
        for part in self._parts:
            # A call's own chunks were cut to spread over the replicas: one each per merge.
            if id(part.call) in calls or not part.mergeable or endpoint.target in part.exclude:
                continue
            if not _same_model(first.call, part.call):
                continue
            batch = part.chunk.batch
            if rows + batch.num_rows > self._limits.max_rows or (
                nbytes + batch.nbytes > self._limits.max_bytes
            ):
                break
            merged.append(part)
            calls.add(id(part.call))
            rows, nbytes = rows + batch.num_rows, nbytes + batch.nbytes
        return merged

    def _full(self, merged: list[_Part]) -> bool:
        """Whether the next queued part would not fit in ``merged`` any more."""
        rows = sum(part.chunk.batch.num_rows for part in merged)
        nbytes = sum(part.chunk.batch.nbytes for part in merged)
        calls = {id(part.call) for part in merged}
        for part in self._parts:
            if part in merged or id(part.call) in calls or not part.mergeable:
                continue
            batch = part.chunk.batch
            more_rows: int = rows + batch.num_rows
            more_bytes: int = nbytes + batch.nbytes
            return more_rows > self._limits.max_rows or more_bytes > self._limits.max_bytes
        return False

    def _launch(
        self, endpoint: Endpoint, merged: list[_Part], now: float, reason: LeaveReason
    ) -> None:
        for part in merged:
            self._dequeue(part)
            part.launched = True
            part.call.in_flight += 1
        self._slots.take(endpoint.target)
        self.in_flight += len(merged)
        task = asyncio.create_task(self._run(endpoint, merged, now, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, endpoint: Endpoint, merged: list[_Part], now: float, reason: LeaveReason
    ) -> None:
        queries = len(merged)
        batches = [part.chunk.batch for part in merged]
        batch = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
        began, sent_at = time.perf_counter(), time.monotonic()
        try:
            answer: pa.Array | None = await self._send(endpoint, batch, merged[0].call)
            error: BaseException | None = None
        except Exception as failure:
            answer, error = None, failure
        finally:
            call_s = time.perf_counter() - began
            self._slots.give_back(endpoint.target)
            self.in_flight -= len(merged)
            for part in merged:
                part.call.in_flight -= 1
        offset = 0
        for part in merged:
            rows = part.chunk.batch.num_rows
            mine = None if answer is None else answer.slice(offset, rows)
            offset += rows
            if not part.future.done():
                waited_s = now - part.queued_at
                part.future.set_result(
                    Sent(endpoint, mine, error, queries, waited_s, reason, call_s, sent_at)
                )
        # After the chunks' own tasks ran: a call that fails now sends nothing more.
        asyncio.get_running_loop().call_soon(self.pump)


def _allowed(endpoints: tuple[Endpoint, ...], exclude: frozenset[str]) -> bool:
    if not exclude:  # the common case, checked for every queued chunk on every pump
        return bool(endpoints)
    return any(endpoint.target not in exclude for endpoint in endpoints)


def _usable(endpoints: tuple[Endpoint, ...], part: _Part) -> tuple[Endpoint, ...]:
    if not part.exclude:
        return endpoints
    return tuple(endpoint for endpoint in endpoints if endpoint.target not in part.exclude)


def _same_model(first: ModelCall, other: ModelCall) -> bool:
    """Whether ``other``'s rows may ride in ``first``'s model call: the same model version
    and input columns."""
    return first.route.model_version == other.route.model_version and (
        first.route.input_schema.equals(other.route.input_schema)
    )
