"""Health and reflection on the runtime's server core, answered by grpcio's own servicers.

``chalk.shim.server`` adds these methods beside ``CallFunction``. The servicers of
grpcio-health-checking and grpcio-reflection keep their logic; these adapters feed them one
decoded message at a time and hand back the serialised answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from chalk.shim._methods import Abort, CallStream, Method, Responder

__all__ = ["Health", "reflection_methods"]

_HEALTH: str = f"/{health.SERVICE_NAME}"
_REFLECTION: str = f"/{reflection.SERVICE_NAME}"


class _Context:
    """The part of grpc.ServicerContext that the two servicers use."""

    def __init__(self, stream: CallStream) -> None:
        self._stream = stream
        self._code = grpc.StatusCode.OK
        self._details = ""
        self._callbacks: list[Callable[[], None]] = []

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Abort(code, details)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self._callbacks.append(callback)
        return True

    def is_active(self) -> bool:
        return True

    def peer(self) -> str:
        return self._stream.peer()

    def invocation_metadata(self) -> Sequence[Any]:
        return self._stream.metadata

    @property
    def code(self) -> grpc.StatusCode:
        return self._code

    def raise_if_failed(self) -> None:
        if self._code is not grpc.StatusCode.OK:
            raise Abort(self._code, self._details or self._code.name)

    def run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def _parse(message_type: Any, data: bytes) -> Any:
    try:
        return message_type.FromString(data)
    except message.DecodeError as error:
        raise Abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"expected a {message_type.DESCRIPTOR.full_name}, got undecodable bytes: {error}",
        ) from error


def _second_request(method: str) -> Abort:
    return Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method} takes one request message, got more")


def _no_request(method: str) -> Abort:
    # UNIMPLEMENTED, as grpcio's own servers answer a unary method called without a request.
    return Abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} takes one request message, got none")


class _Check:
    """``Health/Check``: one request, one answer (or NOT_FOUND for an unknown service)."""

    def __init__(self, servicer: health.HealthServicer, stream: CallStream) -> None:
        self._servicer = servicer
        self._context = _Context(stream)
        self._answered = False

    def message(self, data: bytes) -> Iterable[bytes]:
        if self._answered:
            raise _second_request("Check")
        self._answered = True
        request = _parse(health_pb2.HealthCheckRequest, data)
        response = self._servicer.Check(request, self._context)
        if self._context.code is grpc.StatusCode.NOT_FOUND:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"no health status for {request.service!r}")
        self._context.raise_if_failed()
        return (response.SerializeToString(),)

    def end_of_input(self) -> bool:
        if not self._answered:
            raise _no_request("Check")
        return True

    def closed(self) -> None:
        self._context.run_callbacks()


class _Watch:
    """``Health/Watch``: the status now, then each change, until the client leaves."""

    def __init__(self, servicer: health.HealthServicer, stream: CallStream) -> None:
        self._servicer = servicer
        self._stream = stream
        self._context = _Context(stream)
        self._watching = False

    def message(self, data: bytes) -> Iterable[bytes]:
        if self._watching:
            raise _second_request("Watch")
        self._watching = True
        request = _parse(health_pb2.HealthCheckRequest, data)
        self._servicer.Watch(request, self._context, send_response_callback=self._send)
        return ()

    def _send(self, response: health_pb2.HealthCheckResponse | None) -> None:
        # None is the servicer's own end-of-watch mark, sent after the call closed.
        if response is not None:
            self._stream.send(response.SerializeToString())

    def end_of_input(self) -> bool:
        if not self._watching:
            raise _no_request("Watch")
        return False

    def closed(self) -> None:
        self._context.run_callbacks()


class Health:
    """``grpc.health.v1.Health`` with statuses set by the runtime's lifecycle."""

    def __init__(self) -> None:
        self._servicer = health.HealthServicer()

    def methods(self) -> dict[str, Method]:
        servicer = self._servicer
        return {
            f"{_HEALTH}/Check": Method(lambda stream: _Check(servicer, stream)),
            f"{_HEALTH}/Watch": Method(lambda stream: _Watch(servicer, stream), long_lived=True),
        }

    def set(self, names: Iterable[str], status: int) -> None:
        for name in names:
            self._servicer.set(name, status)

    def enter_graceful_shutdown(self) -> None:
        """Every name NOT_SERVING from now on; later ``set`` calls change nothing."""
        self._servicer.enter_graceful_shutdown()


class _Reflect:
    """``ServerReflectionInfo``: each request answered on its own, as the servicer does."""

    def __init__(self, servicer: reflection.ReflectionServicer, stream: CallStream) -> None:
        self._servicer = servicer
        self._context = _Context(stream)

    def message(self, data: bytes) -> Iterable[bytes]:
        request = _parse(reflection_pb2.ServerReflectionRequest, data)
        answers = self._servicer.ServerReflectionInfo(iter((request,)), self._context)
        return [answer.SerializeToString() for answer in answers]

    def end_of_input(self) -> bool:
        return True

    def closed(self) -> None:
        self._context.run_callbacks()


def reflection_methods(
    service_names: Sequence[str], pool: descriptor_pool.DescriptorPool
) -> dict[str, Method]:
    """Server reflection (v1alpha) listing ``service_names``, described from ``pool``."""
    servicer = reflection.ReflectionServicer(service_names, pool=pool)

    def open_reflect(stream: CallStream) -> Responder:
        return _Reflect(servicer, stream)

    return {f"{_REFLECTION}/ServerReflectionInfo": Method(open_reflect)}
