"""Answers to one bytes value each and back: every Arrow type a model may answer, with nulls."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalk.engine.cache.encoding import decode_answers, encode_answers, encoding_name

SAMPLES: list[tuple[str, pa.Array]] = [
    ("int64", pa.array([1, None, -(2**63), 2**63 - 1], pa.int64())),
    ("int8", pa.array([None, -128, 0, 127], pa.int8())),
    ("uint32", pa.array([0, None, 2**32 - 1], pa.uint32())),
    ("float16", pa.array([1.5, None, -0.0], pa.float16()).cast(pa.float16())),
    ("float32", pa.array([1.5, None, float("inf")], pa.float32())),
    ("float64", pa.array([0.1, None, float("nan"), -0.0], pa.float64())),
    ("bool", pa.array([True, None, False, True], pa.bool_())),
    ("date32", pa.array([dt.date(2026, 12, 3), None], pa.date32())),
    ("date64", pa.array([None, dt.date(1970, 1, 2)], pa.date64())),
    (
        "timestamp_tz",
        pa.array([dt.datetime(2026, 12, 3, 20, 0, 1, 5), None], pa.timestamp("us", tz="UTC")),
    ),
    ("timestamp_ns", pa.array([10**18, None], pa.timestamp("ns"))),
    ("time64", pa.array([dt.time(12, 30), None], pa.time64("us"))),
    ("time32", pa.array([None, dt.time(1, 2, 3)], pa.time32("s"))),
    ("duration", pa.array([dt.timedelta(seconds=3), None], pa.duration("ms"))),
    ("interval", pa.array([pa.MonthDayNano([1, 2, 3]), None], pa.month_day_nano_interval())),
    ("decimal128", pa.array([Decimal("12.34"), None, Decimal("-0.01")], pa.decimal128(10, 2))),
    ("decimal256", pa.array([Decimal("1" * 50), None], pa.decimal256(60, 0))),
    ("fixed_size_binary", pa.array([b"abc", None, b"\x00\x00\x00"], pa.binary(3))),
    ("string", pa.array(["ok", None, "", "é\x00x"], pa.string())),
    ("large_string", pa.array([None, "", "entities: [ORG]"], pa.large_string())),
    ("string_view", pa.array(["a" * 40, None, ""], pa.string_view())),
    ("binary", pa.array([b"", None, b"\x01\x00"], pa.binary())),
    ("large_binary", pa.array([b"\xff", None, b""], pa.large_binary())),
    ("list", pa.array([[1, None], None, [], [3]], pa.list_(pa.int64()))),
    ("large_list_of_strings", pa.array([["a", None], None, []], pa.large_list(pa.string()))),
    (
        "struct",
        pa.array(
            [{"label": "ORG", "score": 0.5}, None, {"label": None, "score": None}],
            pa.struct([("label", pa.string()), ("score", pa.float64())]),
        ),
    ),
    (
        "list_of_structs",
        pa.array(
            [[{"start": 0, "end": 4}], None, []],
            pa.list_(pa.struct([("start", pa.int32()), ("end", pa.int32())])),
        ),
    ),
    ("map", pa.array([[("a", 1)], None, []], pa.map_(pa.string(), pa.int64()))),
    ("fixed_size_list", pa.array([[1.0, 2.0], None], pa.list_(pa.float32(), 2))),
    ("dictionary", pa.array(["a", None, "b", "a"]).dictionary_encode()),
    ("null", pa.nulls(3)),
]


@pytest.mark.parametrize(
    ("answers"), [sample for _, sample in SAMPLES], ids=[n for n, _ in SAMPLES]
)
def test_every_type_round_trips_with_its_nulls(answers: pa.Array) -> None:
    values = encode_answers(answers)

    assert len(values) == len(answers)
    assert all(isinstance(value, bytes) for value in values)
    decoded = decode_answers(values, answers.type)
    assert decoded.type == answers.type
    assert decoded.to_pylist() == answers.to_pylist() or _same_floats(decoded, answers)
    assert decoded.null_count == answers.null_count


@pytest.mark.parametrize(
    ("answers"), [sample for _, sample in SAMPLES], ids=[n for n, _ in SAMPLES]
)
def test_a_slice_encodes_only_its_own_answers(answers: pa.Array) -> None:
    part = answers.slice(1)

    decoded = decode_answers(encode_answers(part), answers.type)

    assert decoded.to_pylist() == part.to_pylist() or _same_floats(decoded, part)


_VALUES = {
    "int64": (st.integers(-(2**63), 2**63 - 1), pa.int64()),
    "float64": (st.floats(allow_nan=False), pa.float64()),
    "large_string": (st.text(), pa.large_string()),
    "binary": (st.binary(), pa.binary()),
    "list": (st.lists(st.none() | st.integers(-(2**63), 2**63 - 1)), pa.list_(pa.int64())),
}


# No deadline and no "too slow" check: on a loaded 2-core machine a draw can take a while.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(_VALUES)).flatmap(
        lambda name: st.tuples(st.just(name), st.lists(st.none() | _VALUES[name][0]))
    )
)
def test_any_answers_round_trip(case: tuple[str, list[object]]) -> None:
    name, values = case
    answers = pa.array(values, _VALUES[name][1])

    decoded = decode_answers(encode_answers(answers), answers.type)

    assert decoded.to_pylist() == values


def test_chunked_answers_encode_as_one_array() -> None:
    answers = pa.chunked_array([pa.array([1, None]), pa.array([3])])

    assert decode_answers(encode_answers(answers), pa.int64()).to_pylist() == [1, None, 3]


def test_subsets_decode_in_the_order_given() -> None:
    values = encode_answers(pa.array(["a", None, "c"]))

    assert decode_answers([values[2], values[0]], pa.string()).to_pylist() == ["c", "a"]
    assert decode_answers([], pa.string()).to_pylist() == []
    assert decode_answers([], pa.list_(pa.int8())).type == pa.list_(pa.int8())


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([b"\x00\x01\x02"], pa.int64()),
        ([b"no tag"], pa.string()),
        ([b"\x01\xff"], pa.string()),
        ([b"not arrow"], pa.list_(pa.int64())),
    ],
    ids=["short-fixed", "untagged-text", "bad-utf8", "not-ipc"],
)
def test_values_of_another_layout_are_refused(values: list[bytes], kind: pa.DataType) -> None:
    with pytest.raises((ValueError, pa.ArrowException)):
        decode_answers(values, kind)


def test_the_encoding_name_changes_with_the_type() -> None:
    names = {encoding_name(kind) for kind in [pa.int64(), pa.float64(), pa.timestamp("us")]}
    with_tz = encoding_name(pa.timestamp("us", tz="UTC"))

    assert len(names) == 3
    assert with_tz not in names
    assert encoding_name(pa.int64()).startswith("e1.")


def _same_floats(decoded: pa.Array, expected: pa.Array) -> bool:
    """Equal, NaN included (NaN != NaN in to_pylist's comparison)."""
    return bool(decoded.equals(expected)) or str(decoded) == str(expected)
