"""The answer cache's row keys: equal rows, equal keys, in any process."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Any

import pyarrow as pa
import pytest

from chalk.engine.cache.keys import KEY_BYTES, key_halves, row_keys
from chalk.engine.dedup import dedupe

ROWS = pa.record_batch(
    {
        "s": pa.array(["a", None, "", "a", "b"], pa.large_string()),
        "f": pa.array([1.0, float("nan"), -0.0, 1.0, 0.0]),
        "l": pa.array([[1], None, [], [1], [None]], pa.list_(pa.int64())),
    }
)


def test_equal_rows_give_equal_keys_and_others_differ() -> None:
    keys = row_keys(ROWS).to_pylist()

    assert all(len(key) == KEY_BYTES for key in keys)
    assert keys[0] == keys[3]
    assert len({keys[0], keys[1], keys[2], keys[4]}) == 4


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(pa.array([None], pa.large_string()), pa.array([""]), id="null-vs-empty"),
        pytest.param(pa.array([-0.0]), pa.array([0.0]), id="minus-zero"),
        pytest.param(pa.array([1], pa.int64()), pa.array([2], pa.int64()), id="ints"),
    ],
)
def test_rows_apart_get_keys_apart(left: pa.Array, right: pa.Array) -> None:
    assert row_keys(pa.record_batch({"x": left})) != row_keys(
        pa.record_batch({"x": right.cast(left.type)})
    )


NAN_PAYLOAD = pa.array([0x7FF8_0000_0000_0001], pa.int64()).view(pa.float64())[0].as_py()
POINT = pa.struct([("x", pa.float64()), ("tag", pa.string())])


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        pytest.param(
            [[0.0], [-0.0], [math.nan], [NAN_PAYLOAD], [None], None, []],
            pa.list_(pa.float64()),
            id="list",
        ),
        pytest.param(
            [[0.0], [-0.0], [math.nan], [NAN_PAYLOAD], [None], None, []],
            pa.large_list(pa.float32()),
            id="large-list-float32",
        ),
        pytest.param(
            [[0.0, 1.0], [-0.0, 1.0], [math.nan, 1.0], [NAN_PAYLOAD, 1.0], None],
            pa.list_(pa.float64(), 2),
            id="fixed-size-list",
        ),
        pytest.param(
            [
                {"x": 0.0, "tag": "a"},
                {"x": -0.0, "tag": "a"},
                {"x": math.nan, "tag": "a"},
                {"x": NAN_PAYLOAD, "tag": "a"},
                {"x": None, "tag": "a"},
                None,
            ],
            POINT,
            id="struct",
        ),
        pytest.param(
            [
                [{"x": -0.0, "tag": None}],
                [{"x": 0.0, "tag": None}],
                [None],
                [],
                [{"x": math.nan, "tag": None}],
                [{"x": NAN_PAYLOAD, "tag": None}],
            ],
            pa.list_(POINT),
            id="list-of-structs",
        ),
        pytest.param(
            [[[-0.0]], [[0.0]], [[]], [None], None],
            pa.list_(pa.list_(pa.float64())),
            id="list-of-lists",
        ),
    ],
)
def test_nested_floats_key_as_dedupe_compares_them(values: list[Any], kind: pa.DataType) -> None:
    column = pa.array([*values, *reversed(values)], kind)
    batch = pa.record_batch({"x": column})

    keys = row_keys(batch).to_pylist()
    distinct, indices = dedupe(batch)

    assert indices is not None
    by_key = [keys.index(key) for key in keys]
    by_dedupe = [indices.to_pylist().index(index) for index in indices.to_pylist()]
    assert by_key == by_dedupe
    assert len(set(keys)) == distinct.num_rows
    # A slice of the column (its lists' offsets past 0) keys as its rows do in the whole.
    assert row_keys(batch.slice(3, 4)) == row_keys(batch).slice(3, 4)


def test_minus_zero_in_a_list_is_not_zero_in_a_list() -> None:
    rows = pa.record_batch({"x": pa.array([[0.0], [-0.0]], pa.list_(pa.float64()))})

    first, second = row_keys(rows).to_pylist()

    assert first != second


def test_every_nan_is_the_same_value() -> None:
    quiet = pa.array([float("nan")])
    payload = pa.array([0x7FF8_0000_0000_0001], pa.int64()).view(pa.float64())  # another NaN

    assert row_keys(pa.record_batch({"x": payload})) == row_keys(pa.record_batch({"x": quiet}))


def test_a_slice_keys_as_its_rows_do() -> None:
    assert row_keys(ROWS.slice(2, 3)) == row_keys(ROWS).slice(2, 3)
    hi, lo = key_halves(row_keys(ROWS).slice(1, 2))
    assert (len(hi), len(lo)) == (2, 2)


def test_no_rows_no_keys() -> None:
    assert len(row_keys(ROWS.slice(0, 0))) == 0


def test_two_processes_compute_equal_keys() -> None:
    script = textwrap.dedent(
        """
        import pyarrow as pa
        from chalk.engine.cache.keys import row_keys
        batch = pa.record_batch({"s": ["a", None, "text"], "x": [1.5, None, -0.0]})
        print(row_keys(batch).to_pylist())
        """
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        for _ in range(2)
    ]

    batch = pa.record_batch({"s": ["a", None, "text"], "x": [1.5, None, -0.0]})
    assert runs[0] == runs[1] == f"{row_keys(batch).to_pylist()}\n"


def test_few_rows_key_as_they_do_among_many() -> None:
    many = pa.record_batch(
        {"x": pa.array(range(500), pa.int64()), "s": [str(i) for i in range(500)]}
    )

    assert row_keys(many.slice(10, 3)) == row_keys(many).slice(10, 3)
