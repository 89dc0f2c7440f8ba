"""The remote error payload: its JSON shape, its bound on the wire, and parsing it back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalk.shim.errors import (
    MAX_PAYLOAD_BYTES,
    TRUNCATION_MARK,
    RemoteHandlerError,
    TransportError,
    error_payload,
    parse_error_payload,
)


def _raise_nested(message: str) -> None:
    def inner() -> None:
        raise KeyError(message)

    inner()


def _caught(message: str) -> KeyError:
    try:
        _raise_nested(message)
    except KeyError as error:
        return error
    raise AssertionError("unreachable")


def test_payload_has_the_reference_shape() -> None:
    error = _caught("text")
    tb = error.__traceback__

    payload = json.loads(error_payload(error, tb.tb_next if tb else None))

    assert payload["chalk_remote_error"] == 1
    assert set(payload["exception"]) == {"kind", "message", "stacktrace", "internal_stacktrace"}
    assert payload["exception"]["kind"] == "KeyError"
    assert "in inner" in payload["exception"]["stacktrace"]
    assert "in _caught" not in payload["exception"]["stacktrace"]
    assert "in _caught" in payload["exception"]["internal_stacktrace"]
    assert "truncated" not in payload


def test_a_chained_cause_stays_in_the_stacktrace() -> None:
    try:
        try:
            raise OSError("disk")
        except OSError as cause:
            raise ValueError("model load failed") from cause
    except ValueError as error:
        payload = json.loads(error_payload(error, None))

    assert "OSError: disk" in payload["exception"]["stacktrace"]


def test_an_unprintable_message_does_not_hide_the_error() -> None:
    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    payload = json.loads(error_payload(Odd(), None))

    assert payload["exception"]["message"] == "<Odd with an unprintable message>"


@given(message=st.text(max_size=30_000), percent=st.integers(0, 3_000))
def test_payload_never_exceeds_the_bound(message: str, percent: int) -> None:
    encoded = error_payload(RuntimeError(message + "%" * percent), None)

    wire = len(encoded) + 2 * sum(encoded.count(c) for c in '%" #<>`?{}')
    assert wire <= MAX_PAYLOAD_BYTES
    payload = json.loads(encoded)
    assert payload["exception"]["kind"] == "RuntimeError"
    if payload.get("truncated"):
        assert any(TRUNCATION_MARK in text for text in payload["exception"].values())


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        pytest.param(
            '{"chalk_remote_error": 1, "exception": {"kind": "E"}}', {"kind": "E"}, id="ok"
        ),
        pytest.param('{"exception": {"kind": "E"}}', None, id="no_marker"),
        pytest.param('{"chalk_remote_error": 1, "exception": "E"}', None, id="not_object"),
        pytest.param("{not json", None, id="broken_json"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
    ],
)
def test_parse_error_payload(details: str | None, expected: dict[str, str] | None) -> None:
    assert parse_error_payload(details) == expected


def test_error_types_name_the_endpoint() -> None:
    handler = RemoteHandlerError(endpoint="127.0.0.1:7000", kind="ValueError", message="bad")
    transport = TransportError(endpoint="127.0.0.1:7001", code="UNAVAILABLE", details="refused")

    assert str(handler) == "model handler at 127.0.0.1:7000 failed: ValueError: bad"
    assert "127.0.0.1:7001" in str(transport)
    assert transport.code == "UNAVAILABLE"
