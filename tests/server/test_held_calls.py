"""A model call to a group whose only replica is still starting is held by the server until
the real local controller has it ready, and the server's /metrics shows its demand per group
(in flight, waiting, held) while calls wait or run; so too a call to a Kubernetes group at
zero, whose Service resolves to no pod until one is ready."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from chalk.catalog import open_catalog
from chalk.client import ChalkClient
from chalk.common.config import load_project
from chalk.scaling import AutoScalingSpec
from tests.engine.test_holds_kubernetes import SERVICE, kube_group, kube_group_at
from tests.server.conftest import Server, chalk, start_server
from tests.support.dns_service import cluster_dns
from tests.support.runtime_process import free_port, start_runtime

# A handler that takes seconds to import: its replica starts, then becomes ready.
SLOW_START = """
import time
time.sleep(4)
import pyarrow.compute as pc

def handler(event, context):
    return pc.multiply(event["x"], 3.0)
"""
# A handler whose import ends its process: the replica keeps crashing.
CRASHING = """
import sys
sys.exit(3)
"""
DOCKERFILE = """FROM python:3.11-slim
WORKDIR /app
COPY model.py /app/model.py
EXPOSE 8080
ENTRYPOINT ["chalk-remote-call", "--handler", "model.handler", "--port", "8080"]
"""


def _gauge(server: Server, name: str, group: str) -> float | None:
    text = server.http.get("/metrics").text
    found = re.search(rf'^{name}{{group="{group}"}} (\S+)$', text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def _until(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    give_up = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < give_up, "never seen"
        time.sleep(0.05)


@contextmanager
def _deployed(project: Path, group: str, source: str) -> Iterator[str]:
    """Group ``group`` running ``source``, deployed without waiting for it to serve."""
    context = project / f"{group}-model"
    context.mkdir(exist_ok=True)
    (context / "model.py").write_text(source)
    (context / "Dockerfile").write_text(DOCKERFILE)
    built = chalk(project, "image", "build", context.name, "-t", f"{group}:v1")
    assert built.returncode == 0, built.stderr
    client = ChalkClient(project_dir=project)
    try:
        client.register_model_version(
            name=group,
            input_schema={"x": pa.float64()},
            output_schema={"y": pa.float64()},
            model_image=f"{group}:v1",
        )
        client.deploy_model_version_to_scaling_group(
            name=group,
            model_name=group,
            model_version=1,
            scaling=AutoScalingSpec(min_replicas=1, max_replicas=1),
            wait=False,
        )
        yield group
    finally:
        client.delete_scaling_group(group, force=True)
        client.close()


@pytest.fixture
def starting_group(project: Path) -> Iterator[str]:
    """Group ``triple``: its only replica is starting (its handler takes seconds to import)."""
    with _deployed(project, "triple", SLOW_START) as group:
        yield group


def test_a_call_is_held_while_the_groups_replica_starts_then_answered(
    server: Server, starting_group: str
) -> None:
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(
            server.http.post,
            f"/v1/models/{starting_group}/invoke",
            json={"inputs": {"x": [2.0, 5.0]}},
        )
        _until(lambda: _gauge(server, "chalk_server_model_calls_held", starting_group) == 1)
        assert _gauge(server, "chalk_server_model_calls_waiting", starting_group) == 1
        answer: httpx.Response = reply.result(timeout=120)

    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [6.0, 15.0]
    assert _gauge(server, "chalk_server_model_calls_held", starting_group) == 0


def test_a_call_in_flight_shows_in_the_in_flight_gauge(server: Server) -> None:
    with ThreadPoolExecutor(1) as pool:
        # 999 makes the model sleep 3 s (tests/server/conftest.py).
        reply = pool.submit(
            server.http.post, "/v1/models/double/invoke", json={"inputs": {"x": [999.0]}}
        )
        _until(lambda: _gauge(server, "chalk_server_model_calls_in_flight", "double") == 1)
        assert reply.result(timeout=60).status_code == 200

    assert _gauge(server, "chalk_server_model_calls_in_flight", "double") == 0


def test_a_call_to_a_crash_looping_group_fails_fast_with_the_exit_reason(
    server: Server, project: Path
) -> None:
    with _deployed(project, "crasher", CRASHING) as group:
        answer = server.http.post(f"/v1/models/{group}/invoke", json={"inputs": {"x": [1.0]}})

    assert answer.status_code == 503, answer.text
    (error,) = answer.json()["errors"]
    assert error["code"] == "MODEL_UNAVAILABLE"
    assert "scaling group 'crasher' has no ready replica and is crash-looping" in error["message"]
    assert "status CrashLoopBackOff: replica " in error["message"]
    assert "exit code 3" in error["message"]


@pytest.fixture
def in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose chalk serve runs "in the cluster" (``KUBERNETES_SERVICE_HOST``): the
    catalog routes it to a Kubernetes group's Service."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "chalk.yaml").write_text("project: cluster\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    return root


def test_a_call_to_a_kubernetes_service_with_no_pod_is_held_and_shown_to_keda(
    tmp_path: Path, in_cluster: Path
) -> None:
    # The group's Service: its name the cluster's DNS (a real DNS server, named in the target)
    # resolves to no pod: at zero.
    port = free_port()
    with cluster_dns(SERVICE) as dns:
        kube_group(open_catalog(load_project(in_cluster / "chalk.yaml")), dns.target(port))
        server = start_server(in_cluster)
        try:
            with ThreadPoolExecutor(1) as pool:
                reply = pool.submit(
                    server.http.post, "/v1/models/double/invoke", json={"inputs": {"x": [2, 5]}}
                )
                # What KEDA's prometheus trigger reads, through Prometheus.
                _until(lambda: _gauge(server, "chalk_server_model_calls_held", "double") == 1)
                assert _gauge(server, "chalk_server_model_calls_waiting", "double") == 1
                pod = start_runtime(
                    "model_handlers.double",
                    log_path=tmp_path / "pod.log",
                    args=("--port", str(port)),
                    env={"CHALK_REMOTE_CALL_HOST": "127.0.0.2"},
                )
                try:
                    dns.pods = ["127.0.0.2"]  # KEDA woke the group; its pod is ready
                    answer: httpx.Response = reply.result(timeout=60)
                finally:
                    pod.stop(timeout=5)
        finally:
            server.stop()

    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [4, 10]


def test_a_request_that_times_out_while_its_call_is_held_says_for_which_group(
    tmp_path: Path, in_cluster: Path
) -> None:
    # The hold timeout (60 s) outlasts the request's deadline (1 s): the 504 is the client's
    # answer, and names the group at zero its call waited for. A request timing out at the
    # same time on a slow model had no call held: its 504 names no group.
    slow = start_runtime(
        "model_handlers.slow",
        log_path=tmp_path / "slow.log",
        pick_port=True,
        env={"SLOW_SECONDS": "3"},
    )
    with cluster_dns(SERVICE) as dns:
        catalog = open_catalog(load_project(in_cluster / "chalk.yaml"))
        kube_group(catalog, dns.target(free_port()))
        kube_group_at(catalog, "slow", slow.target, takes=pa.float64(), gives=pa.float64())
        server = start_server(in_cluster, "--deadline", "1")
        try:
            with ThreadPoolExecutor(2) as pool:
                replies = [
                    pool.submit(
                        server.http.post, f"/v1/models/{group}/invoke", json={"inputs": {"x": [2]}}
                    )
                    for group in ("double", "slow")
                ]
                held, timed_out = (reply.result(timeout=60) for reply in replies)
        finally:
            server.stop()
            slow.stop(timeout=5)

    assert (held.status_code, timed_out.status_code) == (504, 504), (held.text, timed_out.text)
    (error,) = held.json()["errors"]
    assert error["code"] == "DEADLINE_EXCEEDED"
    assert error["message"].startswith(
        "the request took longer than its deadline of 1 s (chalk serve --deadline); its model "
        "calls to scaling group 'double' (its Service double.ml.svc.cluster.local resolves to "
        "no pod: scaled to zero, or no pod ready yet; its status when last observed: Ready) "
        "were held waiting for a ready replica"
    )
    assert "--min-replicas 1" in error["message"]
    assert timed_out.json()["errors"][0]["message"] == (
        "the request took longer than its deadline of 1 s (chalk serve --deadline)"
    )
