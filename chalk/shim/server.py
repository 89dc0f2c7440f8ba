"""The model runtime: serves ``RemoteCallService`` by running ``handler(event, context)``.

``chalk-remote-call`` (``chalk.shim.cli``) builds a ``ServerConfig`` and calls ``serve``; tests
and embedders may call ``run_server`` on their own event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
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
    encode_batch,
    iter_batches,
    name_columns,
    result_batch,
)
from chalk.shim.errors import error_payload
from chalk.shim.loader import Hooks, load_hooks
from chalk.shim.metrics import ServerMetrics
from chalk.shim.pool import HandlerPool

__all__ = ["RemoteCallServicer", "ServerConfig", "run_server", "serve"]

logger = logging.getLogger("chalk.shim.server")

_SERVING: Final = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING
_HEALTH_NAMES: Final = ("", _wire.SERVICE_NAME)
# glibc mallopt parameters (malloc.h) and the values the runtime sets.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_TRIM_THRESHOLD_BYTES: Final = 1 << 30
_MMAP_THRESHOLD_BYTES: Final = 1 << 28


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``chalk-remote-call`` takes from its flags and environment."""

    handler: str
    host: str = "[::]"
    port: int = 6666
    workers: int = 10
    on_startup: str | None = None
    on_shutdown: str | None = None
    grace_period_s: float = 30.0
    metrics_port: int | None = None
    input_args: tuple[str, ...] | None = None
    log_level: str = "INFO"


class _CallFailed(Exception):
    """Ends one call with a status code and the JSON error payload as details."""

    def __init__(self, code: grpc.StatusCode, error: BaseException, handler_tb: Any) -> None:
        super().__init__(str(error))
        self.code = code
        self.kind = type(error).__name__
        self.details = error_payload(error, handler_tb)


class RemoteCallServicer:
    """Answers each record batch of each request message with one ``result`` batch."""

    def __init__(
        self,
        hooks: Hooks,
        *,
        input_args: tuple[str, ...] | None,
        pool: HandlerPool,
        metrics: ServerMetrics,
    ) -> None:
        self._handler = hooks.handler
        self._handler_is_async = inspect.iscoroutinefunction(hooks.handler)
        self._input_args = input_args
        self._pool = pool
        self._metrics = metrics
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def in_flight(self) -> int:
        """Calls being served right now."""
        return self._in_flight

    def start_draining(self) -> None:
        """Refuse new calls with UNAVAILABLE (callers retry elsewhere); running ones go on."""
        self._draining = True

    async def wait_idle(self) -> None:
        """Return once no call is in flight."""
        await self._idle.wait()

    async def CallFunction(
        self,
        requests: AsyncIterator[Request],
        context: grpc.aio.ServicerContext,
    ) -> None:
        # context.read()/write() rather than an async generator: fewer event-loop turns per
        # call, which is most of a one-row call's cost (bench/README.md).
        if self._draining:
            # Take the request off the wire first: aborting while the client still sends makes
            # some clients see a reset stream (INTERNAL) instead of this status.
            while await context.read() is not grpc.aio.EOF:
                pass
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model replica is shutting down")
        self._loop = asyncio.get_running_loop()
        self._enter()
        try:
            handler_context: dict[str, Any] | None = None
            while (request := await context.read()) is not grpc.aio.EOF:
                if handler_context is None:
                    handler_context = _handler_context(request.name, context)
                for response in await self._answer(request.feather_stream, handler_context):
                    await context.write(response)
        except _CallFailed as failure:
            self._metrics.errors.labels(failure.kind).inc()
            await context.abort(failure.code, failure.details)
        finally:
            self._leave()

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()
        self._metrics.calls.inc()
        self._metrics.in_flight.inc()

    def _leave(self) -> None:
        self._in_flight -= 1
        self._metrics.in_flight.dec()
        if self._in_flight == 0:
            self._idle.set()

    async def _answer(self, stream: memoryview, handler_context: dict[str, Any]) -> list[bytes]:
        if self._handler_is_async:
            return [
                await self._respond_async(batch, handler_context) for batch in self._decode(stream)
            ]
        responses: list[bytes] = await self._pool.run(self._answer_sync, stream, handler_context)
        return responses

    def _answer_sync(self, stream: memoryview, handler_context: dict[str, Any]) -> list[bytes]:
        responses = []
        for batch in self._decode(stream):
            event = self._event(batch)
            started = time.perf_counter()
            try:
                value = self._handler(event, handler_context)
                if inspect.isawaitable(value):
                    value = self._await_on_loop(value)
            except Exception as error:
                raise _CallFailed(grpc.StatusCode.UNKNOWN, error, _below_us(error)) from error
            responses.append(self._respond(value, batch.num_rows, started))
        return responses

    async def _respond_async(self, batch: pa.RecordBatch, handler_context: dict[str, Any]) -> bytes:
        event = self._event(batch)
        started = time.perf_counter()
        try:
            value = await self._handler(event, handler_context)
        except Exception as error:
            raise _CallFailed(grpc.StatusCode.UNKNOWN, error, _below_us(error)) from error
        return self._respond(value, batch.num_rows, started)

    def _respond(self, value: Any, num_rows: int, started: float) -> bytes:
        self._metrics.handler_seconds.observe(time.perf_counter() - started)
        self._metrics.rows.inc(num_rows)
        try:
            stream = encode_batch(result_batch(value, num_rows))
        except Exception as error:
            raise _CallFailed(grpc.StatusCode.UNKNOWN, error, None) from error
        return encode_response(stream)

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

    def _await_on_loop(self, awaitable: Any) -> Any:
        assert self._loop is not None  # set by CallFunction before any work is handed out
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), self._loop).result()


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _below_us(error: BaseException) -> TracebackType | None:
    # The first frame is the dispatch frame that called the handler; the rest are the handler's.
    tb = error.__traceback__
    return tb.tb_next if tb is not None else None


def _handler_context(name: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
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


async def run_server(
    config: ServerConfig,
    hooks: Hooks,
    *,
    stop: asyncio.Event,
    on_bound: Callable[[int], None] | None = None,
) -> int:
    """Serve until ``stop`` is set, then drain; returns the process exit code."""
    metrics = ServerMetrics()
    pool = HandlerPool(config.workers)
    server = grpc.aio.server(options=_wire.channel_options())
    servicer = RemoteCallServicer(hooks, input_args=config.input_args, pool=pool, metrics=metrics)
    health_servicer = health.aio.HealthServicer()
    _add_services(server, servicer, health_servicer)
    for name in _HEALTH_NAMES:
        await health_servicer.set(name, _NOT_SERVING)
    try:
        port = server.add_insecure_port(f"{config.host}:{config.port}")
    except RuntimeError:
        logger.exception("cannot listen on %s:%s", config.host, config.port)
        return 1
    await server.start()
    logger.info("listening on %s:%d", config.host, port, extra={"port": port})
    if on_bound is not None:
        on_bound(port)
    try:
        if config.metrics_port is not None:
            metrics_port = metrics.serve(_metrics_host(config.host), config.metrics_port)
            logger.info("metrics on port %d", metrics_port, extra={"metrics_port": metrics_port})
        if not await _run_hook(hooks.on_startup, "on_startup"):
            return 1
        for name in _HEALTH_NAMES:
            await health_servicer.set(name, _SERVING)
        logger.info("serving", extra={"handler": config.handler})
        await stop.wait()
        logger.info("draining", extra={"in_flight": servicer.in_flight})
        await health_servicer.enter_graceful_shutdown()
        servicer.start_draining()
        await _drain(servicer, config.grace_period_s)
    finally:
        await server.stop(0)
        pool.close()
    if not await _run_hook(hooks.on_shutdown, "on_shutdown"):
        return 1
    logger.info("stopped")
    return 0


def serve(config: ServerConfig) -> int:
    """Load the handler, serve until SIGTERM or SIGINT, drain; returns the exit code."""
    try:
        hooks = load_hooks(config.handler, config.on_startup, config.on_shutdown)
    except Exception:
        logger.exception("cannot load the handler %r", config.handler)
        return 1
    _retain_freed_memory()
    return asyncio.run(_serve_until_signalled(config, hooks))


async def _serve_until_signalled(config: ServerConfig, hooks: Hooks) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await run_server(config, hooks, stop=stop)


def _add_services(
    server: grpc.aio.Server,
    servicer: RemoteCallServicer,
    health_servicer: health.aio.HealthServicer,
) -> None:
    # Responses are serialised by the servicer itself (encode_response), so no serializer.
    method = grpc.stream_stream_rpc_method_handler(
        servicer.CallFunction, request_deserializer=_checked_request
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
            # Off the loop, so health checks are answered while a model loads.
            result = await asyncio.get_running_loop().run_in_executor(None, hook)
            if inspect.isawaitable(result):
                await result
    except Exception:
        logger.exception("%s failed", name)
        return False
    return True


async def _drain(servicer: RemoteCallServicer, grace_period_s: float) -> None:
    try:
        await asyncio.wait_for(servicer.wait_idle(), timeout=grace_period_s)
    except TimeoutError:
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
