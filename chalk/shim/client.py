"""The asyncio client the engine uses to call model runtimes (ours or the reference).

One channel per endpoint, reused across calls. Each call carries exactly one request message,
since the reference runtime serves only the first message of a stream; inputs larger than
``max_request_bytes`` are split into several calls whose results are re-joined in row order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc
import pyarrow as pa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chalk.shim._codec import decode_response, encode_request
from chalk.shim._wire import CALL_FUNCTION_METHOD, channel_options
from chalk.shim.arrow_io import ResultShapeError, decode_result, stream_pieces, to_record_batch
from chalk.shim.errors import (
    RemoteCallError,
    RemoteHandlerError,
    TransportError,
    parse_error_payload,
)

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "RemoteCallClient",
    "health_status",
    "split_batch",
    "wait_until_serving",
]

DEFAULT_MAX_REQUEST_BYTES: Final = 64 << 20
DEFAULT_DEADLINE_S: Final = 120.0
# Codes that mean the call did not reach (or did not finish in) a handler, so another replica
# may take it. INTERNAL without our payload is a reset stream, e.g. a replica killed mid-call;
# CANCELLED from the server is a replica stopping with the call still running (its grace
# period passed; a call we cancel ourselves raises asyncio.CancelledError instead).
_TRANSPORT_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
    }
)


def split_batch(batch: pa.RecordBatch, max_bytes: int) -> list[pa.RecordBatch]:
    """Zero-copy row slices of ``batch``, each about ``max_bytes`` or less (at least one row).

    Examples
    --------
    >>> batch = pa.record_batch({"x": pa.array(range(10), pa.int64())})
    >>> [len(part) for part in split_batch(batch, 32)]
    [4, 4, 2]
    """
    if batch.num_rows <= 1 or batch.nbytes <= max_bytes:
        return [batch]
    rows_per_part = max(1, batch.num_rows * max_bytes // batch.nbytes)
    return [
        batch.slice(offset, rows_per_part) for offset in range(0, batch.num_rows, rows_per_part)
    ]


class RemoteCallClient:
    """Calls ``RemoteCallService/CallFunction`` on model runtimes.

    Use one client per event loop: its channels belong to the loop that created them.

    Parameters
    ----------
    max_request_bytes
        Inputs larger than this (Arrow buffer bytes) are split into several calls.
    deadline_s
        Default deadline of each call.
    max_parts_in_flight
        How many parts of one split input are sent at once.
    """

    def __init__(
        self,
        *,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        deadline_s: float = DEFAULT_DEADLINE_S,
        max_parts_in_flight: int = 4,
    ) -> None:
        self._max_request_bytes = max_request_bytes
        self._deadline_s = deadline_s
        self._max_parts_in_flight = max_parts_in_flight
        self._channels: dict[tuple[str, bool], _Channel] = {}
        # Channels dropped while calls were in flight on them: closed when the last ends.
        self._dropped: set[_Channel] = set()
        self._closing: set[asyncio.Task[None]] = set()

    async def call(
        self,
        target: str,
        columns: pa.RecordBatch | Mapping[str, Any],
        *,
        name: str,
        tls: bool = False,
        deadline_s: float | None = None,
    ) -> pa.Array:
        """Send ``columns`` to the runtime at ``target``; returns one result value per row.

        ``target`` is a gRPC target (``127.0.0.1:7001``, ``dns:///svc.ns.svc.cluster.local:80``,
        ``host:443`` with ``tls=True``). Raises ``RemoteHandlerError`` when the handler fails
        and ``TransportError`` when the call could not be served (retry it elsewhere).
        """
        batch = to_record_batch(columns)
        parts = split_batch(batch, self._max_request_bytes)
        deadline = self._deadline_s if deadline_s is None else deadline_s
        if len(parts) == 1:
            return await self._call_once(target, tls, name, batch, deadline)
        limit = asyncio.Semaphore(self._max_parts_in_flight)

        async def call_part(part: pa.RecordBatch) -> pa.Array:
            async with limit:
                return await self._call_once(target, tls, name, part, deadline)

        tasks = [asyncio.ensure_future(call_part(part)) for part in parts]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return _concat(list(results), target)

    def drop(self, target: str, *, tls: bool = False, opened_before: float | None = None) -> bool:
        """Stop using the channel to ``target``: the next call opens a new one, whose resolver
        starts afresh (a channel whose name resolved to nothing waits out gRPC's re-resolution
        back-off, up to 2 minutes, before it looks again). The old channel closes once the
        calls in flight on it end. With ``opened_before`` (a ``time.monotonic()``), only a
        channel opened before then. Returns whether one was dropped. On the client's loop.
        """
        key = (target, tls)
        found = self._channels.get(key)
        if found is None or (opened_before is not None and found.opened_at >= opened_before):
            return False
        del self._channels[key]
        if found.in_flight:
            self._dropped.add(found)
        else:
            self._close_later(found)
        return True

    def _close_later(self, dropped: _Channel) -> None:
        self._dropped.discard(dropped)
        task = asyncio.get_running_loop().create_task(dropped.channel.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every channel (calls still in flight on them end CANCELLED)."""
        channels = [*self._channels.values(), *self._dropped]
        self._channels.clear()
        self._dropped.clear()
        for open_channel in channels:
            await open_channel.channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> RemoteCallClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _call_once(
        self, target: str, tls: bool, name: str, batch: pa.RecordBatch, deadline_s: float
    ) -> pa.Array:
        request = encode_request(name, *stream_pieces(batch))
        channel = self._channel(target, tls)
        channel.in_flight += 1
        try:
            response = await channel.method(request, timeout=deadline_s)
            arrays = decode_result(response)
        except grpc.aio.AioRpcError as error:
            raise _call_error(error, target) from None
        except ResultShapeError as error:
            raise RemoteHandlerError(
                endpoint=target, kind="ResultShapeError", message=str(error), code="OK"
            ) from None
        finally:
            channel.in_flight -= 1
            if not channel.in_flight and channel in self._dropped:
                self._close_later(channel)
        result = arrays[0] if len(arrays) == 1 else _concat(arrays, target)
        if len(result) != batch.num_rows:
            raise RemoteHandlerError(
                endpoint=target,
                kind="ResultLengthError",
                message=(
                    f"the model answered {len(result)} rows for {batch.num_rows} input rows: "
                    f"expected one value per row"
                ),
                code="OK",
            )
        return result

    def _channel(self, target: str, tls: bool) -> _Channel:
        key = (target, tls)
        found = self._channels.get(key)
        if found is None:
            channel = _open_channel(target, tls)
            # The method streams both ways, but a call here is one request holding one record
            # batch, which both runtimes answer with one response (one per batch): on the wire
            # that is a unary call, which grpcio's asyncio makes for about half the client
            # CPU of a streaming one (0.35 against 0.65 ms a call, bench/README.md).
            # Requests arrive serialised (encode_request); responses are read as views.
            method = channel.unary_unary(
                CALL_FUNCTION_METHOD, response_deserializer=decode_response
            )
            found = _Channel(channel, method, time.monotonic())
            self._channels[key] = found
        return found


@dataclass(eq=False, slots=True)
class _Channel:
    """A channel to one target, its CallFunction method, when it was opened
    (``time.monotonic()``), and the calls in flight on it."""

    channel: grpc.aio.Channel
    method: Any
    opened_at: float
    in_flight: int = 0


def _open_channel(target: str, tls: bool) -> grpc.aio.Channel:
    options: list[tuple[str, Any]] = list(channel_options())
    if target.startswith("dns:"):
        # A headless Service resolves to every pod; spread calls over all of them.
        options.append(("grpc.lb_policy_name", "round_robin"))
    if tls:
        return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
    return grpc.aio.insecure_channel(target, options=options)


def _concat(arrays: list[pa.Array], target: str) -> pa.Array:
    if not arrays:
        return pa.array([], pa.null())
    # A part whose values were all null may come back typed null (a handler returning a list
    # infers its type per call); it takes the type of the others.
    typed = next((a.type for a in arrays if not pa.types.is_null(a.type)), pa.null())
    arrays = [pa.nulls(len(a), typed) if pa.types.is_null(a.type) else a for a in arrays]
    try:
        return pa.concat_arrays(arrays)
    except pa.ArrowInvalid as error:
        raise RemoteCallError(
            f"the model at {target} answered batches of different types: {error}",
            endpoint=target,
        ) from None


def _call_error(error: grpc.aio.AioRpcError, target: str) -> RemoteCallError:
    code = error.code()
    details = error.details() or ""
    exception = parse_error_payload(details)
    if exception is not None:
        return RemoteHandlerError(
            endpoint=target,
            kind=exception.get("kind", ""),
            message=exception.get("message", ""),
            remote_traceback=exception.get("stacktrace", ""),
            internal_traceback=exception.get("internal_stacktrace", ""),
            code=code.name,
        )
    if code in _TRANSPORT_CODES:
        return TransportError(endpoint=target, code=code.name, details=details)
    if code == grpc.StatusCode.UNKNOWN:
        return RemoteHandlerError(endpoint=target, kind="", message=details, code=code.name)
    return RemoteCallError(f"call to {target} failed: {code.name}: {details}", endpoint=target)


async def health_status(target: str, *, service: str = "", timeout_s: float = 1.0) -> str:
    """The gRPC health of ``service`` at ``target``: ``SERVING``, ``NOT_SERVING``, ...

    ``UNREACHABLE`` when nothing answers and ``UNIMPLEMENTED`` when the server has no health
    service.
    """
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return "UNIMPLEMENTED"
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def wait_until_serving(target: str, *, timeout_s: float = 30.0, poll_s: float = 0.05) -> None:
    """Poll ``target``'s health until it is ``SERVING``; ``TimeoutError`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    status = "UNREACHABLE"
    while loop.time() < give_up:
        status = await health_status(target, timeout_s=min(1.0, timeout_s))
        if status == "SERVING":
            return
        await asyncio.sleep(poll_s)
    raise TimeoutError(f"{target} was not SERVING after {timeout_s}s (last status: {status})")
