"""The answer cache shared through a real Redis server (chalk.yaml ``online_store``): two
``chalk serve`` processes sharing answers, and a Redis that stops mid-query costing misses,
never wrong answers, with the query's figures saying so."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chalk import functions as F
from chalk.client import ChalkClient, Dataset
from chalk.features import _, feature, features
from tests.deploy.local.conftest import wait_for
from tests.server.conftest import Reading, Server, apply, start_server
from tests.support.redis import RedisServer, redis_server

pytestmark = pytest.mark.slow

# Values no other test asks for (tests/server/test_cache.py counts from 10,000).
_FRESH = itertools.count(50_000)
# The model of tests/server/conftest.py writes a marker and sleeps 3 s for this value.
_SLOW_X = 777.0
_MARKERS = ".chalk/images/*/rootfs/app/slow-*"


@features
class Shared:
    id: int
    x: float
    doubled: float = feature(expression=F.catalog_call("model.double", _.x), max_staleness="1h")
    # A second call of the same model on the first one's answers: it looks up after it.
    quadrupled: float = feature(
        expression=F.catalog_call("model.double", _.doubled), max_staleness="1h"
    )


@pytest.fixture
def redis_project(project: Path) -> Iterator[tuple[Path, RedisServer]]:
    """The served project with ``online_store`` naming a fresh Redis server and ``Shared``
    applied beside ``Reading``; chalk.yaml is put back afterwards."""
    config = project / "chalk.yaml"
    before = config.read_text()
    with redis_server() as redis:
        config.write_text(f"{before.rstrip()}\nonline_store: {redis.url}\n")
        try:
            apply(project, Reading, Shared)
            yield project, redis
        finally:
            config.write_text(before)


def online(server: Server, x: float, output: str = "shared.doubled") -> httpx.Response:
    body = {"inputs": {"shared.id": 1, "shared.x": x}, "outputs": [output]}
    return server.http.post("/v1/query/online", json=body)


def value_and_cache(
    reply: httpx.Response, output: str = "shared.doubled"
) -> tuple[Any, dict[str, int] | None]:
    """``output``'s value, and the meta's answer cache figures of group ``double``."""
    assert reply.status_code == 200, reply.text
    values = {item["field"]: item["value"] for item in reply.json()["data"]}
    cache: dict[str, int] | None = reply.json()["meta"].get("answer_cache", {}).get("double")
    if cache is not None:  # what the store holds: not asserted here
        del cache["bytes"], cache["evictions"]
    return values[output], cache


def test_two_servers_share_answers_through_redis(
    redis_project: tuple[Path, RedisServer],
) -> None:
    project, _redis = redis_project
    first, second = start_server(project), start_server(project)
    try:
        for server in (first, second):
            wait_for(lambda s=server: online(s, 0.5).status_code == 200, what="Shared applied")
        x = float(next(_FRESH))
        rows = {Shared.id: list(range(40)), Shared.x: [float(next(_FRESH)) for _ in range(40)]}

        asked_first = value_and_cache(online(first, x))
        asked_second = value_and_cache(online(second, x))
        with ChalkClient(api_server=first.url) as client:
            client.offline_query(rows, [Shared.doubled], show_progress=False)
        with ChalkClient(api_server=second.url) as client:
            again = client.offline_query(rows, [Shared.doubled], show_progress=False)
    finally:
        first.stop()
        second.stop()

    assert asked_first == (2 * x, {"hits": 0, "misses": 1, "errors": 0})
    assert asked_second == (2 * x, {"hits": 1, "misses": 0, "errors": 0})
    calls = again.model_calls["double"]
    assert (calls.cache_hits, calls.cache_misses, calls.calls, calls.rows) == (40, 0, 0, 0)
    expected = [2 * value for value in rows[Shared.x]]
    assert again.to_arrow().column("shared.doubled").to_pylist() == expected


def test_redis_stopped_mid_query_costs_misses_and_the_dataset_says_so(
    redis_project: tuple[Path, RedisServer],
) -> None:
    project, redis = redis_project
    _remove_markers(project)
    xs = [float(next(_FRESH)), _SLOW_X, float(next(_FRESH))]
    found: list[Dataset] = []

    def query() -> None:
        with ChalkClient(project_dir=project) as client:
            rows = {Shared.id: [1, 2, 3], Shared.x: xs}
            found.append(client.offline_query(rows, [Shared.quadrupled], show_progress=False))

    thread = threading.Thread(target=query)
    thread.start()
    try:
        # The first call's lookup is done and the model is answering it: Redis goes now, so
        # the first call's write and the second call's lookup find it gone.
        wait_for(lambda: _markers(project), what="the slow row at a replica", timeout_s=60)
        redis.stop()
    finally:
        thread.join(timeout=120)
        _remove_markers(project)

    [dataset] = found
    assert dataset.to_arrow().column("shared.quadrupled").to_pylist() == [4 * x for x in xs]
    calls = dataset.model_calls["double"]
    assert calls.cache_hits == 0
    assert calls.cache_misses == 3 + 3
    assert calls.cache_errors == 1  # the second lookup
    assert calls.rows == 3 + 3


def test_a_server_whose_redis_is_down_answers_and_says_so(
    redis_project: tuple[Path, RedisServer],
) -> None:
    project, redis = redis_project
    server = start_server(project)
    try:
        wait_for(lambda: online(server, 0.5).status_code == 200, what="Shared applied")
        redis.stop()
        x = float(next(_FRESH))
        down = value_and_cache(online(server, x, "shared.quadrupled"), "shared.quadrupled")
        metrics = server.http.get("/metrics").text
    finally:
        server.stop()

    value, cache = down
    assert value == 4 * x
    assert cache is not None
    # Both calls' lookups failed (the second skipped Redis after the first's failure).
    assert cache == {"hits": 0, "misses": 2, "errors": 2}
    assert _sample(metrics, 'chalk_server_answer_cache_errors_total{group="double"}') >= 2


def _markers(project: Path) -> list[Path]:
    return list(project.glob(_MARKERS))


def _remove_markers(project: Path) -> None:
    for marker in _markers(project):
        marker.unlink(missing_ok=True)


def _sample(text: str, name: str) -> float:
    found = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    assert found, f"{name} is not in /metrics"
    return float(found[0])
