"""A model call to a group whose only replica is still starting is held by the server until
the real local controller has it ready, and the server's /metrics shows its demand per group
(in flight, waiting, held) while calls wait or run."""

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

from chalk.client import ChalkClient
from chalk.scaling import AutoScalingSpec
from tests.server.conftest import Server, chalk

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
