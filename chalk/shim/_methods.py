"""What a gRPC server core serves, apart from any core: methods, their responders, the call.

``chalk.shim._services`` and ``chalk.shim.server`` write methods against these types;
``chalk.shim._core`` (grpcio's Cython layer) and ``chalk.shim._grpcio_core`` (grpcio's public
API) serve them, and ``chalk.shim.server`` picks one by ``ServerConfig.server_core``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

__all__ = [
    "Abort",
    "CallStream",
    "Core",
    "Method",
    "Responder",
    "check_handler_slots",
    "failure_details",
]


def check_handler_slots(count: int) -> None:
    """A core needs at least one handler slot (``--workers``)."""
    if count < 1:
        raise ValueError(f"handler_slots must be at least 1, got {count}")


def failure_details(method: str) -> str:
    """The status details of a call that failed on a bug of the server (status UNKNOWN)."""
    return f"the server failed answering {method}; see its log"


class Abort(Exception):
    """Raised by a responder: ends the call with ``code`` and ``details`` (after any answers
    already given)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.status = (code.value[0], details.encode("utf-8", "replace"))


class CallStream(Protocol):
    """One call in progress, as a responder sees it, whichever core serves it.

    ``in_handler_slot`` is set from the method before ``Method.open`` runs; ``open`` may
    clear it (a call refused while draining runs no user code, so it takes no slot).
    """

    in_handler_slot: bool

    @property
    def method(self) -> str:
        """The call's path, ``/package.Service/Method``."""
        ...

    @property
    def metadata(self) -> Sequence[Any]:
        """The client's invocation metadata, as ``(key, value)`` pairs."""
        ...

    def peer(self) -> str:
        """The client's address as gRPC reports it (``ipv4:127.0.0.1:5000``)."""
        ...

    def send(self, data: bytes) -> None:
        """Queue one answer; safe from any thread (a server-streaming method's updates)."""
        ...


class Responder(Protocol):
    """What one call of a method does with the messages it receives.

    ``message`` runs for one message at a time, in the order they arrived, and returns the
    serialised answers (it may raise ``Abort``). ``end_of_input`` runs once the client has
    half-closed and every message was answered: True ends the call with OK, False keeps it
    open (a server-streaming method answering later through ``CallStream.send``); it may be
    called under the stream's lock, so it must not call back into the stream. ``closed`` runs
    once when the call is over and no thread answers it any more, whether it ended with a
    status or was cancelled by the client.
    """

    def message(self, data: bytes) -> Iterable[bytes]: ...

    def end_of_input(self) -> bool: ...

    def closed(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Method:
    """A method a core serves: ``open`` starts a call (it may raise ``Abort``).

    ``in_handler_slot``: the messages run in one of the ``handler_slots`` (user code, possibly
    slow); otherwise at once, on whichever thread received them (short work only).
    ``long_lived``: the call may stay open with nothing to send or receive (a server stream
    waiting for news), so its cancellation is watched from the start.
    """

    open: Callable[[CallStream], Responder]
    in_handler_slot: bool = False
    long_lived: bool = False


class Core(Protocol):
    """A gRPC server serving ``Method``s: what ``chalk.shim.server`` needs of either core."""

    def add_port(self, address: str) -> int:
        """Listen on ``host:port`` (port 0 picks one); returns the port, 0 when it cannot bind."""
        ...

    def start(self) -> None: ...

    def stop(self, timeout_s: float = ...) -> bool:
        """Cancel every call and stop within about ``timeout_s``; False when a thread still
        runs a handler then (the process leaves without it)."""
        ...
