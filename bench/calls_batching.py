"""The batching part of ``bench/calls.py``: batching across queries off against on, side by
side (run as part of that script, so bench/ is on sys.path and it imports this module as
``calls_batching``).

Starts one runtime on 127.0.0.1 serving ``bench/handlers.py``'s ``burn`` (``x`` back after
1 ms of CPU plus 1 us per row) and routes two scaling groups of a throwaway project to it
(kubernetes backend, so no local controller runs): ``burn-off`` with ``batch_max_delay_ms=0``
(a queued chunk leaves at once, its own model call: no merging) and ``burn-on`` with the
engine's default delay (or ``--delay-ms``). One ``ChalkClient`` in this process queries
``y = F.catalog_call("model.burn-...", _.x)`` for one row at a time. Each figure per side, in
blocks alternating off/on/on/off:

- **64 threads.** Every thread queries in a loop for the block's length: queries/s, p99 of a
  query's wall time, and model calls per query (the runtime's calls counter over the queries).
  Targets: model calls per query with batching at most 0.2, queries/s at least 3x off's.
  Beside them, the CPU each query cost this process (every thread: the client) and the
  runtime (read from ``/proc``), which say which of the two bounds each side.
- **Lone query.** One thread, one query after another: p50. Guard: on's within 5% of off's.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from groups import route_to_runtime
from report import format_grid, number

from chalk import functions as F
from chalk.client import ChalkClient
from chalk.engine.batching import DEFAULT_BATCH_MAX_DELAY_S
from chalk.features import _, features
from chalk.shim.client import wait_until_serving

if TYPE_CHECKING:
    from tests.support.runtime_process import RuntimeProcess

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent
HANDLER: Final = "handlers.burn"
THREADS: Final = 64
CALLS_METRIC: Final = "chalk_remote_call_calls_total"
CALLS_PER_QUERY_TARGET: Final = 0.2
QPS_RATIO_TARGET: Final = 3.0
LONE_P50_RATIO_TARGET: Final = 1.05


@features
class BurnOff:
    id: int
    x: float
    y: float = F.catalog_call("model.burn-off", _.x)


@features
class BurnOn:
    id: int
    x: float
    y: float = F.catalog_call("model.burn-on", _.x)


SIDES: Final = {"off": BurnOff, "on": BurnOn}


@dataclass(frozen=True, slots=True)
class Plan:
    """How long each 64-thread block runs, the lone queries per block, and the rounds (each
    runs every side once, the order flipping every round)."""

    block_s: float
    lone_queries: int
    rounds: int


FULL: Final = Plan(block_s=3.0, lone_queries=300, rounds=4)
QUICK: Final = Plan(block_s=1.5, lone_queries=100, rounds=2)


@dataclass(slots=True)
class CallsBench:
    """What every part of this benchmark shares: the query client and the one runtime."""

    client: ChalkClient
    runtime: RuntimeProcess

    def calls_served(self) -> int:
        return int(self.runtime.metric(CALLS_METRIC))

    def runtime_cpu_s(self) -> float:
        """The runtime process's CPU seconds so far (user and system); NaN without ``/proc``."""
        try:
            stat = Path(f"/proc/{self.runtime.process.pid}/stat").read_text()
        except OSError:
            return math.nan
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of the results: a figure per side, and its target (side, op, bound) or None."""

    figure: str
    unit: str
    off: float
    on: float
    target: tuple[str, str, float] | None = None

    def verdict(self) -> str:
        if self.target is None:
            return "-"
        what, op, bound = self.target
        value = self.on / self.off if what == "on/off" else self.on
        return "yes" if (value <= bound if op == "<=" else value >= bound) else "NO"


@dataclass(slots=True)
class Load:
    """One side's 64-thread blocks: queries answered, seconds, latencies, model calls."""

    queries: int = 0
    seconds: float = 0.0
    calls: int = 0
    latencies_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    runtime_cpu_s: float = 0.0


def _query(client: ChalkClient, side: type[Any], index: int) -> None:
    value = float(index % 1000)
    result = client.query(input={side.id: index, side.x: value}, output=[side.y])
    if result.get_feature_value(side.y) != value:
        raise RuntimeError(f"the query answered {result.to_dict()}: expected y = {value}")


def _load_block(bench: CallsBench, side: type[Any], seconds: float, into: Load) -> None:
    """``THREADS`` threads querying ``side`` in a loop for ``seconds``."""
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)

    def worker(thread: int) -> None:
        mine: list[float] = []
        start.wait()
        index = thread
        while time.perf_counter() < until:
            began = time.perf_counter()
            _query(bench.client, side, index)
            mine.append(time.perf_counter() - began)
            index += THREADS
        with lock:
            into.latencies_s.extend(mine)

    calls_before = bench.calls_served()
    client_cpu, runtime_cpu = time.process_time(), bench.runtime_cpu_s()
    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker, thread) for thread in range(THREADS)]
        until = time.perf_counter() + seconds
        began = time.perf_counter()
        start.wait()
        for future in futures:
            future.result()
        into.seconds += time.perf_counter() - began
    into.calls += bench.calls_served() - calls_before
    into.client_cpu_s += time.process_time() - client_cpu
    into.runtime_cpu_s += bench.runtime_cpu_s() - runtime_cpu
    into.queries = len(into.latencies_s)


def _lone_block(bench: CallsBench, side: type[Any], queries: int, into: list[float]) -> None:
    for index in range(queries):
        began = time.perf_counter()
        _query(bench.client, side, index)
        into.append(time.perf_counter() - began)


def _abba(rounds: int, steps: Sequence[Callable[[], None]]) -> None:
    for round_index in range(rounds):
        for step in steps if round_index % 2 == 0 else list(reversed(steps)):
            step()


def measure_batching(
    bench: CallsBench, plan: Plan, progress: Callable[[str], None]
) -> list[Figure]:
    """Batching off against on: 64 threads of one-row queries, and a lone one."""
    progress("batching: warming up")
    for side in SIDES.values():
        _lone_block(bench, side, 50, [])
    loads = {name: Load() for name in SIDES}
    progress(f"batching: {THREADS} threads, {plan.rounds} blocks of {plan.block_s:g} s per side")
    _abba(
        plan.rounds,
        [
            lambda name=name, side=side: _load_block(bench, side, plan.block_s, loads[name])
            for name, side in SIDES.items()
        ],
    )
    lone: dict[str, list[float]] = {name: [] for name in SIDES}
    progress(f"batching: {plan.rounds} blocks of {plan.lone_queries} lone queries per side")
    _abba(
        plan.rounds,
        [
            lambda name=name, side=side: _lone_block(bench, side, plan.lone_queries, lone[name])
            for name, side in SIDES.items()
        ],
    )
    off, on = loads["off"], loads["on"]
    return [
        Figure(
            "model calls per query, 64 threads",
            "calls",
            off.calls / off.queries,
            on.calls / on.queries,
            ("on", "<=", CALLS_PER_QUERY_TARGET),
        ),
        Figure(
            "queries/s, 64 threads",
            "q/s",
            off.queries / off.seconds,
            on.queries / on.seconds,
            ("on/off", ">=", QPS_RATIO_TARGET),
        ),
        Figure(
            "query p50, 64 threads",
            "ms",
            _percentile_ms(off.latencies_s, 50),
            _percentile_ms(on.latencies_s, 50),
        ),
        Figure(
            "query p99, 64 threads",
            "ms",
            _percentile_ms(off.latencies_s, 99),
            _percentile_ms(on.latencies_s, 99),
        ),
        Figure(
            "client CPU per query, 64 threads",
            "ms",
            off.client_cpu_s / off.queries * 1e3,
            on.client_cpu_s / on.queries * 1e3,
        ),
        Figure(
            "runtime CPU per query, 64 threads",
            "ms",
            off.runtime_cpu_s / off.queries * 1e3,
            on.runtime_cpu_s / on.queries * 1e3,
        ),
        Figure(
            "lone query p50",
            "ms",
            _percentile_ms(lone["off"], 50),
            _percentile_ms(lone["on"], 50),
            ("on/off", "<=", LONE_P50_RATIO_TARGET),
        ),
        Figure(
            "lone query p99", "ms", _percentile_ms(lone["off"], 99), _percentile_ms(lone["on"], 99)
        ),
    ]


def _percentile_ms(latencies: Sequence[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1] * 1e3


def _format_figures(figures: Sequence[Figure]) -> str:
    body = [
        (
            f.figure,
            f.unit,
            number(f.off),
            number(f.on),
            f"{f.on / f.off:.2f}" if f.off else "-",
            f"{f.target[0]} {f.target[1]} {f.target[2]:g}" if f.target else "-",
            f.verdict(),
        )
        for f in figures
    ]
    return format_grid(("figure", "unit", "off", "on", "on/off", "target", "met"), body, left=2)


@contextmanager
def calls_bench(work: Path, delay_ms: float | None) -> Iterator[CallsBench]:
    """A project whose groups ``burn-off`` and ``burn-on`` route to one ``burn`` runtime."""
    import asyncio

    from tests.support.runtime_process import start_runtime

    runtime = start_runtime(
        HANDLER,
        log_path=work / "runtime.log",
        cwd=BENCH_DIR,
        env={"CHALK_INPUT_ARGS": "x"},
        args=("--metrics-port", "0"),
    )
    try:
        asyncio.run(wait_until_serving(runtime.target, timeout_s=30))
        (work / "chalk.yaml").write_text("project: bench\n")
        client = ChalkClient(project_dir=work)
        route_to_runtime(client, "burn-off", runtime.target, batch_max_delay_ms=0)
        on = {} if delay_ms is None else {"batch_max_delay_ms": delay_ms}
        route_to_runtime(client, "burn-on", runtime.target, **on)
        try:
            yield CallsBench(client, runtime)
        finally:
            client.close()
    finally:
        runtime.stop()


def batching_table(
    work: Path, quick: bool, delay_ms: float | None, progress: Callable[[str], None]
) -> str:
    """Run the batching part in ``work`` and return its table of figures."""
    plan = QUICK if quick else FULL
    with calls_bench(work, delay_ms) as bench:
        figures = measure_batching(bench, plan, progress)
    delay = DEFAULT_BATCH_MAX_DELAY_S * 1e3 if delay_ms is None else delay_ms
    return (
        f"batching on: batch_max_delay_ms={delay:g}; {plan.rounds} rounds of "
        f"{plan.block_s:g} s blocks and {plan.lone_queries} lone queries per side\n\n"
        f"{_format_figures(figures)}"
    )
