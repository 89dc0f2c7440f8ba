"""The dashboard's local series: rates and quantiles from counters, bounded rings (measured
with tracemalloc at 100 replicas), replicas dropping out after the window, and a scrape of a
real runtime beside a hung port."""

from __future__ import annotations

import asyncio
import math
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from chalk.server.dashboard.election import ScrapeElection
from chalk.server.dashboard.series import (
    NO_RUNTIME_METRICS_NOTE,
    POINTS,
    STEP_S,
    WINDOW_S,
    ControllerReading,
    Ring,
    RuntimeReading,
    Scraper,
    SeriesStore,
    Target,
    Targets,
    parse_runtime,
    quantile,
)
from chalk.shim.client import RemoteCallClient
from tests.engine.conftest import runtimes
from tests.support.runtime_process import RuntimeProcess

# Buckets as a runtime's histogram has them (seconds; cumulative counts).
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


def reading(calls: float, *, rows: float = 0.0, errors: float = 0.0) -> RuntimeReading:
    """``calls`` calls so far, each of them between 50 and 100 ms."""
    buckets = tuple((bound, calls if bound >= 0.1 else 0.0) for bound in BOUNDS)
    return RuntimeReading(calls, rows, errors, buckets, in_flight=1.0)


def test_rates_come_from_counter_increases_and_a_restart_counts_from_zero() -> None:
    store = SeriesStore()
    key = ("ner", "ner-1")

    store.record(100.0, {key: reading(10, rows=100)})
    store.record(102.0, {key: reading(30, rows=140, errors=2)})
    store.record(104.0, {key: reading(4, rows=8)})  # the replica restarted

    series = store.group_series("ner", None)
    assert series["replicas"]["ner-1"]["t"] == [102.0, 104.0]
    assert series["replicas"]["ner-1"]["callsPerSecond"] == [10.0, 2.0]
    assert series["group"]["rowsPerSecond"] == [20.0, 4.0]
    assert series["group"]["errorsPerSecond"] == [1.0, 0.0]
    assert store.group_series("ner", 102.0)["group"]["t"] == [104.0]
    assert store.calls_per_second() == {"ner": 2.0}
    assert store.in_flight() == {key: 1.0}


def test_group_latency_is_the_quantile_of_every_replicas_bucket_increases() -> None:
    store = SeriesStore()
    store.record(0.0, {("g", "a"): reading(0), ("g", "b"): reading(0)})
    store.record(2.0, {("g", "a"): reading(10), ("g", "b"): reading(10)})
    store.record(4.0, {("g", "a"): reading(10), ("g", "b"): reading(10)})

    group = store.group_series("g", None)["group"]
    assert group["callsPerSecond"] == [10.0, 0.0]
    assert group["p50Seconds"][0] == pytest.approx(0.075)
    assert group["p99Seconds"][0] == pytest.approx(0.0995)
    assert group["p50Seconds"][1] is None  # no call in that step


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(1.0, 2.0), (2.0, 4.0), (math.inf, 4.0)], 1.0),
        (0.75, [(1.0, 2.0), (2.0, 4.0), (math.inf, 4.0)], 1.5),
        (0.99, [(1.0, 0.0), (math.inf, 5.0)], 1.0),
        (0.5, [(1.0, 0.0), (math.inf, 0.0)], None),
        (0.5, [], None),
    ],
    ids=["bucket_edge", "interpolated", "past_last_bound", "no_calls", "no_buckets"],
)
def test_quantile_interpolates_inside_its_bucket(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    assert quantile(q, buckets) == expected


def test_a_ring_keeps_the_newest_points_only() -> None:
    ring = Ring()
    for step in range(POINTS + 10):
        ring.append(float(step), (float(step), 0.0, None, None, 0.0, None))

    points = ring.since(None)
    assert len(points["t"]) == POINTS
    assert points["t"][0] == 10.0
    assert points["t"][-1] == POINTS + 9
    assert ring.latest("callsPerSecond") == POINTS + 9


def test_a_replica_that_went_away_drops_out_after_the_window() -> None:
    store = SeriesStore()
    store.record(0.0, {("g", "old"): reading(0), ("g", "new"): reading(0)})
    store.record(2.0, {("g", "old"): reading(1), ("g", "new"): reading(1)})
    store.record(2.0 + WINDOW_S - STEP_S, {("g", "new"): reading(2)})
    assert set(store.group_series("g", None)["replicas"]) == {"new", "old"}

    store.record(2.0 + WINDOW_S + STEP_S, {("g", "new"): reading(3)})

    assert set(store.group_series("g", None)["replicas"]) == {"new"}
    assert ("g", "old") not in store.in_flight()


def test_restarts_per_second_come_from_the_controller() -> None:
    store = SeriesStore()
    key = ("g", "a")
    store.record(0.0, {key: reading(0)}, ControllerReading({"g": 1.0}))
    store.record(2.0, {key: reading(0)}, ControllerReading({"g": 5.0}))

    assert store.group_series("g", None)["group"]["restartsPerSecond"] == [2.0]
    assert store.group_series("g", None)["replicas"]["a"]["restartsPerSecond"] == [None]


def test_a_group_with_no_replica_read_still_charts_the_controllers_restarts() -> None:
    store = SeriesStore()
    store.record(0.0, {}, ControllerReading({"crashy": 1.0}))
    store.record(2.0, {}, ControllerReading({"crashy": 3.0}))
    store.record(4.0, {}, ControllerReading({"crashy": 3.0}))

    series = store.group_series("crashy", None)
    assert series["group"]["t"] == [2.0, 4.0]
    assert series["group"]["restartsPerSecond"] == [1.0, 0.0]
    assert series["group"]["callsPerSecond"] == [None, None]  # no replica read: unknown
    assert (series["replicas"], series["note"]) == ({}, None)


def test_a_ready_replica_without_runtime_metrics_gives_its_group_a_note() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens: a plain server without /metrics
    targets: Targets = (
        [Target("plain", "plain-1", port), Target("starting", "starting-1", port, ready=False)],
        None,
    )
    store = SeriesStore()
    scraper = Scraper(lambda: targets, store, timeout_s=0.5, clock=iter([0.0]).__next__)

    async def one_pass() -> None:
        async with httpx.AsyncClient(timeout=0.5) as http:
            await scraper.scrape_once(http)

    asyncio.run(asyncio.wait_for(one_pass(), timeout=30))

    assert store.group_series("plain", None)["note"] == NO_RUNTIME_METRICS_NOTE
    assert store.group_series("starting", None)["note"] is None


def test_rings_of_100_replicas_over_the_whole_window_stay_under_50_mb() -> None:
    tracemalloc.start()
    try:
        store = SeriesStore()
        keys = [(f"group-{i % 10}", f"group-{i % 10}-replica-{i}") for i in range(100)]
        for step in range(POINTS + 20):
            calls = float(step * 7)
            # One reading shared by every replica: the test measures the store, not these.
            shared = reading(calls, rows=calls * 3)
            store.record(step * STEP_S, dict.fromkeys(keys, shared))
        last = (POINTS + 20) * STEP_S
        store.record(last, {key: reading(1e6 + i) for i, key in enumerate(keys)})
        used, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(store.group_series("group-0", None)["replicas"]) == 10
    assert len(store.group_series("group-0", None)["group"]["t"]) == POINTS
    print(f"100 replicas, 10 groups, full window: {used / 2**20:.1f} MiB (peak {peak / 2**20:.1f})")
    assert used < 50 * 2**20, f"{used / 2**20:.1f} MiB"
    assert peak < 50 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_a_snapshot_lets_another_worker_read_the_scraping_workers_rings(tmp_path: Path) -> None:
    scraping = ScrapeElection(tmp_path, workers=2)
    other = ScrapeElection(tmp_path, workers=2)
    try:
        store = SeriesStore()
        store.record(0.0, {("g", "a"): reading(0)})
        store.record(2.0, {("g", "a"): reading(4)})
        scraping.publish(store)

        assert (scraping.scrapes, other.scrapes) == (True, False)
        assert other.read().group_series("g", None) == store.group_series("g", None)
    finally:
        scraping.close()
        other.close()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_scrape_reads_a_real_runtime_while_a_hung_replica_only_times_out(
    tmp_path: Path, hung_port: int
) -> None:
    with runtimes(tmp_path) as start:
        runtime = start("call_handlers.entities")
        port = _metrics_port(runtime)
        targets: Targets = ([Target("g", "hung", hung_port), Target("g", "real", port)], None)
        store = SeriesStore()
        scraper = Scraper(lambda: targets, store, timeout_s=0.5, clock=iter([0.0, 2.0]).__next__)

        async def two_passes_with_calls_between() -> None:
            async with httpx.AsyncClient(timeout=0.5) as http:
                await scraper.scrape_once(http)
                client = RemoteCallClient()
                try:
                    for _ in range(3):
                        await client.call(
                            runtime.target, {"text": pa.array(["a b", "c"])}, name="entities"
                        )
                finally:
                    await client.close()
                await scraper.scrape_once(http)

        asyncio.run(asyncio.wait_for(two_passes_with_calls_between(), timeout=30))

    series = store.group_series("g", None)
    assert set(series["replicas"]) == {"real"}
    assert series["replicas"]["real"]["callsPerSecond"] == [1.5]
    assert series["replicas"]["real"]["rowsPerSecond"] == [3.0]
    assert series["group"]["p50Seconds"][0] is not None


def _metrics_port(runtime: RuntimeProcess) -> int:
    [port] = [r["metrics_port"] for r in runtime.records() if "metrics_port" in r]
    return int(port)


def test_parse_runtime_sums_labelled_error_counters() -> None:
    text = (
        'chalk_remote_call_errors_total{kind="ValueError"} 2.0\n'
        'chalk_remote_call_errors_total{kind="KeyError"} 1.0\n'
        "chalk_remote_call_in_flight 3.0\n"
    )

    parsed = parse_runtime(text)

    assert (parsed.errors, parsed.in_flight, parsed.calls) == (3.0, 3.0, 0.0)
