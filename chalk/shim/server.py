"""The model runtime: serves ``RemoteCallService`` by running ``handler(event, context)``.

``chalk-remote-call`` (``chalk.shim.cli``) builds a ``ServerConfig`` and calls ``serve``; tests
and embedders may call ``run_server`` on their own event loop.

The gRPC server is grpcio's synchronous one: each call runs start to end in one thread of a pool
of ``workers`` threads, which is also where the handler runs, so a call crosses no thread or
event loop of ours on its way (grpcio's asyncio server cost about 1.4 times the reference
runtime's whole one-row call; bench/README.md). The event loop that ``run_server`` runs on only
drives the lifecycle (startup, drain, shutdown) and awaits ``async def`` handlers.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import inspect
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import grpc
import pyarrow as pa
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chalk.shim import _wire
from chalk.shim._codec import DecodeError, Request, decode_request, encode_response
from chalk.shim.arrow_io import (
    InputArgsError,
    iter_batches,
    name_columns,
    result_batch,
    stream_pieces,
)
from chalk.shim.config import ServerConfig
from chalk.shim.errors import error_payload
from chalk.shim.loader import Hooks, load_hooks
from chalk.shim.metrics import ServerMetrics

__all__ = ["RemoteCallServicer", "ServerConfig", "run_server", "serve"]

logger = logging.getLogger("chalk.shim.server")

_SERVING: Final = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING
_HEALTH_NAMES: Final = ("", _wire.SERVICE_NAME)
# Threads for health checks and reflection, apart from the handler's: they answer while every
# handler thread is busy.
_CONTROL_THREADS: Final = 2
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


class _CallFailed(Exception):
    """Ends one call with a status code and the JSON error payload as details."""

    def __init__(self, code: grpc.StatusCode, error: BaseException, handler_tb: Any) -> None:
        super().__init__(str(error))
        self.code = code
        self.kind = type(error).__name__
        self.details = error_payload(error, handler_tb)


class RemoteCallServicer:
    """Answers each record batch of each request message with one ``result`` batch.

    ``CallFunction`` runs in a gRPC pool thread; an ``async def`` handler is awaited on
    ``loop`` while that thread waits for it.
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

    def CallFunction(
        self, requests: Iterator[Request], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        if not self._enter():
            # Take the request off the wire first: aborting while the client still sends makes
            # some clients see a reset stream (INTERNAL) instead of this status.
            for _ in requests:
                pass
            context.abort(grpc.StatusCode.UNAVAILABLE, "the model replica is shutting down")
        try:
            handler_context: dict[str, Any] | None = None
            for request in requests:
                if handler_context is None:
                    handler_context = _handler_context(request.name, context)
                yield from self._answer(request.feather_stream, handler_context)
        except _CallFailed as failure:
            self._metrics.call_failed(failure.kind)
            context.abort(failure.code, failure.details)
        finally:
            self._leave()

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
            except Exception as error:
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


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _below_us(error: BaseException) -> TracebackType | None:
    # The handler's own frames: what follows the dispatch frames at the top of the traceback.
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in _DISPATCH_MODULES:
        tb = tb.tb_next
    return tb


def _handler_context(name: str, context: grpc.ServicerContext) -> dict[str, Any]:
    metadata = context.invocation_metadata() or ()
    return {
        "function_name": name,
        "peer": _peer_address(context.peer()),
        "metadata": {item.key: item.value for item in metadata},
    }


def _checked_request(data: bytes) -> Request:
    try:
        return decode_request(data)
    except DecodeError:
        logger.warning("a request was not a CallFunctionRequest", exc_info=True)
        raise


def _peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1:5000``, the form the reference runtime passes."""
    scheme, _, address = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        return urllib.parse.unquote(address)
    return peer


@dataclass(slots=True)
class _Runtime:
    """The gRPC server, its thread pools and servicers, built and torn down together."""

    server: grpc.Server
    servicer: RemoteCallServicer
    health: health.HealthServicer
    pools: tuple[ThreadPoolExecutor, ...]

    def set_health(self, status: int) -> None:
        for name in _HEALTH_NAMES:
            self.health.set(name, status)

    def stop(self) -> None:
        self.server.stop(0).wait()
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)


def _build_runtime(config: ServerConfig, hooks: Hooks, metrics: ServerMetrics) -> _Runtime:
    control_pool = ThreadPoolExecutor(_CONTROL_THREADS, thread_name_prefix="chalk-grpc")
    handler_pool = ThreadPoolExecutor(config.workers, thread_name_prefix="chalk-handler")
    server = grpc.server(control_pool, options=_wire.channel_options())
    servicer = RemoteCallServicer(
        hooks, input_args=config.input_args, metrics=metrics, loop=asyncio.get_running_loop()
    )
    health_servicer = health.HealthServicer()
    _add_services(server, servicer, health_servicer, handler_pool)
    runtime = _Runtime(server, servicer, health_servicer, (handler_pool, control_pool))
    runtime.set_health(_NOT_SERVING)
    return runtime


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
    try:
        port = runtime.server.add_insecure_port(f"{config.host}:{config.port}")
    except RuntimeError:
        logger.exception("cannot listen on %s:%s", config.host, config.port)
        runtime.stop()
        return 1, 0
    runtime.server.start()
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
        runtime.health.enter_graceful_shutdown()
        runtime.servicer.start_draining()
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


def _add_services(
    server: grpc.Server,
    servicer: RemoteCallServicer,
    health_servicer: health.HealthServicer,
    handler_pool: ThreadPoolExecutor,
) -> None:
    # grpcio runs a method in the pool its behaviour names as experimental_thread_pool; the
    # partial carries it so that health and reflection keep the server's own pool.
    call_function = functools.partial(servicer.CallFunction)
    call_function.experimental_thread_pool = handler_pool  # type: ignore[attr-defined]
    # Responses are serialised by the servicer itself (encode_response), so no serializer.
    method = grpc.stream_stream_rpc_method_handler(
        call_function, request_deserializer=_checked_request
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(_wire.SERVICE_NAME, {"CallFunction": method}),)
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (_wire.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server, pool=_wire.pool
    )


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
