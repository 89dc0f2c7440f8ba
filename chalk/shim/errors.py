"""Remote errors: the JSON payload a failing call carries, and the client's exception types.

The server encodes a handler's exception with ``error_payload``; the client turns a failed call
back into ``RemoteHandlerError`` (the handler failed: never retried) or ``TransportError``
(the call did not reach a handler: safe to retry elsewhere).
"""

from __future__ import annotations

import json
import traceback
from types import TracebackType
from typing import Any, Final

from chalk.common.errors import ChalkError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "TRUNCATION_MARK",
    "RemoteCallError",
    "RemoteHandlerError",
    "TransportError",
    "error_payload",
    "parse_error_payload",
]

# The payload travels in the grpc-message header; common proxies cap headers at 8 KiB.
MAX_PAYLOAD_BYTES: Final = 6000
TRUNCATION_MARK: Final = "\n... [truncated by chalk-remote-call] ...\n"
_MAX_KIND_CHARS: Final = 256


class RemoteCallError(ChalkError):
    """A call to a model runtime failed; ``endpoint`` names the replica it went to."""

    def __init__(self, message: str, *, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class RemoteHandlerError(RemoteCallError):
    """The model's handler raised (or answered wrongly); retrying would fail the same way."""

    def __init__(
        self,
        *,
        endpoint: str,
        kind: str,
        message: str,
        remote_traceback: str = "",
        internal_traceback: str = "",
        code: str = "UNKNOWN",
    ) -> None:
        text = f"{kind}: {message}" if kind else message
        super().__init__(f"model handler at {endpoint} failed: {text}", endpoint=endpoint)
        self.kind = kind
        self.remote_message = message
        self.remote_traceback = remote_traceback
        self.internal_traceback = internal_traceback
        self.code = code

    def __str__(self) -> str:
        base = super().__str__()
        if not self.remote_traceback:
            return base
        return f"{base}\n\nRemote traceback:\n{self.remote_traceback.rstrip()}"


class TransportError(RemoteCallError):
    """The call never reached a handler (refused, unavailable, deadline): retry elsewhere."""

    def __init__(self, *, endpoint: str, code: str, details: str) -> None:
        super().__init__(
            f"call to {endpoint} failed in transport: {code}: {details}", endpoint=endpoint
        )
        self.code = code
        self.details = details


def error_payload(error: BaseException, handler_tb: TracebackType | None) -> str:
    """The JSON details of a failed call, bounded to ``MAX_PAYLOAD_BYTES`` on the wire.

    ``handler_tb`` is the part of the traceback below our dispatch frame: the handler's own
    frames, which is all a model author wants to see.

    Examples
    --------
    >>> payload = json.loads(error_payload(ValueError("bad row"), None))
    >>> payload["exception"]["kind"], payload["exception"]["message"]
    ('ValueError', 'bad row')
    """
    exception: dict[str, str] = {
        "kind": type(error).__name__[:_MAX_KIND_CHARS],
        "message": _message_of(error),
        "stacktrace": "".join(traceback.format_exception(type(error), error, handler_tb)),
        "internal_stacktrace": "".join(traceback.format_exception(error)),
    }
    payload: dict[str, Any] = {"chalk_remote_error": 1, "exception": exception}
    encoded = json.dumps(payload)
    while _wire_size(encoded) > MAX_PAYLOAD_BYTES:
        field = max(exception, key=lambda key: len(exception[key]))
        text = exception[field]
        keep = len(text) // 4
        if keep < 16:
            break
        exception[field] = text[:keep] + TRUNCATION_MARK + text[-keep:]
        payload["truncated"] = True
        encoded = json.dumps(payload)
    return encoded


def parse_error_payload(details: str | None) -> dict[str, str] | None:
    """The ``exception`` object of a chalk remote error payload, or ``None`` if it is not one.

    Examples
    --------
    >>> parse_error_payload('{"chalk_remote_error": 1, "exception": {"kind": "E"}}')
    {'kind': 'E'}
    >>> parse_error_payload("connection refused") is None
    True
    """
    if not details or not details.startswith("{"):
        return None
    try:
        payload = json.loads(details)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not payload.get("chalk_remote_error"):
        return None
    exception = payload.get("exception")
    if not isinstance(exception, dict):
        return None
    return {str(key): str(value) for key, value in exception.items()}


def _wire_size(message: str) -> int:
    # json.dumps escapes everything outside printable ASCII, so only '%' grows (to %25) when
    # gRPC percent-encodes grpc-message; other runtimes encode a few more characters.
    return len(message) + 2 * sum(message.count(char) for char in '%" #<>`?{}')


def _message_of(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a broken __str__ must not hide the original failure
        return f"<{type(error).__name__} with an unprintable message>"
