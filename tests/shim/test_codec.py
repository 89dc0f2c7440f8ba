"""The hand-written message codec agrees byte for byte with protobuf's own encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalk.shim import _wire
from chalk.shim._codec import (
    DecodeError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

names = st.text(max_size=40)
payloads = st.binary(max_size=3000)


@given(name=names, payload=payloads)
def test_requests_encode_as_protobuf_does(name: str, payload: bytes) -> None:
    expected = _wire.CallFunctionRequest(name=name, feather_stream=payload).SerializeToString()

    assert encode_request(name, payload) == expected


@given(name=names, payload=payloads)
def test_requests_decode_what_protobuf_encodes(name: str, payload: bytes) -> None:
    wire = _wire.CallFunctionRequest(name=name, feather_stream=payload).SerializeToString()

    request = decode_request(wire)

    assert (request.name, bytes(request.feather_stream)) == (name, payload)


@given(payload=payloads)
def test_responses_round_trip_through_protobuf(payload: bytes) -> None:
    encoded = encode_response(payload)

    assert encoded == _wire.CallFunctionResponse(feather_stream=payload).SerializeToString()
    assert bytes(decode_response(encoded)) == payload


def test_a_large_payload_is_a_view_not_a_copy() -> None:
    wire = encode_request("g", b"\x01" * 1_000_000)

    request = decode_request(wire)

    assert request.feather_stream.obj is wire


def test_unknown_fields_from_a_newer_peer_are_skipped() -> None:
    # field 3 varint 150, field 4 fixed64, field 5 fixed32, then the payload field.
    extra = b"\x18\x96\x01" + b"\x21" + b"\x00" * 8 + b"\x2d" + b"\x00" * 4
    wire = extra + encode_request("g", b"abc")

    assert bytes(decode_request(wire).feather_stream) == b"abc"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        pytest.param(b"\x12\x05ab", "runs past the end", id="short_field"),
        pytest.param(b"\x12", "varint runs past", id="missing_length"),
        pytest.param(b"\x0b", "unsupported wire type 3", id="group_wire_type"),
        pytest.param(b"\x0a\x02\xff\xfe", "not UTF-8", id="bad_name"),
    ],
)
def test_malformed_requests_are_refused(wire: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_request(wire)
