"""Metrics you can find: the real controller's and a real replica's ``/metrics`` over HTTP, the
usage the controller writes into the catalog, and ``chalk scaling-group get|top`` showing it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import urllib.request
from collections.abc import Callable

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chalk.catalog import Catalog
from chalk.catalog.records import Replica
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.cli import main
from chalk.common.config import Project
from chalk.deploy.groups import pin_image
from chalk.shim import RemoteCallClient
from tests.deploy.local.conftest import RunningController, save_image, wait_for

Start = Callable[..., RunningController]

# Doubles its input; a negative first value holds the call while the file HOLD names exists,
# so a test can keep a call in flight for as long as it looks.
SLOW_HANDLER = """
import os
import time
import pyarrow.compute as pc

def handler(event, context):
    values = next(iter(event.values()))
    while values[0].as_py() < 0 and os.path.exists(os.environ["HOLD"]):
        time.sleep(0.02)
    return pc.multiply(values, 2)
"""


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the Prometheus text on 127.0.0.1:port, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def call(target: str, values: list[float]) -> list[float]:
    async def _call() -> list[float]:
        async with RemoteCallClient() as client:
            result = await client.call(target, {"x": pa.array(values)}, name="slow")
            return list(result.to_pylist())

    return asyncio.run(_call())


def cpu_since_ready(catalog: Catalog, ready: Replica) -> Replica | None:
    """The replica's row once it holds a CPU reading taken since it became ready (the CPU a
    replica uses starting up is not counted, so readiness clears the reading)."""
    [row] = catalog.state.replicas(ready.group_id)
    assert ready.updated_at is not None
    sampled_since = row.usage_at is not None and row.usage_at > ready.updated_at
    return row if sampled_since and row.cpu_millicores is not None else None


@pytest.fixture
def serving(catalog: Catalog, project: Project, controller: Start) -> Replica:
    """A ready one-replica model group ``slow`` under a running controller; its replica row."""
    save_image(
        catalog,
        project,
        "slow:latest",
        files={"/app/model.py": SLOW_HANDLER},
        entrypoint=("chalk-remote-call", "--handler", "model.handler", "--port", "8080"),
        exposed_port=8080,
    )
    spec = GroupSpec(
        image="slow:latest",
        model=ModelRef("m", 1),
        scaling=AutoScalingSpec(min_replicas=1, max_replicas=1, shutdown_delay_seconds=1),
        env={"HOLD": str(project.root / "hold")},
    )
    pinned = pin_image(catalog, spec, port_given=False)
    group_id = catalog.groups.create("slow", pinned.to_dict(), backend="local").id
    controller(usage_interval_s=0.2)

    def ready() -> Replica | None:
        rows = catalog.state.replicas(group_id)
        return rows[0] if rows and rows[0].ready else None

    return wait_for(ready, what="a ready replica of slow")


def test_replica_and_controller_metrics_move_as_calls_flow(
    catalog: Catalog, serving: Replica
) -> None:
    assert serving.metrics_port is not None
    assert serving.endpoint is not None
    heartbeat = catalog.state.controller("local")
    assert heartbeat is not None
    assert heartbeat.metrics_port is not None
    before = scrape(serving.metrics_port)
    passes_before = scrape(heartbeat.metrics_port)

    assert call(serving.endpoint, [1.0, 2.0]) == [2.0, 4.0]
    call(serving.endpoint, [3.0])
    after = scrape(serving.metrics_port)
    passes_after = scrape(heartbeat.metrics_port)

    calls, rows, ok = "chalk_remote_call_calls_total", "chalk_remote_call_rows_total", "ok"
    assert after[(calls, ())] - before.get((calls, ()), 0.0) == 2
    assert after[(rows, ())] - before.get((rows, ()), 0.0) == 3
    passes = ("chalk_controller_reconcile_passes_total", (("outcome", ok),))
    wait_for(
        lambda: scrape(heartbeat.metrics_port)[passes] > passes_before[passes],
        what="another reconcile pass counted",
    )
    running = ("chalk_controller_replicas", (("group", "slow"), ("state", "Running")))
    assert passes_after[running] == 1
    assert passes_after[("chalk_controller_reconcile_duration_seconds_count", ())] >= 1

    row = wait_for(lambda: cpu_since_ready(catalog, serving), what="CPU and memory in its row")
    assert row.memory_bytes is not None
    assert row.memory_bytes > 10 * 2**20  # a Python interpreter with pyarrow and grpc loaded
    assert row.metrics_port == serving.metrics_port


def test_a_restart_counts_in_the_controller_metrics(catalog: Catalog, serving: Replica) -> None:
    heartbeat = catalog.state.controller("local")
    assert heartbeat is not None
    assert heartbeat.metrics_port is not None
    assert serving.pid is not None

    os.kill(serving.pid, signal.SIGKILL)

    restarts = ("chalk_controller_replica_restarts_total", (("group", "slow"),))
    wait_for(lambda: scrape(heartbeat.metrics_port).get(restarts) == 1, what="one restart")


def test_get_and_top_show_each_replicas_load(
    catalog: Catalog, project: Project, serving: Replica, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serving.endpoint is not None
    assert serving.metrics_port is not None
    hold = project.root / "hold"
    hold.touch()
    held = threading.Thread(target=call, args=(serving.endpoint, [-1.0]))
    held.start()
    try:
        in_flight = ("chalk_remote_call_in_flight", ())
        wait_for(lambda: scrape(serving.metrics_port).get(in_flight) == 1, what="a call held")
        wait_for(lambda: cpu_since_ready(catalog, serving), what="a CPU reading since ready")
        table = _run_cli(capsys, "scaling-group", "get", "--name", "slow")
        top = json.loads(_run_cli(capsys, "scaling-group", "top", "--once", "-o", "json"))
        top_table = _run_cli(capsys, "scaling-group", "top", "--once")
        status = json.loads(_run_cli(capsys, "status", "-o", "json"))
    finally:
        hold.unlink()
        held.join()

    endpoint = f"http://127.0.0.1:{serving.metrics_port}/metrics"
    header, row = _table_row(table, "REPLICA", serving.replica_id)
    assert row["METRICS"] == endpoint
    assert row["IN FLIGHT"] == "1"
    assert re.fullmatch(r"\d+m/1000m \(\d+%\)", row["CPU"]), row
    assert re.fullmatch(r"\d+Mi/1024Mi \(\d+%\)", row["MEMORY"]), row
    assert "IN FLIGHT" in header
    [group] = top["groups"]
    assert top["controllerMetricsEndpoint"] == status["controller"]["metricsEndpoint"]
    [replica] = group["replicas"]
    assert (group["name"], replica["replica"], replica["inFlight"]) == (
        "slow",
        serving.replica_id,
        1,
    )
    assert replica["metricsEndpoint"] == endpoint
    assert type(replica["inFlight"]) is int  # as the table shows it: "1", never 1.0
    assert replica["memoryBytes"] > 0
    assert replica["memoryLimitBytes"] == 2**30
    assert replica["cpuMillicores"] is not None
    heartbeat = catalog.state.controller("local")
    assert heartbeat is not None
    controller_endpoint = f"http://127.0.0.1:{heartbeat.metrics_port}/metrics"
    assert f"controller metrics {controller_endpoint}" in top_table
    assert status["controller"]["metricsEndpoint"] == controller_endpoint
    assert endpoint in top_table


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    return out


def _table_row(text: str, first_column: str, key: str) -> tuple[str, dict[str, str]]:
    """The header line over ``first_column`` and the row starting with ``key``, as cells cut
    at the header's column starts."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith(first_column))
    row = next(line for line in lines if line.startswith(key))
    names = header.split("  ")
    names = [name.strip() for name in names if name.strip()]
    starts = [header.index(name) for name in names] + [len(row) + 1]
    cells = {
        name: row[start:end].strip()
        for name, start, end in zip(names, starts, starts[1:], strict=False)
    }
    return header, cells
