"""The two RemoteCallService messages read and written without copying their Arrow payloads.

Each message holds one or two length-delimited fields, so protobuf's general machinery costs
more than the work it does: parsing a request copies the payload into a new ``bytes`` and
serialising a response copies it twice more (measured at about a third of the server's CPU on
1M-row calls, bench/README.md). Here a request's payload stays a ``memoryview`` of the
received buffer and a response is built with one join. ``tests/shim/test_codec.py`` checks
byte-for-byte agreement with protobuf's own encoding of ``_wire``'s messages.
"""

from __future__ import annotations

from typing import Any, Final

from chalk.common.errors import ChalkError

__all__ = [
    "DecodeError",
    "Request",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]

_LENGTH_DELIMITED: Final = 2
_REQUEST_NAME: Final = b"\x0a"  # field 1, length-delimited
_REQUEST_STREAM: Final = b"\x12"  # field 2, length-delimited
_RESPONSE_STREAM: Final = b"\x0a"  # field 1, length-delimited
_EMPTY: Final = memoryview(b"")


class DecodeError(ChalkError, ValueError):
    """The bytes are not a well-formed message."""


class Request:
    """A ``CallFunctionRequest`` whose ``feather_stream`` is a view of the received bytes."""

    __slots__ = ("feather_stream", "name")

    def __init__(self, name: str, feather_stream: memoryview) -> None:
        self.name = name
        self.feather_stream = feather_stream


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, *pieces: Any) -> list[Any]:
    size = sum(memoryview(piece).nbytes for piece in pieces)
    return [tag, _varint(size), *pieces] if size else []


def encode_request(name: str, *feather_stream: Any) -> bytes:
    """A serialised ``CallFunctionRequest``; ``feather_stream`` is bytes-like pieces to join.

    Examples
    --------
    >>> encode_request("a", b"b")
    b'\\n\\x01a\\x12\\x01b'
    >>> encode_request("a", b"b", b"c")
    b'\\n\\x01a\\x12\\x02bc'
    """
    return b"".join(_field(_REQUEST_NAME, name.encode()) + _field(_REQUEST_STREAM, *feather_stream))


def encode_response(*feather_stream: Any) -> bytes:
    """A serialised ``CallFunctionResponse`` from bytes-like pieces (one copy of each).

    Examples
    --------
    >>> encode_response(b"r")
    b'\\n\\x01r'
    """
    return b"".join(_field(_RESPONSE_STREAM, *feather_stream))


def decode_request(data: bytes) -> Request:
    """Parse a ``CallFunctionRequest``; the payload is a view, not a copy.

    Examples
    --------
    >>> request = decode_request(b"\\n\\x03ner\\x12\\x02ab")
    >>> request.name, bytes(request.feather_stream)
    ('ner', b'ab')
    """
    fields = _fields(data)
    name = fields.get(1, _EMPTY)
    try:
        text = str(name, "utf-8")
    except UnicodeDecodeError:
        raise DecodeError("CallFunctionRequest.name is not UTF-8") from None
    return Request(text, fields.get(2, _EMPTY))


def decode_response(data: bytes) -> memoryview:
    """The ``feather_stream`` of a ``CallFunctionResponse``, as a view.

    Examples
    --------
    >>> bytes(decode_response(b"\\n\\x01r"))
    b'r'
    """
    return _fields(data).get(1, _EMPTY)


def _fields(data: bytes) -> dict[int, memoryview]:
    # Length-delimited fields by number (the last occurrence wins, as protobuf says); fields
    # of other wire types are skipped, so a newer peer's additions are tolerated.
    view = memoryview(data)
    found: dict[int, memoryview] = {}
    position, end = 0, len(view)
    while position < end:
        key, position = _read_varint(view, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _LENGTH_DELIMITED:
            size, position = _read_varint(view, position)
            if position + size > end:
                raise DecodeError("a field runs past the end of the message")
            found[number] = view[position : position + size]
            position += size
        elif wire_type == 0:
            _, position = _read_varint(view, position)
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type} for field {number}")
    if position != end:
        raise DecodeError("the message ends inside a field")
    return found


def _read_varint(view: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(view) or shift > 63:
            raise DecodeError("a varint runs past the end of the message")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
