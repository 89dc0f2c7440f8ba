"""The runtime's gRPC server core on grpcio's public API: ``grpc.server`` with a generic handler.

``chalk.shim.server`` uses it under ``--server-core grpcio`` (env
``CHALK_REMOTE_CALL_SERVER_CORE``): the fallback for a grpcio release whose Cython internals no
longer fit ``chalk.shim._core``. It serves the same ``Method``s with the same behaviour (handler
slots, cancellation, health Watch, draining), at the cost of grpcio's synchronous server: each
open call holds a pool thread, and each event crosses from gRPC's polling thread to it (bench:
1-row p50 about 1.3 times the Cython core's, server CPU per 1-row call about 1.7 times). Past
``workers + _SPARE_THREADS`` open calls, new ones (health checks too) wait for a thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import grpc

from chalk.shim._methods import Abort, Method, Responder, check_handler_slots, failure_details

__all__ = ["GrpcioServerCore"]

logger = logging.getLogger("chalk.shim.server")

_SHUTDOWN_WAIT_S: Final = 5.0
# How long stop lets calls whose handler is done finish sending (``GrpcioServerCore.stop``).
_FINISH_GRACE_S: Final = 1.0
# Pool threads beyond the handler slots: an open call holds one while it waits for its client,
# for a slot, or for news (a health Watch), so health checks need threads of their own.
_SPARE_THREADS: Final = 32
# Marks, in a call's queue of answers, that the call is over.
_OVER: Final = object()


class _Slots:
    """At most ``count`` calls answer in handler slots at once; the others wait in order, and a
    call that ends while waiting leaves the line without ever taking a slot."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._line: list[_Call] = []
        self._changed = threading.Condition(threading.Lock())

    def take(self, call: _Call) -> bool:
        """Wait for a slot; False when the call ended first."""
        with self._changed:
            self._line.append(call)
            while not call.over and (self._free == 0 or self._line[0] is not call):
                self._changed.wait()
            self._line.remove(call)
            if not call.over:
                self._free -= 1
            # The next in line may go now (a slot is free) or must learn that it moved up.
            self._changed.notify_all()
            return not call.over

    def give_back(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()

    def wake(self) -> None:
        """A call ended: waiters look again whether it was theirs."""
        with self._changed:
            self._changed.notify_all()


class _Call:
    """One call as its responder sees it (``CallStream``), on a ``grpc.ServicerContext``.

    ``closed`` runs once the call is over and the thread serving it has left it, as on the
    Cython core: until then a handler may still be running, and the runtime counts it.
    """

    def __init__(self, method: str, context: grpc.ServicerContext, slots: _Slots) -> None:
        self.method = method
        self.metadata: tuple[Any, ...] = tuple(context.invocation_metadata() or ())
        self.in_handler_slot = False
        self.over = False
        self._context = context
        self._slots = slots
        self._answers: queue.SimpleQueue[bytes | object] = queue.SimpleQueue()

    def peer(self) -> str:
        return str(self._context.peer())

    def send(self, data: bytes) -> None:
        if not self.over:
            self._answers.put(data)

    def on_terminated(self) -> None:
        """grpcio's callback: the call ended (status sent, cancelled, deadline, shutdown)."""
        self.over = True
        self._answers.put(_OVER)
        self._slots.wake()

    def sent_meanwhile(self) -> Iterator[bytes]:
        """Answers sent from other threads (``send``) since last asked."""
        while True:
            try:
                data = self._answers.get_nowait()
            except queue.Empty:
                return
            if not isinstance(data, bytes):  # _OVER
                return
            yield data

    def sent_later(self) -> Iterator[bytes]:
        """Answers sent from other threads until the call is over."""
        if self.over:  # _OVER may be taken already (``sent_meanwhile``)
            yield from self.sent_meanwhile()
            return
        while isinstance(data := self._answers.get(), bytes):
            yield data


class GrpcioServerCore:
    """A gRPC server serving ``methods`` (keyed by path) on ``grpc.server``.

    ``handler_slots`` bounds how many calls of ``in_handler_slot`` methods answer at once; the
    pool has ``_SPARE_THREADS`` more threads for calls waiting for their client, a slot or news.
    """

    def __init__(
        self,
        methods: Mapping[str, Method],
        *,
        handler_slots: int,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        check_handler_slots(handler_slots)
        self._slots = _Slots(handler_slots)
        self._pool = ThreadPoolExecutor(
            max_workers=handler_slots + _SPARE_THREADS, thread_name_prefix="chalk-grpcio"
        )
        handlers = {path: self._handler(path, method) for path, method in methods.items()}
        self._server = grpc.server(self._pool, handlers=[_ByPath(handlers)], options=tuple(options))
        self._started = False

    def add_port(self, address: str) -> int:
        """Listen on ``host:port`` (port 0 picks one); returns the port, 0 when it cannot bind."""
        try:
            port: int = self._server.add_insecure_port(address)
        except RuntimeError:
            return 0
        return port

    def start(self) -> None:
        self._server.start()
        self._started = True

    def stop(self, timeout_s: float = _SHUTDOWN_WAIT_S) -> bool:
        """Cancel every call and stop within about ``timeout_s``; False when gRPC did not
        finish by then (a handler still runs: the process leaves without it).

        A call whose handler is done may still be sending its status (its generator closes,
        and the servicer counts it out, before grpcio writes the status): a short grace lets
        it end OK instead of "Cancelling all calls"; only calls still running past it are
        cancelled."""
        if not self._started:
            return True
        self._started = False
        grace_s = min(_FINISH_GRACE_S, timeout_s / 2)
        done = self._server.stop(grace=grace_s).wait(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not done:
            logger.warning("gRPC did not finish shutting down within %ss", timeout_s)
        return bool(done)

    def _handler(self, path: str, method: Method) -> grpc.RpcMethodHandler:
        def serve(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            call = _Call(path, context, self._slots)
            if not context.add_callback(call.on_terminated):
                call.on_terminated()  # over already
            call.in_handler_slot = method.in_handler_slot
            try:
                responder = method.open(call)
            except Abort as abort:
                _end(context, abort)
                return
            try:
                yield from self._answer(call, responder, requests, context)
            finally:
                # This thread has left the call: a handler no longer runs for it.
                responder.closed()

        return grpc.stream_stream_rpc_method_handler(serve)

    def _answer(
        self,
        call: _Call,
        responder: Responder,
        requests: Iterator[bytes],
        context: grpc.ServicerContext,
    ) -> Iterator[bytes]:
        try:
            for data in _until_cancelled(requests):
                yield from self._answers_to(call, responder, data)
                yield from call.sent_meanwhile()
            if call.over or responder.end_of_input():
                # Over: the client left before half-closing, so its input has no end to handle.
                return
            yield from call.sent_later()
        except Abort as abort:
            yield from call.sent_meanwhile()
            _end(context, abort)
        except Exception:
            logger.exception("answering %s failed", call.method)
            _end(context, Abort(grpc.StatusCode.UNKNOWN, failure_details(call.method)))

    def _answers_to(self, call: _Call, responder: Responder, data: bytes) -> list[bytes]:
        if not call.in_handler_slot:
            return list(responder.message(data))
        if not self._slots.take(call):
            return []
        try:
            return list(responder.message(data))
        except Abort:
            raise
        except BaseException as error:
            # Not only Exception: a SystemExit out of user code must not end the pool thread.
            logger.exception("answering a message of %s failed", call.method)
            raise Abort(grpc.StatusCode.UNKNOWN, failure_details(call.method)) from error
        finally:
            self._slots.give_back()


class _ByPath:
    """Finds a call's method by its path; an unknown path is UNIMPLEMENTED, naming it.

    A ``grpc.GenericRpcHandler`` by its ``service`` method, which is what grpcio checks.
    """

    def __init__(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = dict(handlers)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        path: str = handler_call_details.method
        handler = self._handlers.get(path)
        if handler is None:
            handler = grpc.stream_stream_rpc_method_handler(_unimplemented(path))
        return handler


def _unimplemented(path: str) -> Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]]:
    def serve(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        _end(context, Abort(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {path}"))
        return iter(())

    return serve


def _until_cancelled(requests: Iterator[bytes]) -> Iterator[bytes]:
    """The request messages; stops quietly when the client cancels (grpcio raises then)."""
    try:
        yield from requests
    except grpc.RpcError:
        return


def _end(context: grpc.ServicerContext, abort: Abort) -> None:
    """End the call with the status ``abort`` names, after the answers already given."""
    context.set_code(abort.code)
    context.set_details(abort.details)
