"""Cutting a call's rows into chunks: the rows per chunk, and slices that rejoin to the input."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalk.engine.chunking import chunk_batch, chunk_rows

STR = pa.large_string()


@pytest.mark.parametrize(
    ("rows", "endpoints", "limits", "expected"),
    [
        pytest.param(1, 2, {}, 262_144, id="one_row_keeps_the_limit"),
        pytest.param(511, 4, {}, 262_144, id="under_two_minimum_chunks"),
        pytest.param(1000, 2, {}, 334, id="as_many_minimum_chunks_as_fit"),
        pytest.param(100_000, 2, {}, 6250, id="chunks_per_endpoint"),
        pytest.param(1000, 2, {"max_rows": 100}, 100, id="the_row_limit_already_spreads"),
        pytest.param(1000, 2, {"max_bytes": 800}, 262_144, id="the_byte_limit_already_spreads"),
        pytest.param(5000, 1, {}, 625, id="one_endpoint_spread_too"),
        pytest.param(5000, 1, {"in_flight_per_endpoint": 1}, 625, id="one_slot_spread_too"),
        pytest.param(1_000_000, 1, {}, 262_144, id="the_row_limit_fills_the_slots"),
        pytest.param(10_000_000, 1, {}, 262_144, id="one_endpoint_by_the_row_limit"),
    ],
)
def test_chunk_rows(rows: int, endpoints: int, limits: dict[str, int], expected: int) -> None:
    limits = {"max_rows": 262_144, "max_bytes": 16 << 20, **limits}

    assert chunk_rows(rows, rows * 8, endpoints=endpoints, **limits) == expected


@given(
    lengths=st.lists(st.integers(0, 40), max_size=60),
    max_rows=st.integers(1, 30),
    max_bytes=st.integers(1, 400),
)
def test_chunks_rejoin_to_the_input_within_their_limits(
    lengths: list[int], max_rows: int, max_bytes: int
) -> None:
    batch = pa.record_batch({"s": pa.array(["x" * n for n in lengths], STR)})

    chunks = chunk_batch(batch, max_rows=max_rows, max_bytes=max_bytes)

    assert pa.Table.from_batches(chunks, schema=batch.schema).equals(pa.Table.from_batches([batch]))
    for chunk in chunks:
        assert 1 <= chunk.num_rows <= max_rows
        assert chunk.num_rows == 1 or chunk.nbytes <= max_bytes
