"""The dashboard's series on Kubernetes, from a REAL Prometheus (Debian's ``prometheus``)
scraping a real runtime's metrics port on 127.0.0.1 under the labels Kubernetes discovery
gives a pod; and the answer when no Prometheus is named, or the named one is away.

Without the ``prometheus`` program these tests are skipped, saying why; under CI (CI=true)
they fail instead (scripts/_prometheus.sh installs it as root).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from chalk.catalog import open_catalog
from chalk.common.config import load_project
from chalk.server.dashboard.prometheus import Instant, PrometheusError, PrometheusSeries
from chalk.server.dashboard.routes import Dashboard
from chalk.shim.client import RemoteCallClient
from tests.engine.call_handlers import BLOCK
from tests.engine.conftest import runtimes
from tests.support.promtool import require_prometheus_tool
from tests.support.runtime_process import RuntimeProcess, free_port

POD = "ner-5d8f9c-x7k2p"
# How long the runtime holds a call carrying ``BLOCK``: several of Prometheus' 1 s scrapes.
BLOCK_S = 4.0


def _prometheus_program() -> str:
    return require_prometheus_tool("prometheus")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RuntimeProcess]]:
    """A Prometheus on 127.0.0.1 scraping a runtime every second as pod ``POD`` of group
    ``ner`` in namespace ``ml``: its URL and the runtime."""
    program = _prometheus_program()
    directory = tmp_path_factory.mktemp("prometheus")
    with runtimes(directory) as start:
        runtime = start("call_handlers.picky", env={"BLOCK_SECONDS": str(BLOCK_S)})
        [metrics] = [r["metrics_port"] for r in runtime.records() if "metrics_port" in r]
        config = directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: chalk\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics}']\n"
            f"        labels: {{namespace: ml, pod: {POD}}}\n"
        )
        port = free_port()
        log = (directory / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, directory / "prometheus.log")
            yield url, runtime
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"prometheus was not ready within 60 s: {log.read_text()}")


def test_a_groups_series_come_from_prometheus_query_range(
    scraped: tuple[str, RuntimeProcess],
) -> None:
    url, runtime = scraped

    async def calls_until_a_rate_shows() -> dict[str, Any]:
        client = RemoteCallClient()
        source = PrometheusSeries(url, "ml")
        try:
            give_up = time.monotonic() + 60
            while True:
                for _ in range(5):
                    await client.call(runtime.target, {"x": pa.array([1, 2])}, name="picky")
                found = await source.group_series("ner", now=time.time(), since=None)
                rates = found["group"]["callsPerSecond"]
                if any(v for v in rates) or time.monotonic() > give_up:
                    return found
                await asyncio.sleep(0.5)
        finally:
            await client.close()
            await source.aclose()

    found = asyncio.run(calls_until_a_rate_shows())

    group = found["group"]
    assert any(v and v > 0 for v in group["callsPerSecond"]), group
    assert any(v and v > 0 for v in group["rowsPerSecond"])
    assert any(v is not None for v in group["p99Seconds"])
    assert all(t % 2 == 0 for t in group["t"])  # on the dashboard's 2 s steps
    assert list(found["replicas"]) == [POD]
    other = asyncio.run(_series_of(url, "other", since=None))
    assert (other["group"]["t"], other["replicas"]) == ([], {})


def test_the_figures_of_now_come_from_prometheus_instant_queries(
    scraped: tuple[str, RuntimeProcess],
) -> None:
    url, runtime = scraped

    async def during_and_after_a_slow_call() -> tuple[Instant, Instant]:
        client = RemoteCallClient()
        source = PrometheusSeries(url, "ml")
        try:
            slow = asyncio.ensure_future(
                client.call(runtime.target, {"x": pa.array([BLOCK])}, name="picky")
            )
            during = await source.instant(["ner"], pods_of="ner")
            while not slow.done() and during.in_flight.get(("ner", POD), 0) < 1:
                await asyncio.sleep(0.2)
                during = await source.instant(["ner"], pods_of="ner")
            await slow
            for _ in range(5):
                await client.call(runtime.target, {"x": pa.array([1])}, name="picky")
            give_up = time.monotonic() + 30
            after = await source.instant(["ner", "other"])
            while not after.calls_per_second.get("ner") and time.monotonic() < give_up:
                await asyncio.sleep(0.3)
                after = await source.instant(["ner", "other"])
            return during, after
        finally:
            await client.close()
            await source.aclose()

    during, after = asyncio.run(during_and_after_a_slow_call())

    assert during.in_flight == {("ner", POD): 1.0}, during
    assert during.error is None
    assert during.memory_bytes[("ner", POD)] > 1_000_000  # a Python process' resident bytes
    assert during.cpu_millicores[("ner", POD)] >= 0
    assert after.calls_per_second["ner"] > 0, after
    assert "other" not in after.calls_per_second  # no pods, no figure
    assert (after.in_flight, after.memory_bytes) == ({}, {})  # no pods_of, not asked


def test_a_prometheus_that_does_not_answer_leaves_the_figures_of_now_unknown() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def ask() -> Instant:
        source = PrometheusSeries(url, "ml")
        try:
            return await source.instant(["ner"], pods_of="ner")
        finally:
            await source.aclose()

    found = asyncio.run(ask())

    assert (found.calls_per_second, found.in_flight, found.cpu_millicores) == ({}, {}, {})
    assert found.error is not None
    assert found.error.startswith(f"Prometheus at {url} did not answer")


async def _series_of(url: str, group: str, since: float | None) -> dict[str, Any]:
    source = PrometheusSeries(url, "ml")
    try:
        return await source.group_series(group, now=time.time(), since=since)
    finally:
        await source.aclose()


def test_a_prometheus_that_does_not_answer_is_an_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(PrometheusError, match=f"Prometheus at {url} did not answer"):
        asyncio.run(_series_of(url, "ner", since=None))


@pytest.mark.parametrize(
    ("prometheus", "source", "note"),
    [
        pytest.param("", "none", "kubernetes.prometheus_url", id="none_named"),
        pytest.param("  prometheus_url: http://127.0.0.1:9/\n", "prometheus", "did not answer",
                     id="named_but_away"),
    ],
)  # fmt: skip
def test_on_kubernetes_the_answer_says_where_series_come_from(
    tmp_path: Path, prometheus: str, source: str, note: str
) -> None:
    (tmp_path / "chalk.yaml").write_text(
        f"project: k\nbackend: kubernetes\nkubernetes:\n  namespace: ml\n{prometheus}"
    )
    project = load_project(tmp_path / "chalk.yaml")
    dashboard = Dashboard(project, open_catalog(project))

    async def ask() -> dict[str, Any]:
        await dashboard.start()
        try:
            return await dashboard.series("ner", None)
        finally:
            await dashboard.stop()

    answer = asyncio.run(ask())

    assert answer["source"] == source
    assert note in answer["note"]
    assert answer["group"]["t"] == []
    assert dashboard.live().source == source


def test_every_query_of_a_hyphenated_group_is_one_prometheus_accepts(
    scraped: tuple[str, RuntimeProcess],
) -> None:
    """A group's name may hold '-' (a DNS label): Prometheus refused the selector when the name
    went through re.escape ("\\-" is no escape of PromQL's strings)."""
    url, _runtime = scraped

    async def ask() -> tuple[dict[str, Any], Instant]:
        source = PrometheusSeries(url, "ml")
        try:
            series = await source.group_series("ner-small", now=time.time(), since=None)
            return series, await source.instant(["ner-small"], pods_of="ner-small")
        finally:
            await source.aclose()

    series, instant = asyncio.run(ask())

    assert series["replicas"] == {}
    assert instant.error is None
