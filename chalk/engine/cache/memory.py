"""``MemoryAnswerStore``: model answers kept in this process, bounded by bytes; the default
``AnswerStore`` of ``ChalkClient``, ``chalk query`` and each ``chalk serve`` worker.

Vectorised, with no Python step per row: a scope's answers sit in a few sorted runs (a key's
first half, sorted, beside its second half, when it was put, and its answer), looked up with
a binary search per key (polars' ``search_sorted``); each ``put`` adds a run, and runs merge
when the newer one grows as large as the one before, so a scope holds O(log n) runs.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

import polars as pl
import pyarrow as pa

from chalk.engine.cache.keys import KEY_BYTES, key_halves, key_pair
from chalk.engine.cache.store import AnswerScope, CacheStats, Lookup

__all__ = ["DEFAULT_MAX_BYTES", "MemoryAnswerStore"]

# 256 MiB per process: a million answers of a few hundred bytes each, or ten million numbers,
# and a small share of a machine that also runs the models. ChalkClient(answer_cache_bytes=...)
# and `chalk serve --answer-cache-bytes` change it.
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024

# What a run keeps per row beside its answer: the key's two halves and the put time.
_INDEX_BYTES_PER_ROW: Final = KEY_BYTES + 8
# A scope is swept for expired answers at most this often (each lookup checks freshness).
_SWEEP_EVERY_S: Final = 1.0
# Up to this many keys a lookup binary-searches key by key in Python (an online query's: tens of
# microseconds); more are searched vectorised (polars' search_sorted, about 0.3 s for 1M).
_FEW_KEYS: Final = 32


@dataclass(slots=True)
class _Run:
    """Answers of one or more puts: ``index`` (``hi``, ``lo``, ``put_at``), sorted by ``hi``,
    and ``answers`` in the same order."""

    index: pl.DataFrame
    answers: pa.Array
    oldest: float
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.nbytes = self.answers.nbytes + _INDEX_BYTES_PER_ROW * self.index.height

    @property
    def rows(self) -> int:
        return self.index.height


@dataclass(slots=True)
class _Scope:
    runs: list[_Run] = field(default_factory=list)  # oldest first
    swept_at: float = 0.0

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self.runs)


class MemoryAnswerStore:
    """An ``AnswerStore`` in this process's memory, holding at most ``max_bytes`` bytes.

    Bytes are the answers' Arrow buffers plus 24 bytes a row for the key and the time it was
    put. When a put takes the store over its bound, the oldest answers (of any scope) are
    dropped first and counted as evictions; an answer older than its scope's ``ttl_s`` is
    never served and is dropped at the next sweep. A key put twice answers with its newest
    answer. Used from one event loop; ``stats`` may be read from any thread.

    Examples
    --------
    >>> import asyncio
    >>> from chalk.engine.cache.keys import row_keys
    >>> store = MemoryAnswerStore(max_bytes=1 << 20)
    >>> scope = AnswerScope("ner", "ner", 1, ttl_s=60, output_type=pa.int64())
    >>> keys = row_keys(pa.record_batch({"x": [1, 2, 3]}))
    >>> asyncio.run(store.put(scope, keys.slice(0, 2), pa.array([10, 20])))
    >>> found = asyncio.run(store.get(scope, keys))
    >>> found.found.to_pylist(), found.answers.to_pylist()
    ([True, True, False], [10, 20])
    >>> store.stats()["ner"].hits, store.stats()["ner"].misses
    (2, 1)
    """

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._clock = clock
        self._scopes: dict[AnswerScope, _Scope] = {}
        self._stats: dict[str, CacheStats] = {}
        self._lock = threading.Lock()
        self._closed = False

    async def get(self, scope: AnswerScope, keys: pa.FixedSizeBinaryArray) -> Lookup:
        """The fresh answers kept for ``keys`` under ``scope``; see ``AnswerStore.get``."""
        now = self._clock()
        with self._lock:
            kept = self._scopes.get(scope)
            if kept is not None and now - kept.swept_at >= _SWEEP_EVERY_S:
                self._sweep(scope, kept, now)
            runs = list(kept.runs) if kept is not None else []
        found, answers = _lookup(runs, keys, now - scope.ttl_s, scope.output_type)
        hits = found.true_count if runs else 0
        self._count(scope.group, hits=hits, misses=len(keys) - hits)
        return Lookup(found, answers)

    async def put(
        self, scope: AnswerScope, keys: pa.FixedSizeBinaryArray, answers: pa.Array
    ) -> None:
        """Keep ``answers`` for ``keys`` under ``scope``; see ``AnswerStore.put``."""
        if len(keys) == 0 or self._closed:
            return
        if len(keys) != len(answers):
            raise ValueError(f"{len(keys)} keys but {len(answers)} answers")
        now = self._clock()
        run = _few_run(keys, answers, now) if len(keys) <= _FEW_KEYS else _run(keys, answers, now)
        with self._lock:
            kept = self._scopes.setdefault(scope, _Scope(swept_at=now))
            kept.runs.append(run)
            _merge_tail(kept.runs)
            self._bound()

    def stats(self) -> dict[str, CacheStats]:
        """Figures per scaling group; ``bytes`` is what its answers take now."""
        with self._lock:
            held: dict[str, int] = {}
            for scope, kept in self._scopes.items():
                held[scope.group] = held.get(scope.group, 0) + kept.nbytes
            groups = set(self._stats) | set(held)
            return {
                group: replace(self._stats.get(group, CacheStats()), bytes=held.get(group, 0))
                for group in sorted(groups)
            }

    @property
    def nbytes(self) -> int:
        """What every answer kept takes now, in bytes."""
        with self._lock:
            return sum(kept.nbytes for kept in self._scopes.values())

    async def aclose(self) -> None:
        """Drop every answer; the store keeps nothing after."""
        with self._lock:
            self._closed = True
            self._scopes.clear()

    def _count(self, group: str, *, hits: int, misses: int) -> None:
        with self._lock:
            seen = self._stats.get(group, CacheStats())
            self._stats[group] = replace(seen, hits=seen.hits + hits, misses=seen.misses + misses)

    def _sweep(self, scope: AnswerScope, kept: _Scope, now: float) -> None:
        """Drop the scope's answers older than its time to live (under the lock)."""
        kept.swept_at = now
        if math.isinf(scope.ttl_s):
            return
        cutoff = now - scope.ttl_s
        runs = []
        for run in kept.runs:
            if run.oldest > cutoff:
                runs.append(run)
                continue
            fresh = run.index.get_column("put_at") > cutoff
            if fresh.any():
                index = run.index.filter(fresh)
                answers = run.answers.filter(fresh.to_arrow())
                runs.append(_Run(index, answers, _oldest(index)))
        kept.runs = runs
        if not runs:
            del self._scopes[scope]

    def _bound(self) -> None:
        """Drop the oldest answers until the store is within ``max_bytes`` (under the lock)."""
        now = self._clock()
        for scope, kept in list(self._scopes.items()):
            if now - kept.swept_at >= _SWEEP_EVERY_S:
                self._sweep(scope, kept, now)
        excess = sum(kept.nbytes for kept in self._scopes.values()) - self.max_bytes
        while excess > 0 and self._scopes:
            scope, kept = min(self._scopes.items(), key=lambda item: item[1].runs[0].oldest)
            run = kept.runs[0]
            # A run's rows are about the same size: drop as many of its oldest as the excess.
            per_row = max(1, run.nbytes // max(1, run.rows))
            drop = min(run.rows, -(-excess // per_row))
            evicted = _without_oldest(run, drop)
            stats = self._stats.get(scope.group, CacheStats())
            self._stats[scope.group] = replace(stats, evictions=stats.evictions + drop)
            if evicted is None:
                kept.runs.pop(0)
            else:
                kept.runs[0] = evicted
            excess -= run.nbytes - (evicted.nbytes if evicted is not None else 0)
            if not kept.runs:
                del self._scopes[scope]


def _run(keys: pa.FixedSizeBinaryArray, answers: pa.Array, now: float) -> _Run:
    """A run of ``answers`` to ``keys`` put at ``now``, sorted by the keys' first halves."""
    hi, lo = key_halves(keys)
    index = pl.DataFrame({"hi": hi, "lo": lo, "put_at": pl.repeat(now, len(keys), eager=True)})
    order = index.get_column("hi").arg_sort()
    return _Run(_rows(index, order), answers.take(order.to_arrow()), now)


def _few_run(keys: pa.FixedSizeBinaryArray, answers: pa.Array, now: float) -> _Run:
    """``_run`` sorted in Python (an online query's few answers)."""
    pairs = sorted((*key_pair(key), row) for row, key in enumerate(keys.to_pylist()))
    columns = {
        "hi": pl.Series([hi for hi, _, _ in pairs], dtype=pl.UInt64),
        "lo": pl.Series([lo for _, lo, _ in pairs], dtype=pl.UInt64),
        "put_at": pl.Series([now] * len(pairs), dtype=pl.Float64),
    }
    order = [row for _, _, row in pairs]
    in_order = order == sorted(order)
    return _Run(pl.DataFrame(columns), answers if in_order else answers.take(order), now)


def _lookup(
    runs: list[_Run], keys: pa.FixedSizeBinaryArray, fresh_after: float, output_type: pa.DataType
) -> tuple[pa.BooleanArray, pa.Array]:
    """Which keys the runs hold, put after ``fresh_after``, and their answers in key order;
    a newer run's answer wins over an older one's."""
    empty = pa.array([], output_type)
    if not runs or len(keys) == 0:
        return pa.array([False] * len(keys), pa.bool_()), empty
    if len(keys) <= _FEW_KEYS:
        return _lookup_few(runs, keys, fresh_after, output_type)
    hi, lo = key_halves(keys)
    # Per key: the run that answers it (-1: none) and the row there.
    which = pl.repeat(-1, len(keys), dtype=pl.Int32, eager=True)
    where = pl.repeat(0, len(keys), dtype=pl.Int64, eager=True)
    for number, run in enumerate(runs):
        run_hi = run.index.get_column("hi")
        # The last row of the run with an equal first half: the newest put of that key.
        row = (run_hi.search_sorted(hi, side="right").cast(pl.Int64) - 1).clip(0, run.rows - 1)
        candidate = _rows(run.index, row)
        match = (
            (candidate.get_column("hi") == hi)
            & (candidate.get_column("lo") == lo)
            & (candidate.get_column("put_at") > fresh_after)
        )
        if match.any():
            which = pl.repeat(number, len(keys), dtype=pl.Int32, eager=True).zip_with(match, which)
            where = row.zip_with(match, where)
    found = which >= 0
    if not found.any():
        return found.to_arrow(), empty
    # Each run's answers to its keys, then put back in key order.
    keyed = {"key": pl.int_range(0, len(keys), eager=True), "run": which, "row": where}
    frame = pl.DataFrame(keyed)
    parts: list[pa.Array] = []
    order: list[pl.Series] = []
    for part in frame.filter(found).partition_by("run"):
        run_number = int(part.get_column("run")[0])
        parts.append(runs[run_number].answers.take(part.get_column("row").to_arrow()))
        order.append(part.get_column("key"))
    answers = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        answers = answers.take(pl.concat(order).arg_sort().to_arrow())
    return found.to_arrow(), answers.cast(output_type)


def _lookup_few(
    runs: list[_Run], keys: pa.FixedSizeBinaryArray, fresh_after: float, output_type: pa.DataType
) -> tuple[pa.BooleanArray, pa.Array]:
    """``_lookup`` key by key: a binary search per run, newest run first."""
    found: list[bool] = []
    parts: list[pa.Array] = []
    for key in keys.to_pylist():
        hi, lo = key_pair(key)
        for run in reversed(runs):
            run_hi = run.index.get_column("hi")
            row = bisect.bisect_right(run_hi, hi) - 1
            if row < 0 or run_hi[row] != hi:
                continue
            _, run_lo, put_at = run.index.row(row)
            if run_lo == lo and put_at > fresh_after:
                parts.append(run.answers.slice(row, 1))
                break
        found.append(len(parts) > sum(found))
    answers = pa.concat_arrays(parts) if parts else pa.array([], output_type)
    return pa.array(found, pa.bool_()), answers


def _merge_tail(runs: list[_Run]) -> None:
    """Merge the newest runs while the one before is at most twice as large: each row is
    merged O(log n) times, and a scope holds O(log n) runs."""
    while len(runs) > 1 and runs[-2].rows <= 2 * runs[-1].rows:
        newer = runs.pop()
        older = runs.pop()
        index = pl.concat([older.index, newer.index])
        # Stable: of two equal first halves, the newer put stays after the older one.
        order = index.with_row_index("at").sort("hi", maintain_order=True).get_column("at")
        answers = pa.concat_arrays([older.answers, newer.answers]).take(order.to_arrow())
        runs.append(_Run(_rows(index, order), answers, min(older.oldest, newer.oldest)))


def _without_oldest(run: _Run, drop: int) -> _Run | None:
    """``run`` without its ``drop`` oldest rows; None when that is all of them."""
    if drop >= run.rows:
        return None
    put_at = run.index.get_column("put_at")
    keep = put_at.rank("ordinal") > drop
    index = run.index.filter(keep)
    return _Run(index, run.answers.filter(keep.to_arrow()), _oldest(index))


def _oldest(index: pl.DataFrame) -> float:
    """When the oldest answer of a run's ``index`` was put."""
    oldest = index.get_column("put_at").min()
    assert isinstance(oldest, float)
    return oldest


def _rows(frame: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """The rows of ``frame`` at positions ``rows``, in that order."""
    return frame.select(pl.all().gather(rows))
