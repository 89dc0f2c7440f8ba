"""How a model call's rows are cut into chunks: the limits, the rows per chunk, the slices.

``ModelCaller`` cuts each call's argument batch with its ``ChunkLimits`` (``chunk_rows``, then
``chunk_batch``); each chunk is then one gRPC call to one replica.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

__all__ = [
    "DEFAULT_CHUNKS_PER_ENDPOINT",
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_MAX_CHUNK_ROWS",
    "DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT",
    "DEFAULT_MIN_CHUNK_ROWS",
    "ChunkLimits",
    "chunk_batch",
    "chunk_rows",
]

DEFAULT_MAX_CHUNK_ROWS: Final = 262_144
DEFAULT_MAX_CHUNK_BYTES: Final = 16 << 20
DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT: Final = 4
# A call of many rows is cut into about this many chunks per endpoint, so that every replica
# gets work, a faster one takes more, and one that becomes ready mid-call finds chunks left.
DEFAULT_CHUNKS_PER_ENDPOINT: Final = 8
# ... but no chunk is cut smaller than this for spreading: a call of fewer rows than twice
# this stays one chunk (an online query's fast path).
DEFAULT_MIN_CHUNK_ROWS: Final = 256


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """The limits a call's rows are cut by; ``cut`` applies them (see ``chunk_rows``).

    Examples
    --------
    >>> batch = pa.record_batch({"x": pa.array(range(1000), pa.float64())})
    >>> [len(chunk) for chunk in ChunkLimits().cut(batch, endpoints=2)]
    [334, 334, 332]
    >>> [len(chunk) for chunk in ChunkLimits(max_rows=200).cut(batch, endpoints=2)]
    [200, 200, 200, 200, 200]
    >>> [len(chunk) for chunk in ChunkLimits().cut(batch.slice(0, 300), endpoints=2)]
    [300]
    """

    max_rows: int = DEFAULT_MAX_CHUNK_ROWS
    max_bytes: int = DEFAULT_MAX_CHUNK_BYTES
    chunks_per_endpoint: int = DEFAULT_CHUNKS_PER_ENDPOINT
    min_rows: int = DEFAULT_MIN_CHUNK_ROWS
    in_flight_per_endpoint: int = DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT

    def cut(self, batch: pa.RecordBatch, *, endpoints: int) -> list[pa.RecordBatch]:
        """``batch`` in chunks, in row order, for a group of ``endpoints`` replicas."""
        if batch.num_rows == 1:
            return [batch]  # (an online query's) a row is never split
        max_rows = chunk_rows(
            batch.num_rows,
            batch.nbytes,
            endpoints=endpoints,
            max_rows=self.max_rows,
            max_bytes=self.max_bytes,
            chunks_per_endpoint=self.chunks_per_endpoint,
            min_rows=self.min_rows,
            in_flight_per_endpoint=self.in_flight_per_endpoint,
        )
        return chunk_batch(batch, max_rows=max_rows, max_bytes=self.max_bytes)


def chunk_batch(batch: pa.RecordBatch, *, max_rows: int, max_bytes: int) -> list[pa.RecordBatch]:
    """Zero-copy row slices of ``batch``, in row order: at most ``max_rows`` rows each, and at
    most ``max_bytes`` Arrow bytes each unless one row alone is larger.

    Examples
    --------
    >>> batch = pa.record_batch({"x": pa.array(range(10), pa.int64())})
    >>> [len(chunk) for chunk in chunk_batch(batch, max_rows=4, max_bytes=1 << 20)]
    [4, 4, 2]
    >>> [len(chunk) for chunk in chunk_batch(batch, max_rows=100, max_bytes=24)]
    [3, 3, 3, 1]
    """
    if max_rows < 1 or max_bytes < 1:
        raise ValueError(
            f"chunks hold at least one row and one byte, got max_rows={max_rows}, "
            f"max_bytes={max_bytes}"
        )
    chunks: list[pa.RecordBatch] = []
    for offset in range(0, batch.num_rows, max_rows):
        _split_by_bytes(batch.slice(offset, max_rows), max_bytes, chunks)
    return chunks


def chunk_rows(
    rows: int,
    nbytes: int,
    *,
    endpoints: int,
    max_rows: int,
    max_bytes: int,
    chunks_per_endpoint: int = DEFAULT_CHUNKS_PER_ENDPOINT,
    min_rows: int = DEFAULT_MIN_CHUNK_ROWS,
    in_flight_per_endpoint: int = DEFAULT_MAX_IN_FLIGHT_PER_ENDPOINT,
) -> int:
    """The most rows per chunk for a call of ``rows`` rows (``nbytes`` Arrow bytes) spread over
    ``endpoints`` replicas: about ``chunks_per_endpoint`` chunks per endpoint, none smaller than
    ``min_rows``, none over ``max_rows``. The limits alone apply when they already cut that
    many chunks, or (two or more) enough to fill every endpoint's ``in_flight_per_endpoint``
    slots: smaller chunks then only add calls (a fast model on one replica moved 10-20% fewer
    rows per second in 125k-row chunks than in 256k-row ones).

    Examples
    --------
    >>> chunk_rows(1, 8, endpoints=2, max_rows=262_144, max_bytes=16 << 20)
    262144
    >>> chunk_rows(1000, 8000, endpoints=2, max_rows=262_144, max_bytes=16 << 20)
    334
    >>> chunk_rows(1_000_000, 8_000_000, endpoints=2, max_rows=262_144, max_bytes=16 << 20)
    62500
    >>> chunk_rows(1_000_000, 8_000_000, endpoints=1, max_rows=262_144, max_bytes=16 << 20)
    262144
    """
    endpoints = max(endpoints, 1)
    wanted = min(endpoints * chunks_per_endpoint, rows // max(min_rows, 1))
    by_limits = max(math.ceil(rows / max_rows), math.ceil(nbytes / max_bytes))
    fills_the_slots = by_limits > 1 and by_limits >= endpoints * in_flight_per_endpoint
    if by_limits >= wanted or fills_the_slots:
        return max_rows
    return min(max_rows, math.ceil(rows / wanted))


def _split_by_bytes(batch: pa.RecordBatch, max_bytes: int, into: list[pa.RecordBatch]) -> None:
    # RecordBatch.nbytes counts only the sliced range, so skewed rows are split again.
    if batch.num_rows <= 1 or batch.nbytes <= max_bytes:
        into.append(batch)
        return
    parts = math.ceil(batch.nbytes / max_bytes)
    rows = math.ceil(batch.num_rows / parts)
    for offset in range(0, batch.num_rows, rows):
        _split_by_bytes(batch.slice(offset, rows), max_bytes, into)
