"""The runtime's gRPC server core: grpcio's Cython layer, polled by the threads that run handlers.

One module of about 570 lines on purpose: ``Stream``, ``_Pollers``, ``_HandlerSlots`` and
``ServerCore`` share one threading discipline (an event's tag runs on the thread that polled
it; a stream's fields change only under its lock; the core's lock guards every operation
started against the queue's shutdown) and none is used without the others, so each part reads
only beside the rules the others keep. What is core-independent (``Method``, ``Responder``,
``Abort``) is in ``chalk.shim._methods``, shared with ``chalk.shim._grpcio_core``.

``chalk.shim.server`` builds one ``ServerCore`` with its methods (``CallFunction``, health,
reflection). grpcio's synchronous server hands each event of a call from the thread polling
its completion queue to the call's pool thread and back, about four crossings each way for a
one-row call, and its asyncio server runs a dozen loop iterations per call (bench/README.md).
Here every thread of the pool polls the completion queue itself: the thread that receives a
message runs the handler on it and starts the reply, so a call crosses no thread of ours.
One thread more than there are handler slots keeps polling while every slot is busy, so that
health checks and network reads go on.

This drives ``grpc._cython.cygrpc``, the layer grpcio's own servers are written on. It is not
grpcio's public API, so pyproject.toml bounds grpcio, the runtime's tests cover every
behaviour used here, and ``--server-core grpcio`` serves the same methods on the public API.

A ``Stream`` (one call) goes through these states; its fields say which it is in:

=================  =========================================  ===================================
state              what holds                                 left for
=================  =========================================  ===================================
Reading            a receive is pending (``_receiving``),     Answering (a message came),
                   nothing is left to answer                  Ending (the client half-closed),
                                                              Finishing (a receive failed:
                                                              CANCELLED)
Waiting for a      an ``in_handler_slot`` call queued in      Answering (a slot freed), Over
slot               ``_HandlerSlots``; cancellation watched    (the client gave up)
Answering          ``_processing``: one thread runs           Reading or Ending (inbox empty),
                   ``responder.message`` over ``_inbox``,     Paused, Finishing (``Abort`` or
                   reading one message ahead                  a failure)
Paused             answers wait behind a send in flight       Answering (``_on_sent`` emptied
                   (``_outbox``, ``_sending``): no more is    the outbox)
                   answered, so flow control holds the client
Ending             ``_input_ended`` and nothing to answer:    Finishing (True: OK), Streaming
                   ``end_of_input`` runs once                 out (False)
                   (``_end_handled``)
Streaming out      open after ``end_of_input`` said False;    Finishing or Over (the client
                   answers come through ``send``              leaves, the server stops)
                   (``long_lived``: Health/Watch)
Finishing          ``_status`` decided; queued answers leave  Over (the status batch with
                   first, then the status (``_status_        ReceiveCloseOnServer completed)
                   started``)
Over               ``_close_seen``: gRPC is done with the     Released, once no thread answers
                   call                                       it
Released           ``_released``: ``_call`` dropped,          (final)
                   ``responder.closed()`` ran once
=================  =========================================  ===================================

A failed send or receive (the client cancelled, the deadline passed, the server stops) sets
the status to CANCELLED: Finishing, whose batch fails at once, then Over.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import grpc
from grpc._cython import cygrpc

from chalk.shim._methods import Abort, Method, Responder, check_handler_slots, failure_details

__all__ = ["ServerCore", "Stream"]

logger = logging.getLogger("chalk.shim.server")

_OK: Final = (grpc.StatusCode.OK.value[0], b"")
_CANCELLED: Final = (grpc.StatusCode.CANCELLED.value[0], b"")
_SHUTDOWN_WAIT_S: Final = 5.0
# Threads polling the completion queue while no handler runs.
_POLLERS: Final = 2


def _failure_status(method: str) -> tuple[int, bytes]:
    # UNKNOWN, as grpcio's own servers answer an exception of the server's.
    return (grpc.StatusCode.UNKNOWN.value[0], failure_details(method).encode())


class Stream:
    """One call in progress: its received messages, its answers and its status.

    Messages are read one ahead of the one being answered, so that the end of a one-message
    call is usually known by the time its answer is ready, and answer and status leave in one
    batch. At most one send is in flight; later answers wait in order.
    """

    __slots__ = (
        "_call",
        "_close_seen",
        "_close_separately",
        "_core",
        "_end_handled",
        "_inbox",
        "_input_ended",
        "_lock",
        "_metadata_sent",
        "_outbox",
        "_processing",
        "_receiving",
        "_released",
        "_responder",
        "_sending",
        "_status",
        "_status_started",
        "in_handler_slot",
        "metadata",
        "method",
    )

    def __init__(self, core: ServerCore, call: Any, method: str, metadata: Sequence[Any]) -> None:
        self.method = method
        self.metadata = tuple(metadata)
        self.in_handler_slot = False
        self._core = core
        self._call: Any = call
        self._lock = threading.Lock()
        self._responder: Responder | None = None
        self._inbox: collections.deque[bytes] = collections.deque()
        self._outbox: collections.deque[bytes] = collections.deque()
        self._receiving = False
        self._input_ended = False
        self._processing = False
        self._end_handled = False
        self._sending = False
        self._status: tuple[int, bytes] | None = None
        self._status_started = False
        self._metadata_sent = False
        self._close_seen = False
        self._close_separately = False
        self._released = False

    def peer(self) -> str:
        """The client's address as gRPC reports it (``ipv4:127.0.0.1:5000``)."""
        call = self._call
        if call is None:
            return ""
        peer: bytes = call.peer()
        return peer.decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        """Queue one answer; safe from any thread (a server-streaming method's updates)."""
        with self._lock:
            if self._status is None:
                self._outbox.append(data)
                self._flush_locked()

    def finish(self, status: tuple[int, bytes]) -> None:
        """End the call with ``status`` once the answers already queued have left."""
        with self._lock:
            if self._status is None:
                self._status = status
                self._inbox.clear()
                self._flush_locked()

    def _begin(self, method: Method | None) -> None:
        """Open the call and start reading; ``method`` None: the path names no method."""
        status = None
        if method is None:
            status = Abort(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {self.method}").status
        else:
            # Set before open, which may clear it (a call refused while draining).
            self.in_handler_slot = method.in_handler_slot
            try:
                self._responder = method.open(self)
            except Abort as abort:
                status = abort.status
        if method is not None and method.long_lived:
            # Started after open, so that a cancellation seen at once still closes the
            # responder. Other calls learn of their end from their status batch.
            self._close_separately = True
            self._core.start_batch(
                self._call, (cygrpc.ReceiveCloseOnServerOperation(0),), self._on_closed
            )
        if status is not None:
            self.finish(status)
            return
        with self._lock:
            self._receive_locked()

    def _on_received(self, event: Any) -> None:
        if not event.success:
            self._cancelled()
            return
        data = event.batch_operations[0].message()
        run = False
        with self._lock:
            self._receiving = False
            if data is None:
                self._input_ended = True
            elif self._status is None:
                self._inbox.append(data)
            if self._processing:
                return
            if self._inbox:
                self._processing = run = True
            elif self._ends_now_locked():
                self._end_locked()
                self._flush_locked()
        if run:
            self._core.run(self)

    def _cancelled(self) -> None:
        """A receive failed: the client cancelled or the deadline passed. The status batch
        fails at once too, and tells us when the call is over."""
        with self._lock:
            self._receiving = False
            self._input_ended = True
            self._inbox.clear()
            if self._status is None:
                self._status = _CANCELLED
            self._flush_locked()

    def watch_cancellation(self) -> None:
        """Learn of a cancellation while no operation is pending (the call waits for a
        handler slot), so that a call its client gave up on is dropped, not answered."""
        with self._lock:
            if self._close_separately or self._status_started or self._call is None:
                return
            self._close_separately = True
            self._core.start_batch(
                self._call, (cygrpc.ReceiveCloseOnServerOperation(0),), self._on_closed
            )

    def _process(self) -> None:
        """Answer the inbox in order; runs in one thread at a time (``_processing``)."""
        try:
            release = self._answer_inbox()
        except BaseException:
            # A bug of ours, not the handler's (``_answer_inbox`` catches those): end the call
            # rather than leave it, and the handler slot, taken for good.
            logger.exception("answering %s failed", self.method)
            with self._lock:
                self._processing = False
                if self._status is None:
                    self._status = _failure_status(self.method)
                    self._inbox.clear()
                self._flush_locked()
                release = self._release_now_locked()
        if release:
            self._release()

    def _answer_inbox(self) -> bool:
        """The loop of ``_process``; True: release the call (it ended meanwhile)."""
        responder = self._responder
        assert responder is not None
        while True:
            with self._lock:
                # Answers still queued behind the one being sent pause the stream (``_on_sent``
                # resumes it): reading on would buffer answers without bound for a client that
                # reads slowly, where waiting lets HTTP/2 flow control hold the client back.
                if self._status is not None or not self._inbox or self._outbox:
                    self._processing = False
                    if self._ends_now_locked():
                        self._end_locked()
                        self._flush_locked()
                    return self._release_now_locked()
                data = self._inbox.popleft()
                self._receive_locked()
            try:
                answers = list(responder.message(data))
            except Abort as abort:
                self.finish(abort.status)
                continue
            except BaseException:
                # Not only Exception: a SystemExit out of user code must not leave the call
                # without a status and its handler slot taken.
                logger.exception("answering a message of %s failed", self.method)
                self.finish(_failure_status(self.method))
                continue
            with self._lock:
                if self._status is None:
                    self._outbox.extend(answers)
                    if not self._inbox and self._ends_now_locked():
                        self._end_locked()
                    self._flush_locked()

    def _release_now_locked(self) -> bool:
        """After answering: True when the call ended meanwhile and is to be released now."""
        release = self._close_seen and not self._released
        if release:
            self._released = True
            self._call = None
        return release

    def _on_sent(self, event: Any) -> None:
        if not event.success:
            # The call is over (cancelled); only its status is left to start, so that the
            # status batch tells us when it ended.
            with self._lock:
                self._sending = False
                self._outbox.clear()
            self._cancelled()
            return
        run = False
        with self._lock:
            self._sending = False
            self._flush_locked()
            if self._inbox and not self._outbox and not self._processing:
                # A stream paused for its answers to leave goes on.
                self._processing = run = self._status is None
        if run:
            self._core.run(self)

    def _on_finished(self, event: Any) -> None:
        """The status batch with its ReceiveCloseOnServer completed: the call is over."""
        with self._lock:
            self._sending = False
            release = self._call_over_locked()
        if release:
            self._release()

    def _on_closed(self, event: Any) -> None:
        cancelled = bool(event.batch_operations[0].cancelled()) if event.success else True
        with self._lock:
            if cancelled and self._status is None:
                self._status = _CANCELLED
                self._status_started = True
            release = self._call_over_locked()
        if release:
            self._release()

    def _call_over_locked(self) -> bool:
        """Note that the call is over; True: release it now (no thread is answering it)."""
        self._close_seen = True
        self._inbox.clear()
        release = not self._processing and not self._released
        if release:
            self._released = True
            self._call = None
        return release

    def _release(self) -> None:
        # The call itself was dropped under the lock, so that the core can shut down even
        # while a handler still runs.
        responder, self._responder = self._responder, None
        if responder is not None:
            responder.closed()

    def _ends_now_locked(self) -> bool:
        return (
            self._input_ended
            and not self._inbox
            and not self._end_handled
            and self._status is None
            and self._responder is not None
        )

    def _end_locked(self) -> None:
        assert self._responder is not None
        self._end_handled = True
        try:
            if self._responder.end_of_input():
                self._status = _OK
        except Abort as abort:
            self._status = abort.status
        except BaseException:
            logger.exception("ending the input of %s failed", self.method)
            self._status = _failure_status(self.method)

    def _receive_locked(self) -> None:
        if self._receiving or self._input_ended or self._status is not None:
            return
        if self._core.start_batch(
            self._call, (cygrpc.ReceiveMessageOperation(0),), self._on_received
        ):
            self._receiving = True

    def _flush_locked(self) -> None:
        if self._sending or self._status_started or self._call is None:
            return
        if not self._outbox and self._status is None:
            return
        operations: list[Any] = []
        if not self._metadata_sent:
            operations.append(cygrpc.SendInitialMetadataOperation(None, 0))
            self._metadata_sent = True
        if self._outbox:
            operations.append(cygrpc.SendMessageOperation(self._outbox.popleft(), 0))
        tag = self._on_sent
        if not self._outbox and self._status is not None:
            code, details = self._status
            operations.append(cygrpc.SendStatusFromServerOperation(None, code, details, 0))
            self._status_started = True
            if not self._close_separately:
                operations.append(cygrpc.ReceiveCloseOnServerOperation(0))
                tag = self._on_finished
        if self._core.start_batch(self._call, operations, tag):
            self._sending = True


class _Pollers:
    """How many threads poll the completion queue: two, and one more whenever all are in
    handler slots, so that something always reads the network and answers health checks.

    Every thread of the pool could poll, but each extra poller costs CPU on every call
    (about a tenth of the server's per-call CPU with ten threads polling against two;
    bench/README.md), so the threads beyond two wait until one is needed.
    """

    def __init__(self, wanted: int) -> None:
        self._wanted = wanted
        self._active = 0
        self._closed = False
        self._changed = threading.Condition(threading.Lock())

    def wait_turn(self) -> None:
        """Before polling: wait while enough threads poll (until every one of them is in a
        handler slot, or the queue is shut down)."""
        with self._changed:
            if self._active >= self._wanted:
                while not self._closed and self._active >= 1:
                    self._changed.wait()
            self._active += 1

    def leave_for_handler(self) -> None:
        with self._changed:
            self._active -= 1
            if self._active == 0:
                self._changed.notify()

    def back_from_handler(self) -> None:
        with self._changed:
            self._active += 1

    def polled(self) -> None:
        """After a thread handled what its poll returned."""
        with self._changed:
            self._active -= 1

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class _HandlerSlots:
    """At most ``count`` streams answer in handler slots at once; the rest wait in order."""

    def __init__(self, count: int, pollers: _Pollers) -> None:
        self._free = count
        self._pollers = pollers
        self._waiting: collections.deque[Stream] = collections.deque()
        self._lock = threading.Lock()

    def run(self, stream: Stream) -> None:
        with self._lock:
            wait = self._free == 0
            if wait:
                self._waiting.append(stream)
            else:
                self._free -= 1
        if wait:
            stream.watch_cancellation()
            return
        self._pollers.leave_for_handler()
        next_stream: Stream | None = stream
        try:
            while next_stream is not None:
                next_stream._process()
                with self._lock:
                    if self._waiting:
                        next_stream = self._waiting.popleft()
                    else:
                        next_stream = None
                        self._free += 1
        finally:
            self._pollers.back_from_handler()


class ServerCore:
    """A gRPC server serving ``methods`` (keyed by path, ``/package.Service/Method``).

    ``handler_slots`` bounds how many calls of ``in_handler_slot`` methods answer at once. The
    pool has ``handler_slots + 1`` threads, of which those not in a handler slot poll the
    completion queue, two at a time (``_Pollers``).
    """

    def __init__(
        self,
        methods: Mapping[str, Method],
        *,
        handler_slots: int,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        check_handler_slots(handler_slots)
        self._methods = {path.encode(): method for path, method in methods.items()}
        self._thread_count = handler_slots + 1
        self._pollers = _Pollers(min(_POLLERS, self._thread_count))
        self._slots = _HandlerSlots(handler_slots, self._pollers)
        self._queue = cygrpc.CompletionQueue()
        self._server = cygrpc.Server(tuple(options), False)
        self._server.register_completion_queue(self._queue)
        # Guards starting operations against the queue's shutdown (an operation started on a
        # queue that is shut down aborts the process in gRPC's core).
        self._lock = threading.Lock()
        self._accepting = False
        self._stopping = False
        self._closed = False
        self._shut_down = threading.Event()
        self._threads: list[threading.Thread] = []

    def add_port(self, address: str) -> int:
        """Listen on ``host:port`` (port 0 picks one); returns the port, 0 when it cannot bind."""
        port: int = self._server.add_http2_port(address.encode())
        return port

    def start(self) -> None:
        self._server.start()
        with self._lock:
            self._accepting = True
            self._request_call_locked()
        for index in range(self._thread_count):
            thread = threading.Thread(target=self._poll, name=f"chalk-grpc-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = _SHUTDOWN_WAIT_S) -> bool:
        """Cancel every call and stop within about ``timeout_s``; False when a thread still
        runs a handler then, or gRPC's core did not finish shutting down (those threads are
        daemons: the process leaves without them)."""
        give_up = time.monotonic() + timeout_s
        with self._lock:
            if self._stopping or not self._threads:
                return True
            self._stopping = True
            self._accepting = False
            self._server.shutdown(self._queue, self._on_shut_down)
            self._server.cancel_all_calls()
        if not self._shut_down.wait(timeout_s):
            logger.warning("gRPC did not finish shutting down within %ss", timeout_s)
            return False
        with self._lock:
            self._closed = True
            self._queue.shutdown()
        self._pollers.close()
        for thread in self._threads:
            thread.join(max(0.0, give_up - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            # A handler still runs in its thread; the process leaves without it.
            return False
        self._server.destroy()
        return True

    def start_batch(self, call: Any, operations: Sequence[Any], tag: Callable[[Any], None]) -> bool:
        """Start ``operations`` on ``call``; ``tag(event)`` runs on their completion.

        False when nothing was started: the core is shut down, the call is gone, or gRPC
        refused the batch (a bug of ours, logged: an operation of that type already pending).
        """
        with self._lock:
            if self._closed or call is None:
                return False
            try:
                error: int = call.start_server_batch(operations, tag)
            except Exception:
                logger.exception("gRPC refused a batch of %d operations", len(operations))
                return False
        if error:
            logger.error("gRPC refused a batch of %d operations: error %d", len(operations), error)
            return False
        return True

    def run(self, stream: Stream) -> None:
        if stream.in_handler_slot:
            self._slots.run(stream)
        else:
            stream._process()

    def _request_call_locked(self) -> None:
        if self._accepting:
            self._server.request_call(self._queue, self._queue, self._on_new_call)

    def _on_new_call(self, event: Any) -> None:
        with self._lock:
            self._request_call_locked()
        if not event.success:
            return
        path: bytes = event.call_details.method
        method = path.decode("utf-8", "replace")
        stream = Stream(self, event.call, method, event.invocation_metadata)
        stream._begin(self._methods.get(path))

    def _on_shut_down(self, event: Any) -> None:
        self._shut_down.set()

    def _poll(self) -> None:
        queue = self._queue
        pollers = self._pollers
        while True:
            pollers.wait_turn()
            event = queue.poll()
            if event.completion_type == cygrpc.CompletionType.queue_shutdown:
                return
            tag = event.tag
            if tag is not None:
                try:
                    tag(event)
                except BaseException:
                    logger.exception("a gRPC event could not be handled")
            # Drop the event (and the call it may hold) before waiting again.
            event = tag = None
            pollers.polled()
