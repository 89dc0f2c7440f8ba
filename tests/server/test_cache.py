"""The answer cache through the faces: ``ChalkClient`` in process, ``chalk serve`` online and
offline (one and two workers), with and without ``use_cache``, and its figures."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from chalk import functions as F
from chalk.client import ChalkClient
from chalk.features import _, feature, features
from tests.deploy.local.conftest import wait_for
from tests.server.conftest import Reading, Server, apply, start_server

# Each test asks for values no other test asked for, so that no answer is cached before it.
_FRESH = itertools.count(10_000)


@features
class Cached:
    id: int
    x: float
    doubled: float = feature(expression=F.catalog_call("model.double", _.x), max_staleness="1h")


def fresh_values(count: int) -> list[float]:
    return [float(next(_FRESH)) + 0.5 for _ in range(count)]


@pytest.fixture
def applied(project: Path, server: Server) -> Path:
    """The project with ``Cached`` applied beside ``Reading``, once the server serves it."""
    apply(project, Reading, Cached)
    wait_for(lambda: online(server, 0.5).status_code == 200, what="the graph with Cached")
    return project


def online(server: Server, x: float, **options: Any) -> httpx.Response:
    body = {"inputs": {"cached.id": 1, "cached.x": x}, "outputs": ["cached.doubled"], **options}
    return server.http.post("/v1/query/online", json=body)


def doubled(reply: httpx.Response) -> Any:
    assert reply.status_code == 200, reply.text
    return {item["field"]: item["value"] for item in reply.json()["data"]}["cached.doubled"]


def answer_cache(reply: httpx.Response) -> dict[str, int] | None:
    assert doubled(reply) is not None
    found: dict[str, int] | None = reply.json()["meta"].get("answer_cache", {}).get("double")
    return found


def test_an_online_query_asked_again_is_answered_from_the_cache(
    applied: Path, server: Server
) -> None:
    [x] = fresh_values(1)

    first = answer_cache(online(server, x))
    second_reply = online(server, x)

    assert first is not None
    assert first.pop("bytes") > 0
    assert first == {"hits": 0, "misses": 1, "errors": 0, "evictions": 0}
    second = answer_cache(second_reply)
    assert second is not None
    assert second.pop("bytes") > 0
    assert second == {"hits": 1, "misses": 0, "errors": 0, "evictions": 0}
    assert doubled(second_reply) == 2 * x


def test_use_cache_false_neither_reads_nor_fills_the_servers_cache(
    applied: Path, server: Server
) -> None:
    [x, y] = fresh_values(2)
    online(server, x)

    assert answer_cache(online(server, x, use_cache=False)) is None
    assert answer_cache(online(server, y, use_cache=False)) is None
    found = answer_cache(online(server, y))
    assert found is not None
    assert (found["hits"], found["misses"]) == (0, 1)


def test_offline_queries_through_the_server_read_and_fill_the_cache(
    applied: Path, server: Server
) -> None:
    values = fresh_values(50)
    table = {Cached.id: list(range(50)), Cached.x: values}
    with ChalkClient(api_server=server.url) as client:
        first = client.offline_query(table, [Cached.doubled], show_progress=False)
        second = client.offline_query(table, [Cached.doubled], show_progress=False)
        skipped = client.offline_query(
            table, [Cached.doubled], show_progress=False, use_cache=False
        )

    expected = [2 * value for value in values]
    for dataset in (first, second, skipped):
        assert dataset.to_arrow().column("cached.doubled").to_pylist() == expected
    assert (first.model_calls["double"].cache_misses, first.model_calls["double"].rows) == (50, 50)
    calls = second.model_calls["double"]
    assert (calls.cache_hits, calls.cache_misses, calls.calls, calls.rows) == (50, 0, 0, 0)
    assert (calls.rows_asked, calls.rows_sent) == (50, 0)
    assert calls.cache_bytes >= first.model_calls["double"].cache_bytes > 0
    calls = skipped.model_calls["double"]
    assert (calls.cache_hits, calls.cache_misses, calls.rows) == (0, 0, 50)


def test_an_offline_query_in_process_asked_again_makes_no_model_call(applied: Path) -> None:
    values = fresh_values(300)
    table = pa.table({"cached.id": list(range(300)), "cached.x": values})
    with ChalkClient(project_dir=applied) as client:
        first = client.offline_query(table, [Cached.doubled], show_progress=False)
        second = client.offline_query(table, [Cached.doubled], show_progress=False)
        skipped = client.offline_query(
            table, [Cached.doubled], show_progress=False, use_cache=False
        )
        online_value = client.query({Cached.id: 1, Cached.x: values[7]}, [Cached.doubled])

    assert second.to_arrow().equals(first.to_arrow())
    assert first.model_calls["double"].cache_misses == 300
    calls = second.model_calls["double"]
    assert (calls.cache_hits, calls.calls, calls.rows, calls.rows_sent) == (300, 0, 0, 0)
    assert calls.cache_bytes > 0
    assert skipped.model_calls["double"].rows == 300
    assert online_value.get_feature_value(Cached.doubled) == 2 * values[7]


def test_a_client_whose_cache_holds_no_bytes_calls_the_model_each_time(applied: Path) -> None:
    table = {Cached.id: [1, 2], Cached.x: fresh_values(2)}
    with ChalkClient(project_dir=applied, answer_cache_bytes=0) as client:
        client.offline_query(table, [Cached.doubled], show_progress=False)
        second = client.offline_query(table, [Cached.doubled], show_progress=False)

    calls = second.model_calls["double"]
    assert (calls.cache_hits, calls.cache_misses, calls.rows) == (0, 2, 2)


@pytest.fixture
def two_workers(applied: Path) -> Iterator[Server]:
    running = start_server(applied, "--workers", "2", "--answer-cache-bytes", "1000000")
    yield running
    running.stop()


def test_metrics_count_the_cache_over_every_worker(two_workers: Server) -> None:
    values = fresh_values(10)
    for x in values * 2:
        answer_cache(online(two_workers, x))

    text = two_workers.http.get("/metrics").text
    hits = _sample(text, 'chalk_server_answer_cache_hits_total{group="double"}')
    misses = _sample(text, 'chalk_server_answer_cache_misses_total{group="double"}')

    # Each worker keeps its own answers: a value asked of both workers misses once on each.
    assert hits + misses == 20
    assert 10 <= misses <= 20
    assert _sample(text, 'chalk_server_answer_cache_bytes{group="double"}') > 0
    assert _sample(text, 'chalk_server_answer_cache_evictions_total{group="double"}') == 0


def _sample(text: str, name: str) -> float:
    found = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    assert found, f"{name} is not in /metrics"
    return float(found[0])
