"""Deduplication of a call's argument rows: ``dedupe`` over every type, and through real replicas
that count the rows they receive."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalk.catalog import Catalog
from chalk.engine.dedup import DEDUP_ENV, dedup_enabled, dedupe, fan_out
from chalk.engine.errors import ModelHandlerError
from chalk.engine.recorder import CallRecorder, recording
from tests.engine.conftest import SHIM_HANDLERS, Deploy, MakeCaller, StartRuntime

ROWS = "chalk_remote_call_rows_total"
DAY = dt.date(2026, 1, 2)
NOON = dt.datetime(2026, 1, 2, 12, tzinfo=dt.UTC)
INT_IN, INT_OUT = pa.schema({"x": pa.int64()}), pa.schema({"y": pa.int64()})
POINT = pa.struct([("a", pa.int64()), ("b", pa.large_string())])

# Per type: values with repeats and nulls, and how many distinct values they hold.
CASES: dict[str, tuple[pa.Array, int]] = {
    "int64": (pa.array([1, None, 1, 2, None], pa.int64()), 3),
    "float64": (pa.array([1.0, math.nan, -0.0, 0.0, None, math.nan, None, 1.0]), 5),
    "float32": (pa.array([math.nan, -0.0, 0.0, math.nan, None], pa.float32()), 4),
    "large_string": (pa.array(["a", "", None, "a", "", None], pa.large_string()), 3),
    "large_binary": (pa.array([b"x", b"", None, b"x"], pa.large_binary()), 3),
    "bool": (pa.array([True, None, False, True, None]), 3),
    "date32": (pa.array([DAY, None, DAY], pa.date32()), 2),
    "timestamp": (pa.array([NOON, None, NOON], pa.timestamp("us", tz="UTC")), 2),
    "list_int64": (pa.array([[1, None], [1, None], None, [], [], [None], None]), 4),
    "list_float64": (
        pa.array([[-0.0], [0.0], [math.nan], [math.nan], None], pa.list_(pa.float64())),
        4,
    ),
    "list_of_lists": (pa.array([[[1]], [[1]], [None], [None], None, [[]]]), 4),
    "fixed_size_list": (pa.array([[1, 2], [1, 2], None, [3, None]], pa.list_(pa.int64(), 2)), 3),
    "struct": (
        pa.array(
            [
                {"a": 1, "b": "x"},
                {"a": 1, "b": "x"},
                None,
                {"a": None, "b": None},
                {"a": None, "b": None},
                None,
            ],
            POINT,
        ),
        3,
    ),
    "dictionary": (pa.array(["a", "b", None, "a", None]).dictionary_encode(), 3),
    "null": (pa.array([None, None, None]), 1),
    "sliced_list": (pa.array([[9], [1, None], None, [1, None], [], None, [5]]).slice(1, 5), 3),
    "sliced_struct": (pa.array([{"a": 1}, {"a": 2}, None, {"a": 2}, None]).slice(1), 2),
}


def row_texts(batch: pa.RecordBatch) -> list[str]:
    """Each row as text that tells -0.0 from 0.0 and shows NaN as nan: equal text, equal row."""
    return [
        repr(row) for row in zip(*(column.to_pylist() for column in batch.columns), strict=True)
    ]


@pytest.mark.parametrize(("values", "distinct"), CASES.values(), ids=CASES.keys())
def test_each_row_gets_back_its_own_value_and_every_distinct_one_is_sent_once(
    values: pa.Array, distinct: int
) -> None:
    batch = pa.record_batch({"a": values})

    sent, indices = dedupe(batch)

    assert indices is not None
    assert sent.num_rows == distinct
    assert row_texts(sent.take(indices)) == row_texts(batch)
    assert len(set(row_texts(sent))) == sent.num_rows


def test_rows_repeat_only_when_every_column_matches() -> None:
    batch = pa.record_batch({"x": [1, 1, 2, 1, None], "y": ["a", "a", "a", None, None]})

    sent, indices = dedupe(batch)

    assert sent.to_pydict() == {"x": [1, 2, 1, None], "y": ["a", "a", None, None]}
    assert indices is not None
    assert indices.to_pylist() == [0, 0, 1, 2, 3]


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(pa.record_batch({"x": [1.0]}), id="one_row"),
        pytest.param(pa.record_batch({"x": [-0.0, 0.0, None, math.nan]}), id="no_repeat"),
        pytest.param(
            pa.record_batch(
                {"m": pa.array([[("k", 1)], [("k", 1)]], pa.map_(pa.string(), pa.int64()))}
            ),
            id="map_is_sent_as_it_is",
        ),
    ],
)
def test_a_batch_without_repeats_is_sent_as_it_is(batch: pa.RecordBatch) -> None:
    sent, indices = dedupe(batch)

    assert sent is batch
    assert indices is None
    assert fan_out(pa.array([1]), indices).to_pylist() == [1]


def test_a_big_batch_is_hashed_only_when_its_sample_shows_repeats() -> None:
    distinct = pa.record_batch({"x": pa.array(range(20_000), pa.int64())})
    halves = pa.record_batch({"x": pa.array([i % 10_000 for i in range(20_000)], pa.int64())})

    assert dedupe(distinct, sample_rows=1000)[1] is None
    assert dedupe(halves, sample_rows=1000)[0].num_rows == 10_000
    assert dedupe(halves.slice(0, 10_001), sample_rows=0)[0].num_rows == 10_000


# A few values per type, so that drawn rows repeat; floats include the NaN and both zeros.
_VALUES: dict[pa.DataType, st.SearchStrategy[Any]] = {
    pa.int64(): st.sampled_from([0, 1, -(2**63)]),
    pa.float64(): st.sampled_from([0.0, -0.0, math.nan, math.inf, 1.5]),
    pa.large_string(): st.sampled_from(["", "a", "é"]),
    pa.large_binary(): st.sampled_from([b"", b"\x00", b"ab"]),
    pa.bool_(): st.booleans(),
    pa.date32(): st.sampled_from([DAY, dt.date(1970, 1, 1)]),
    pa.timestamp("us", tz="UTC"): st.sampled_from([NOON, NOON + dt.timedelta(microseconds=1)]),
    pa.list_(pa.float64()): st.lists(
        st.none() | st.sampled_from([0.0, -0.0, math.nan]), max_size=2
    ),
    POINT: st.fixed_dictionaries(
        {"a": st.none() | st.sampled_from([1, 2]), "b": st.none() | st.just("x")}
    ),
}


@st.composite
def batches(draw: st.DrawFn) -> pa.RecordBatch:
    types = draw(st.lists(st.sampled_from(list(_VALUES)), min_size=1, max_size=3))
    rows = draw(st.integers(min_value=0, max_value=40))
    columns = {
        f"c{index}": pa.array(
            draw(st.lists(st.none() | _VALUES[kind], min_size=rows, max_size=rows)), kind
        )
        for index, kind in enumerate(types)
    }
    return pa.record_batch(columns)


@settings(max_examples=60, deadline=None)
@given(batches())
def test_deduplicated_rows_fan_back_to_the_undeduplicated_batch(batch: pa.RecordBatch) -> None:
    sent, indices = dedupe(batch)

    back = sent if indices is None else sent.take(indices)
    assert row_texts(back) == row_texts(batch)
    assert sent.num_rows == len(set(row_texts(batch)))


@pytest.mark.parametrize(
    ("setting", "environment", "enabled"),
    [
        pytest.param(None, None, True, id="default_on"),
        pytest.param(None, "0", False, id="env_off"),
        pytest.param(True, "0", True, id="argument_wins"),
        pytest.param(False, None, False, id="argument_off"),
    ],
)
def test_dedup_is_on_unless_turned_off(
    setting: bool | None, environment: str | None, enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if environment is None:
        monkeypatch.delenv(DEDUP_ENV, raising=False)
    else:
        monkeypatch.setenv(DEDUP_ENV, environment)

    assert dedup_enabled(setting) is enabled


EVERY_TYPE = pa.schema(
    [
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("s", pa.large_string()),
        ("b", pa.large_binary()),
        ("t", pa.bool_()),
        ("d", pa.date32()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("l", pa.list_(pa.int64())),
        ("p", POINT),
    ]
)


def every_type_rows(repeats: int) -> list[pa.Array]:
    """Three distinct rows (apart by -0.0 and 0.0, and all null), each ``repeats`` times."""
    first = {"i": 1, "f": -0.0, "s": "a", "b": b"x", "t": True, "d": DAY, "ts": NOON}
    first |= {"l": [1, None], "p": {"a": 1, "b": None}}
    rows = [first, {**first, "f": 0.0}, dict.fromkeys(EVERY_TYPE.names)]
    table = pa.Table.from_pylist(rows * repeats, schema=EVERY_TYPE)
    return [column.combine_chunks() for column in table.columns]


def test_identical_rows_of_every_type_reach_the_replica_once(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("call_handlers.named_values")
    deploy("show", [model.target], inputs=EVERY_TYPE, output=pa.schema({"v": pa.large_string()}))
    args = every_type_rows(repeats=100)

    with recording(CallRecorder()) as recorder:
        deduplicated = make_caller().call_blocking(feature="t.v", name="model.show", args=args)
    received = model.metric(ROWS)
    undeduplicated = make_caller(dedup=False).call_blocking(
        feature="t.v", name="model.show", args=args
    )

    assert deduplicated.to_pylist() == undeduplicated.to_pylist()
    assert received == 3
    assert model.metric(ROWS) == 3 + 300
    calls = recorder.groups()["show"]
    assert (calls.rows_asked, calls.rows_sent, calls.dedup_hits, calls.rows) == (300, 3, 297, 3)


def test_answers_as_chunks_fan_back_in_row_order(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("model_handlers.double", cwd=SHIM_HANDLERS)
    deploy("double", [model.target], inputs=INT_IN, output=INT_OUT)
    values = pa.array([index % 7 for index in range(5000)], pa.int64())

    doubled = make_caller(max_chunk_rows=3).call_blocking(
        feature="t.y", name="model.double", args=[values], as_chunks=True
    )

    assert doubled.to_pylist() == [2 * (index % 7) for index in range(5000)]
    assert model.metric(ROWS) == 7
    assert model.metric("chalk_remote_call_calls_total") == 3


def test_a_non_deterministic_model_gets_every_row(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller, catalog: Catalog
) -> None:
    model = runtime("model_handlers.double", cwd=SHIM_HANDLERS)
    deploy("dice", [model.target], inputs=INT_IN, output=INT_OUT, deterministic=False)
    values = pa.array([3] * 500, pa.int64())

    with recording(CallRecorder()) as recorder:
        answer = make_caller().call_blocking(feature="t.y", name="model.dice", args=[values])

    assert catalog.resolve("model.dice").deterministic is False
    assert answer.to_pylist() == [6] * 500
    assert model.metric(ROWS) == 500
    calls = recorder.groups()["dice"]
    assert (calls.rows_asked, calls.rows_sent, calls.dedup_hits) == (500, 500, 0)


def test_a_handler_error_names_rows_among_the_distinct_ones(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("model_handlers.boom", cwd=SHIM_HANDLERS)
    deploy("ner", [model.target], inputs=INT_IN, output=INT_OUT)
    values = pa.array([1, 2, 1, 2, 3], pa.int64())

    with pytest.raises(ModelHandlerError, match=r" on rows 0-2 of the distinct argument rows: "):
        make_caller().call_blocking(feature="t.y", name="model.ner", args=[values])
