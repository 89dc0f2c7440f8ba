"""Model calls that cost less, side by side in one run: deduplication of a call's repeated rows,
and batching across queries (``bench/calls_batching.py``, whose docstring says what it measures).

``dedup_figures`` starts our runtime on 127.0.0.1 with one handler thread (``--workers 1``, a
replica that runs one call at a time, as a model saturating its device does) serving
``bench/handlers.py``'s ``paced_double``: x * 2 at a cost of 10 us per row (slept). It registers
it as scaling group ``paced`` in a throwaway project and sends 1M float64 rows holding 100,000
distinct values (10%: each value once, the other 900,000 rows drawn from them by a Zipf law,
shuffled):

- ``ModelCaller`` with dedup on against ``ModelCaller(dedup=False)``, alternating the sides
  pass by pass (ABBA), so that machine noise lands on both: rows sent per row asked (target
  <= 0.11) and wall time (target: dedup on at least 5x faster).
- ``ChalkClient.offline_query`` once per side, dedup on by default and off by ``CHALK_DEDUP=0``,
  reading the rows from ``Dataset.model_calls``.
- ``dedupe`` alone: on the 1M rows; on 1M distinct rows (its cost when nothing repeats: its
  random sample, and the whole hashing the sample saves); on 16 rows (a small online call).

Every answer is checked against x * 2. It prints figures and ratios and never fails on a time.
Run it from the repository root::

    .venv/bin/python bench/calls.py                     # about 100 seconds on 2 cores
    .venv/bin/python bench/calls.py --quick             # a rougher run, about 50 seconds
    .venv/bin/python bench/calls.py --part batching --delay-ms 10   # one part, another delay
    .venv/bin/python bench/calls.py --part cache        # the answer cache (calls_cache.py)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from calls_batching import batching_table
from calls_cache import cache_figures
from groups import route_to_runtime
from report import format_grid, number, progress_printer

from chalk import functions as F
from chalk.catalog import open_catalog
from chalk.client import ChalkClient
from chalk.engine.calls import ModelCaller
from chalk.engine.dedup import DEDUP_ENV, SAMPLE_ROWS, dedupe
from chalk.engine.recorder import CallRecorder, recording
from chalk.features import _, features
from chalk.shim.client import wait_until_serving

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent
GROUP: Final = "paced"
ROWS: Final = 1_000_000
DISTINCT: Final = 100_000
ZIPF_EXPONENT: Final = 1.2
SENT_TARGET: Final = 0.11
SPEEDUP_TARGET: Final = 5.0


@features
class Draw:
    id: int
    x: float
    y: float = F.catalog_call("model.paced", _.x)


@dataclass(slots=True)
class Side:
    """One side's passes: wall times, and the rows its calls asked for and sent."""

    wall_s: list[float] = field(default_factory=list)
    rows_asked: int = 0
    rows_sent: int = 0

    def best(self) -> float:
        return min(self.wall_s)

    def median(self) -> float:
        return statistics.median(self.wall_s)


def zipf_values(rows: int, distinct: int, *, seed: int = 20) -> pa.Array:
    """``rows`` float64 values holding exactly ``distinct`` distinct ones: each once, the rest
    drawn by a Zipf law over them (value rank r drawn about 1 / r**1.2 of the time), shuffled."""
    generator = np.random.default_rng(seed)
    ranks = (generator.zipf(ZIPF_EXPONENT, rows - distinct) - 1) % distinct
    picked = np.concatenate([np.arange(distinct), ranks])
    generator.shuffle(picked)
    return pa.array(picked * 0.5 + 0.25, pa.float64())


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextmanager
def _paced_group(work: Path) -> Iterator[ChalkClient]:
    """A project whose catalog routes ``model.paced`` to one runtime serving ``paced_double``."""
    from tests.support.runtime_process import start_runtime

    runtime = start_runtime(
        "handlers.paced_double",
        log_path=work / "runtime.log",
        args=("--workers", "1"),
        cwd=BENCH_DIR,
        env={"CHALK_INPUT_ARGS": "x"},
    )
    client: ChalkClient | None = None
    try:
        asyncio.run(wait_until_serving(runtime.target, timeout_s=20))
        (work / "chalk.yaml").write_text("project: bench\n")
        os.environ.pop("CHALK_CATALOG_URL", None)
        client = ChalkClient(project_dir=work)
        route_to_runtime(client, GROUP, runtime.target)
        yield client
    finally:
        if client is not None:
            client.close()
        runtime.stop()


def _check(answer: pa.Array | pa.ChunkedArray, values: pa.Array, side: str) -> None:
    if not pc.all(pc.equal(answer, pc.multiply(values, 2.0))).as_py():
        raise RuntimeError(f"{side} answered wrongly: expected y = x * 2 for every row")


def _caller_pass(caller: ModelCaller, values: pa.Array, side: Side, label: str) -> None:
    recorder = CallRecorder()
    started = time.perf_counter()
    with recording(recorder):
        answer = caller.call_blocking(feature="draw.y", name=f"model.{GROUP}", args=[values])
    side.wall_s.append(time.perf_counter() - started)
    calls = recorder.groups()[GROUP]
    side.rows_asked, side.rows_sent = calls.rows_asked, calls.rows_sent
    _check(answer, values, label)


def _query_pass(client: ChalkClient, table: pa.Table, side: Side, label: str) -> None:
    started = time.perf_counter()
    dataset = client.offline_query(table, [Draw.y], show_progress=False)
    side.wall_s.append(time.perf_counter() - started)
    calls = dataset.model_calls[GROUP]
    side.rows_asked, side.rows_sent = calls.rows_asked, calls.rows_sent
    _check(dataset.to_arrow().column("draw.y"), table.column("draw.x"), label)


def _dedupe_ms(values: pa.Array, repetitions: int, *, sample_rows: int = SAMPLE_ROWS) -> float:
    batch = pa.record_batch({"x": values})
    times = []
    for _repetition in range(repetitions):
        started = time.perf_counter()
        dedupe(batch, sample_rows=sample_rows)
        times.append(time.perf_counter() - started)
    return min(times) * 1e3


def dedup_figures(work: Path, passes: int, progress: Callable[[str], None]) -> list[list[str]]:
    """The deduplication lines of the results table: figure, unit, value, target, met."""
    values = zipf_values(ROWS, DISTINCT)
    table = pa.table({"draw.id": pa.array(range(ROWS), pa.int64()), "draw.x": values})
    on, off, query_on, query_off = Side(), Side(), Side(), Side()
    with _paced_group(work) as client:
        catalog = open_catalog(client.project)
        with ModelCaller(catalog) as dedup_on, ModelCaller(catalog, dedup=False) as dedup_off:
            sides = [
                lambda: _caller_pass(dedup_on, values, on, "ModelCaller, dedup on"),
                lambda: _caller_pass(dedup_off, values, off, "ModelCaller, dedup off"),
            ]
            for index in range(passes):
                progress(f"ModelCaller: pass {index + 1} of {passes} per side")
                for run in sides if index % 2 == 0 else reversed(sides):
                    run()
        progress("offline_query: one pass per side")
        _query_pass(client, table, query_on, "offline_query, dedup on")
        with _environment(DEDUP_ENV, "0"), ChalkClient(project_dir=client.project.root) as plain:
            _query_pass(plain, table, query_off, "offline_query, CHALK_DEDUP=0")
    progress("dedupe alone")
    zipf_ms = _dedupe_ms(values, 3)
    distinct = pa.array(np.arange(ROWS) * 0.5, pa.float64())
    distinct_ms = _dedupe_ms(distinct, 3)
    hashed_ms = _dedupe_ms(distinct, 3, sample_rows=0)
    small_ms = _dedupe_ms(values.slice(0, 16), 200)
    sent = on.rows_sent / on.rows_asked
    speedup = off.median() / on.median()
    return [
        _line("rows asked per call", "rows", on.rows_asked),
        _line("rows sent, dedup on", "rows", on.rows_sent),
        _line("rows sent / rows asked, dedup on", "ratio", sent, "<=", SENT_TARGET),
        _line("rows sent, dedup off", "rows", off.rows_sent),
        _line("ModelCaller wall, dedup on (median)", "s", on.median()),
        _line("ModelCaller wall, dedup off (median)", "s", off.median()),
        _line("off / on wall (medians)", "ratio", speedup, ">=", SPEEDUP_TARGET),
        _line("off / on wall (bests)", "ratio", off.best() / on.best()),
        _line("offline_query wall, dedup on", "s", query_on.median()),
        _line("offline_query wall, CHALK_DEDUP=0", "s", query_off.median()),
        _line("offline_query off / on", "ratio", query_off.median() / query_on.median()),
        _line("offline_query rows sent, dedup on", "rows", query_on.rows_sent),
        _line("offline_query rows sent, CHALK_DEDUP=0", "rows", query_off.rows_sent),
        _line("dedupe() on the 1M rows (10% distinct)", "ms", zipf_ms),
        _line("dedupe() on 1M distinct rows (sample only)", "ms", distinct_ms),
        _line("dedupe() on 1M distinct rows, no sample", "ms", hashed_ms),
        _line("dedupe() on 16 rows", "ms", small_ms),
    ]


def _line(
    figure: str, unit: str, value: float, op: str | None = None, bound: float | None = None
) -> list[str]:
    shown = f"{value:.3f}" if unit == "ratio" else number(value)
    if op is None or bound is None:
        return [figure, unit, shown, "-", "-"]
    met = value <= bound if op == "<=" else value >= bound
    return [figure, unit, shown, f"{op} {bound:g}", "yes" if met else "NO"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one pass per side: a rougher run")
    parser.add_argument(
        "--part",
        choices=("all", "dedup", "batching", "cache"),
        default="all",
        help="what to measure",
    )
    parser.add_argument(
        "--delay-ms",
        type=float,
        help="batch_max_delay_ms of the batching side (default: the engine's)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    # tests.support is not installed, and running bench/calls.py puts only bench/ on sys.path.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    began = time.perf_counter()
    progress = progress_printer()
    passes = 1 if args.quick else 3
    lines: list[list[str]] = []
    cache: list[list[str]] = []
    batching = ""
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as work:
        for part in ("dedup", "batching", "cache"):
            (Path(work) / part).mkdir()
        if args.part in ("all", "dedup"):
            lines = dedup_figures(Path(work) / "dedup", passes, progress)
        if args.part in ("all", "cache"):
            cache = cache_figures(_paced_group, Path(work) / "cache", progress)
        if args.part in ("all", "batching"):
            batching = batching_table(Path(work) / "batching", args.quick, args.delay_ms, progress)
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"{'quick' if args.quick else 'full'} mode: {passes} ModelCaller passes per side; "
        f"total {time.perf_counter() - began:.0f} s"
    )
    if lines:
        print()
        print(format_grid(("figure", "unit", "value", "target", "met"), lines, left=2))
    if cache:
        print()
        header = ("answer cache (max_staleness)", "unit", "in-process", "redis", "target", "met")
        print(format_grid(header, cache, left=2))
    if batching:
        print()
        print(batching)


if __name__ == "__main__":
    main()
