"""The model runtime: serves ``RemoteCallService`` by running ``handler(event, context)``.

``chalk-remote-call`` (``chalk.shim.cli``) builds a ``ServerConfig`` and calls ``serve``; tests
and embedders may call ``run_server`` on their own event loop.

The gRPC server is by default ``chalk.shim._core``: the ``workers`` threads that run handlers
are the ones polling gRPC's completion queue, so the thread that receives a call's message runs
the handler and sends the answer, crossing no thread on the way (grpcio's own servers cost 1.3
to 1.8 times the reference runtime's whole one-row call; bench/README.md). ``--server-core
grpcio`` serves the same methods on grpcio's public API instead (``chalk.shim._grpcio_core``).
The event loop that ``run_server`` runs on only drives the lifecycle (startup, drain,
shutdown) and awaits ``async def`` handlers.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import grpc
import pyarrow as pa
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from chalk.shim._codec import DecodeError, Request, decode_request, encode_response
from chalk.shim._core import ServerCore
from chalk.shim._grpcio_core import GrpcioServerCore
from chalk.shim._methods import Abort, CallStream, Core, Method, Responder
from chalk.shim._services import Health, reflection_methods
from chalk.shim._wire import SERVICE_NAME, channel_options, pool
from chalk.shim.arrow_io import (
    InputArgsError,
    iter_batches,
    name_columns,
    result_batch,
    stream_pieces,
)
from chalk.shim.config import SERVER_CORES, ServerConfig
from chalk.shim.errors import error_payload
from chalk.shim.loader import Hooks, load_hooks
from chalk.shim.metrics import ServerMetrics

__all__ = ["RemoteCallServicer", "ServerConfig", "run_server", "serve"]

logger = logging.getLogger("chalk.shim.server")

_SERVING: Final = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING
_HEALTH_NAMES: Final = ("", SERVICE_NAME)
_CALL_FUNCTION: Final = f"/{SERVICE_NAME}/CallFunction"
# Leading traceback frames that belong to the dispatch, not to the handler: ours, and those of
# the futures an ``async def`` handler's result travels back through.
_DISPATCH_MODULES: Final = frozenset(
    {__name__, "asyncio.futures", "asyncio.tasks", "concurrent.futures._base"}
)
# glibc mallopt parameters (malloc.h) and the values the runtime sets.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_TRIM_THRESHOLD_BYTES: Final = 1 << 30
_MMAP_THRESHOLD_BYTES: Final = 1 << 28


class _CallFailed(Abort):
    """Ends one call with a status code and the JSON error payload as details."""

    def __init__(self, code: grpc.StatusCode, error: BaseException, handler_tb: Any) -> None:
        super().__init__(code, error_payload(error, handler_tb))
        self.kind = type(error).__name__


class RemoteCallServicer:
    """Answers each record batch of each request message with one ``result`` batch.

    A call's messages are answered in a handler slot of the server core; an ``async def``
    handler is awaited on ``loop`` while that thread waits for it.
    """

    def __init__(
        self,
        hooks: Hooks,
        *,
        input_args: tuple[str, ...] | None,
        metrics: ServerMetrics,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._handler = hooks.handler
        self._input_args = input_args
        self._metrics = metrics
        self._loop = loop
        self._lock = threading.Lock()
        self._in_flight = 0
        self._draining = False
        self._idle = threading.Event()

    @property
    def in_flight(self) -> int:
        """Calls being served right now."""
        return self._in_flight

    def start_draining(self) -> None:
        """Refuse new calls with UNAVAILABLE (callers retry elsewhere); running ones go on."""
        with self._lock:
            self._draining = True
            if self._in_flight == 0:
                self._idle.set()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no call is in flight after ``start_draining``; False on timeout."""
        return self._idle.wait(timeout_s)

    def method(self) -> Method:
        """``CallFunction`` for the server core."""
        return Method(self._open, in_handler_slot=True)

    def _open(self, stream: CallStream) -> Responder:
        if not self._enter():
            # Refusing runs no user code, so it does not wait for a handler slot.
            stream.in_handler_slot = False
            return _Refused()
        return _Call(self, stream)

    def _enter(self) -> bool:
        with self._lock:
            if self._draining:
                return False
            self._in_flight += 1
        self._metrics.call_started()
        return True

    def _leave(self) -> None:
        self._metrics.call_ended()
        with self._lock:
            self._in_flight -= 1
            if self._draining and self._in_flight == 0:
                self._idle.set()

    def _answer(self, stream: memoryview, handler_context: dict[str, Any]) -> list[bytes]:
        responses = []
        for batch in self._decode(stream):
            event = self._event(batch)
            started = time.perf_counter()
            try:
                value = self._handler(event, handler_context)
                if inspect.isawaitable(value):
                    value = asyncio.run_coroutine_threadsafe(_awaited(value), self._loop).result()
            except BaseException as error:
                # A handler's SystemExit fails its call, like any other exception of its own.
                raise _CallFailed(grpc.StatusCode.UNKNOWN, error, _below_us(error)) from error
            responses.append(self._respond(value, batch.num_rows, started))
        return responses

    def _respond(self, value: Any, num_rows: int, started: float) -> bytes:
        self._metrics.batch_handled(rows=num_rows, seconds=time.perf_counter() - started)
        try:
            pieces = stream_pieces(result_batch(value, num_rows))
        except Exception as error:
            raise _CallFailed(grpc.StatusCode.UNKNOWN, error, None) from error
        return encode_response(*pieces)

    def _decode(self, stream: memoryview) -> list[pa.RecordBatch]:
        try:
            return list(iter_batches(stream))
        except pa.ArrowException as error:
            raise _CallFailed(grpc.StatusCode.INVALID_ARGUMENT, error, None) from error

    def _event(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        try:
            names = name_columns(batch.schema.names, self._input_args)
        except InputArgsError as error:
            raise _CallFailed(grpc.StatusCode.INVALID_ARGUMENT, error, None) from error
        return dict(zip(names, batch.columns, strict=True))


class _Call:
    """One ``CallFunction`` call: its messages, answered in order."""

    def __init__(self, servicer: RemoteCallServicer, stream: CallStream) -> None:
        self._servicer = servicer
        self._stream = stream
        self._context: dict[str, Any] | None = None

    def message(self, data: bytes) -> list[bytes]:
        request = _checked_request(data)
        if self._context is None:
            self._context = _handler_context(request.name, self._stream)
        try:
            return self._servicer._answer(request.feather_stream, self._context)
        except _CallFailed as failure:
            self._servicer._metrics.call_failed(failure.kind)
            raise

    def end_of_input(self) -> bool:
        return True

    def closed(self) -> None:
        self._servicer._leave()


class _Refused:
    """A call that arrived while draining: its input is taken off the wire, then UNAVAILABLE.

    Refusing while the client still sends makes some clients see a reset stream (INTERNAL)
    instead of this status.
    """

    def message(self, data: bytes) -> list[bytes]:
        return []

    def end_of_input(self) -> bool:
        raise Abort(grpc.StatusCode.UNAVAILABLE, "the model replica is shutting down")

    def closed(self) -> None:
        pass


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _below_us(error: BaseException) -> TracebackType | None:
    # The handler's own frames: what follows the dispatch frames at the top of the traceback.
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in _DISPATCH_MODULES:
        tb = tb.tb_next
    return tb


def _handler_context(name: str, stream: CallStream) -> dict[str, Any]:
    return {
        "function_name": name,
        "peer": _peer_address(stream.peer()),
        "metadata": dict(stream.metadata),
    }


def _checked_request(data: bytes) -> Request:
    try:
        return decode_request(data)
    except DecodeError as error:
        logger.warning("a request was not a CallFunctionRequest", exc_info=True)
        raise Abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"expected a chalk.runtime.v1.CallFunctionRequest, got undecodable bytes: {error}",
        ) from error


def _peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1:5000``, the form the reference runtime passes."""
    scheme, _, address = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        return urllib.parse.unquote(address)
    return peer


@dataclass(slots=True)
class _Runtime:
    """The gRPC server core and its services, built and torn down together."""

    core: Core
    servicer: RemoteCallServicer
    health: Health

    def set_health(self, status: int) -> None:
        self.health.set(_HEALTH_NAMES, status)

    def stop(self) -> None:
        # A handler running past the grace period holds its call, so gRPC cannot finish
        # shutting down; the process leaves without it (``serve``).
        self.core.stop(timeout_s=5.0 if self.servicer.in_flight == 0 else 0.2)


def _build_runtime(config: ServerConfig, hooks: Hooks, metrics: ServerMetrics) -> _Runtime:
    servicer = RemoteCallServicer(
        hooks, input_args=config.input_args, metrics=metrics, loop=asyncio.get_running_loop()
    )
    health_service = Health()
    methods = {
        _CALL_FUNCTION: servicer.method(),
        **health_service.methods(),
        **reflection_methods((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), pool),
    }
    core = _new_core(config.server_core, methods, handler_slots=config.workers)
    runtime = _Runtime(core, servicer, health_service)
    runtime.set_health(_NOT_SERVING)
    return runtime


def _new_core(name: str, methods: Mapping[str, Method], *, handler_slots: int) -> Core:
    """The server core ``name`` (``ServerConfig.server_core``) serving ``methods``."""
    options = channel_options()
    if name == "grpcio":
        return GrpcioServerCore(methods, handler_slots=handler_slots, options=options)
    if name == "cython":
        return ServerCore(methods, handler_slots=handler_slots, options=options)
    raise ValueError(f"unknown server core {name!r}: expected one of {', '.join(SERVER_CORES)}")


async def run_server(
    config: ServerConfig,
    hooks: Hooks,
    *,
    stop: asyncio.Event,
    on_bound: Callable[[int], None] | None = None,
) -> int:
    """Serve until ``stop`` is set, then drain; returns the process exit code."""
    code, _abandoned = await _run(config, hooks, stop=stop, on_bound=on_bound)
    return code


async def _run(
    config: ServerConfig,
    hooks: Hooks,
    *,
    stop: asyncio.Event,
    on_bound: Callable[[int], None] | None,
) -> tuple[int, int]:
    """The exit code, and how many calls were still running in handler threads at the end."""
    metrics = ServerMetrics()
    runtime = _build_runtime(config, hooks, metrics)
    port = runtime.core.add_port(f"{config.host}:{config.port}")
    if port == 0:
        logger.error("cannot listen on %s:%s", config.host, config.port)
        return 1, 0
    runtime.core.start()
    logger.info("listening on %s:%d", config.host, port, extra={"port": port})
    if on_bound is not None:
        on_bound(port)
    try:
        if config.metrics_port is not None:
            metrics_port = metrics.serve(_metrics_host(config.host), config.metrics_port)
            logger.info("metrics on port %d", metrics_port, extra={"metrics_port": metrics_port})
        if not await _run_hook(hooks.on_startup, "on_startup"):
            return 1, 0
        runtime.set_health(_SERVING)
        logger.info("serving", extra={"handler": config.handler})
        await stop.wait()
        logger.info("draining", extra={"in_flight": runtime.servicer.in_flight})
        # Calls are refused before health says so: a client that saw NOT_SERVING is refused.
        runtime.servicer.start_draining()
        runtime.health.enter_graceful_shutdown()
        await _drain(runtime.servicer, config.grace_period_s)
    finally:
        await asyncio.to_thread(runtime.stop)
    if not await _run_hook(hooks.on_shutdown, "on_shutdown"):
        return 1, runtime.servicer.in_flight
    logger.info("stopped")
    return 0, runtime.servicer.in_flight


def serve(config: ServerConfig) -> int:
    """Load the handler, serve until SIGTERM or SIGINT, drain; returns the exit code."""
    try:
        hooks = load_hooks(config.handler, config.on_startup, config.on_shutdown)
    except Exception:
        logger.exception("cannot load the handler %r", config.handler)
        return 1
    _retain_freed_memory()
    code, abandoned = asyncio.run(_serve_until_signalled(config, hooks))
    if abandoned:
        # A handler still running past the grace period would hold the interpreter's exit up
        # (it joins pool threads), so leave without waiting for it.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


async def _serve_until_signalled(config: ServerConfig, hooks: Hooks) -> tuple[int, int]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await _run(config, hooks, stop=stop, on_bound=None)


async def _run_hook(hook: Callable[[], Any] | None, name: str) -> bool:
    if hook is None:
        return True
    try:
        if inspect.iscoroutinefunction(hook):
            await hook()
        else:
            # Off the loop, so that the loop stays free for async handlers' awaits.
            result = await asyncio.to_thread(hook)
            if inspect.isawaitable(result):
                await result
    except Exception:
        logger.exception("%s failed", name)
        return False
    return True


async def _drain(servicer: RemoteCallServicer, grace_period_s: float) -> None:
    if not await asyncio.to_thread(servicer.wait_idle, grace_period_s):
        logger.warning(
            "grace period of %ss ended with calls still in flight; cancelling them",
            grace_period_s,
            extra={"in_flight": servicer.in_flight},
        )


def _retain_freed_memory() -> None:
    """Keep freed heap in the process instead of trimming it after every large call.

    Otherwise glibc hands the pages of each call's payload back to the kernel and the next
    call faults them in again: on 1M-row calls that was over half the server's CPU
    (bench/README.md). The cost is that the process keeps its peak heap. No-op off glibc.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def _metrics_host(grpc_host: str) -> str:
    host = grpc_host.strip("[]")
    return host or "::"
