"""Each replica's load as ``get`` and ``top`` show it, without a controller: what the catalog
rows hold, '-' for what is unknown (no answer, a stale reading, a Kubernetes pod)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.records import Replica, ReplicaUsage
from chalk.cli import main
from chalk.cli.group_usage import KUBERNETES_NOTE, replica_loads, unknown_note
from chalk.common.config import find_project

CHALK = str(Path(sys.executable).with_name("chalk"))


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalog:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return open_catalog(find_project(tmp_path))


def silent_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_group(catalog: Catalog, *, metrics_port: int | None) -> str:
    spec = {"image": "ner:1", "port": 8080, "resources": {"cpu": "500m", "memory": "512Mi"}}
    group = catalog.groups.create("ner", spec, backend="local")
    catalog.state.save_replica(
        Replica(group.id, "ner-1", 1, "Running", ready=True, pid=1, metrics_port=metrics_port)
    )
    catalog.state.save_usage([ReplicaUsage(group.id, "ner-1", 125.0, 128 * 2**20)])
    return group.id


def test_a_replica_whose_metrics_do_not_answer_shows_its_usage_and_no_calls(
    catalog: Catalog,
) -> None:
    port = silent_port()
    group_id = local_group(catalog, metrics_port=port)
    group = catalog.groups.get("ner")

    [load] = replica_loads(group, catalog.state.replicas(group_id), now=catalog.clock())

    assert load.row() == {
        "METRICS": f"http://127.0.0.1:{port}/metrics",
        "CPU": "125m/500m (25%)",
        "MEMORY": "128Mi/512Mi (25%)",
        "IN FLIGHT": "-",
    }
    assert unknown_note(group) is None


def test_a_stale_reading_is_not_shown(catalog: Catalog) -> None:
    group_id = local_group(catalog, metrics_port=None)
    group = catalog.groups.get("ner")
    later = catalog.clock() + dt.timedelta(minutes=5)

    [load] = replica_loads(group, catalog.state.replicas(group_id), now=later)

    assert (load.row()["CPU"], load.row()["MEMORY"], load.row()["METRICS"]) == ("-", "-", "-")


def test_a_kubernetes_pod_shows_dashes_and_says_why(catalog: Catalog) -> None:
    group = catalog.groups.create("ner", {"image": "ner:1", "port": 8080}, backend="kubernetes")
    pod = Replica(group.id, "ner-7d9f-abc", 1, "Running", ready=True, endpoint="10.0.0.5:8080")

    [load] = replica_loads(group, [pod], now=catalog.clock())

    assert set(load.row().values()) == {"-"}
    assert load.document()["cpu_limit_millicores"] == 1000
    assert unknown_note(group) == KUBERNETES_NOTE
    assert "metrics-server" in KUBERNETES_NOTE


def test_top_once_lists_every_group_with_its_replicas(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    local_group(catalog, metrics_port=silent_port())
    catalog.groups.create("idle", {"image": "idle:1", "port": 8080}, backend="local")

    with pytest.raises(SystemExit) as exited:
        main(["scaling-group", "top", "--once", "-o", "json"])
    document = json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["scaling-group", "top", "--once"])
    table = capsys.readouterr().out

    assert exited.value.code == 0
    assert document["controllerMetricsEndpoint"] is None
    groups = document["groups"]
    assert [(g["name"], len(g["replicas"])) for g in groups] == [("ner", 1), ("idle", 0)]
    [replica] = groups[0]["replicas"]
    assert (replica["cpuMillicores"], replica["memoryBytes"], replica["inFlight"]) == (
        125,
        128 * 2**20,
        None,
    )
    assert "125m/500m (25%)" in table
    assert "idle" in table


def test_top_name_shows_one_group_and_the_controller_metrics(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    local_group(catalog, metrics_port=None)
    catalog.groups.create("idle", {"image": "idle:1", "port": 8080}, backend="local")
    catalog.state.heartbeat("local", pid=os.getpid(), host="here", metrics_port=9321)

    with pytest.raises(SystemExit):
        main(["scaling-group", "top", "--once", "-o", "json", "--name", "idle"])
    document = json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["scaling-group", "top", "--once", "--name", "ner"])
    table = capsys.readouterr().out
    with pytest.raises(SystemExit) as unknown:
        main(["scaling-group", "top", "--once", "--name", "nope"])

    assert document["controllerMetricsEndpoint"] == "http://127.0.0.1:9321/metrics"
    assert [g["name"] for g in document["groups"]] == ["idle"]
    assert "ner-1" in table
    assert "idle" not in table
    assert "http://127.0.0.1:9321/metrics" in table
    assert unknown.value.code == 1
    assert "'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "interval",
    ["0", "-1", "soon", "nan", "inf", "1e-9"],
    ids=["zero", "negative", "text", "nan", "inf", "too-small"],
)
def test_top_refuses_an_interval_that_is_not_a_positive_number(
    catalog: Catalog, capsys: pytest.CaptureFixture[str], interval: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["scaling-group", "top", "--interval", interval])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "expected a number of seconds above 0" in err or "expected 0.1 s to 3600 s" in err


def test_top_refreshes_until_ctrl_c(catalog: Catalog, tmp_path: Path) -> None:
    group_id = local_group(catalog, metrics_port=None)
    env = {key: value for key, value in os.environ.items() if key != "CHALK_CATALOG_URL"}
    env["COLUMNS"] = "200"
    # On a terminal (a pseudo-terminal here) each refresh is drawn as it happens.
    reader, terminal = pty.openpty()
    top = subprocess.Popen(
        [CHALK, "scaling-group", "top", "--interval", "0.1"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    drawn = b""
    try:
        drawn = read_until(reader, drawn, b"125m/500m")
        catalog.state.save_usage([ReplicaUsage(group_id, "ner-1", 250.0, 128 * 2**20)])
        drawn = read_until(reader, drawn, b"250m/500m")
    finally:
        top.send_signal(signal.SIGINT)
        _, err = top.communicate(timeout=30)
        os.close(reader)

    assert top.returncode == 130, err
    assert b"ner-1" in drawn


def read_until(fd: int, drawn: bytes, wanted: bytes, timeout_s: float = 30) -> bytes:
    """What the terminal ``fd`` showed, read until ``wanted`` appears in it."""
    give_up = time.monotonic() + timeout_s
    while wanted not in drawn:
        left = give_up - time.monotonic()
        assert left > 0, f"{wanted!r} never drawn; drew {drawn[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            drawn += os.read(fd, 65536)
    return drawn
