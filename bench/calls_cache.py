"""The answer cache part of ``bench/calls.py`` (run as part of that script, so bench/ is on
sys.path and it imports this module as ``calls_cache``).

The same 1M-row offline query, twice, on one ``ChalkClient`` whose feature has
``max_staleness`` (``y = F.catalog_call("model.paced", _.x)``, the model of the dedup part:
10 us a row on one handler thread), every row distinct so that the first query sends them
all: the first and second wall times and their ratio (target: the second at least 10x
faster), and the second query's model calls (target 0), read from ``Dataset.model_calls``.
Every answer is checked against x * 2. Columns: the in-process store (``MemoryAnswerStore``),
and a Redis server (``RedisAnswerStore``: Debian's redis-server started on a free loopback
port, named by chalk.yaml's ``online_store``; no target; "-" without redis-server).
``--part cache`` runs this part alone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from report import number

from chalk import functions as F
from chalk.client import ChalkClient
from chalk.features import _, feature, features

ROWS: Final = 1_000_000
SPEEDUP_TARGET: Final = 10.0
GROUP: Final = "paced"


@features
class CachedDraw:
    id: int
    x: float
    y: float = feature(expression=F.catalog_call("model.paced", _.x), max_staleness="1h")


@dataclass(frozen=True, slots=True)
class CacheRun:
    """One store's two queries: wall times, model calls and rows of each, cache hits."""

    first_s: float
    second_s: float
    first_calls: int
    second_calls: int
    second_rows: int
    second_hits: int

    @property
    def ratio(self) -> float:
        return self.first_s / self.second_s


def _timed_query(client: ChalkClient, table: pa.Table) -> tuple[float, int, int, int]:
    started = time.perf_counter()
    dataset = client.offline_query(table, [CachedDraw.y], show_progress=False)
    wall_s = time.perf_counter() - started
    answer = dataset.to_arrow().column("cached_draw.y")
    if not pc.all(pc.equal(answer, pc.multiply(table.column("cached_draw.x"), 2.0))).as_py():
        raise RuntimeError("the cached query answered wrongly: expected y = x * 2 for every row")
    calls = dataset.model_calls[GROUP]
    return wall_s, calls.calls, calls.rows, calls.cache_hits


def in_process_run(client: ChalkClient) -> CacheRun:
    """The two queries on ``client`` (its answer store empty at first)."""
    table = pa.table(
        {
            "cached_draw.id": pa.array(range(ROWS), pa.int64()),
            "cached_draw.x": pa.array(np.arange(ROWS) * 0.5 + 0.25, pa.float64()),
        }
    )
    first_s, first_calls, _rows, _hits = _timed_query(client, table)
    second_s, second_calls, second_rows, second_hits = _timed_query(client, table)
    return CacheRun(first_s, second_s, first_calls, second_calls, second_rows, second_hits)


def redis_run(root: Path) -> CacheRun | None:
    """The two queries on a new client of the project at ``root`` whose chalk.yaml names a
    fresh Redis server as ``online_store``; None without Debian's redis-server."""
    if shutil.which("redis-server") is None:
        return None
    from tests.support.redis import RedisServer

    config = root / "chalk.yaml"
    before = config.read_text()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        server = RedisServer("redis-server", Path(directory))
        server.start()
        try:
            config.write_text(f"{before.rstrip()}\nonline_store: {server.url}\n")
            with ChalkClient(project_dir=root) as client:
                return in_process_run(client)
        finally:
            config.write_text(before)
            server.stop()


def cache_figures(
    paced_group: Callable[[Path], AbstractContextManager[ChalkClient]],
    work: Path,
    progress: Callable[[str], None],
) -> list[list[str]]:
    """The cache lines of the results table: figure, unit, in-process, Redis, target, met."""
    progress("answer cache: the same 1M-row offline query twice, in-process store")
    with paced_group(work) as client:
        memory = in_process_run(client)
        progress("answer cache: the same queries, Redis store (chalk.yaml online_store)")
        redis = redis_run(client.project.root)
    return [
        _line("first query wall", "s", memory.first_s, redis and redis.first_s),
        _line("second query wall", "s", memory.second_s, redis and redis.second_s),
        _line("first / second wall", "ratio", memory.ratio, redis and redis.ratio, ">=", 10),
        _line("model calls, first query", "calls", memory.first_calls, redis and redis.first_calls),
        _line(
            "model calls, second query",
            "calls",
            memory.second_calls,
            redis and redis.second_calls,
            "<=",
            0,
        ),
        _line("rows sent, second query", "rows", memory.second_rows, redis and redis.second_rows),
        _line("cache hits, second query", "rows", memory.second_hits, redis and redis.second_hits),
    ]


def _line(
    figure: str,
    unit: str,
    value: float,
    other: float | None,
    op: str | None = None,
    bound: float | None = None,
) -> list[str]:
    def shown(found: float | None) -> str:
        if found is None:
            return "-"
        if isinstance(found, int):
            return f"{found:,}"
        return f"{found:.1f}" if unit == "ratio" else number(found)

    if op is None or bound is None:
        return [figure, unit, shown(value), shown(other), "-", "-"]
    met = value <= bound if op == "<=" else value >= bound
    return [figure, unit, shown(value), shown(other), f"{op} {bound:g}", "yes" if met else "NO"]
