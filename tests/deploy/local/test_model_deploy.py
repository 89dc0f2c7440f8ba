"""Model versions deployed to scaling groups on the local backend, as the product docs do it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import open_catalog
from chalk.catalog.errors import CatalogError
from chalk.client import ChalkClient
from chalk.common.config import Project
from chalk.scaling import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.shim import RemoteCallClient, TransportError
from chalk.shim.errors import RemoteCallError

CHALK = str(Path(sys.executable).with_name("chalk"))

MODEL = """
import os
import pyarrow as pa

VERSION = os.environ.get("MODEL_VERSION", "v1")

def handler(event, context):
    # Named by the model's input_schema through CHALK_INPUT_ARGS, whatever the caller sent.
    texts = event["text"].to_pylist()
    return pa.array([f"{VERSION}:{len(t)}" for t in texts], pa.large_string())
"""

DOCKERFILE = """FROM python:3.11-slim
WORKDIR /app
COPY model.py /app/model.py
ENV MODEL_VERSION={version}
EXPOSE 8080
ENTRYPOINT ["chalk-remote-call", "--handler", "model.handler", "--port", "8080"]
"""


def chalk(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=project.root, capture_output=True, text=True, env=env, check=False
    )


def build(project: Project, tag: str, version: str) -> None:
    context = project.root / "models" / version
    context.mkdir(parents=True)
    (context / "model.py").write_text(MODEL)
    (context / "Dockerfile").write_text(DOCKERFILE.format(version=version))
    built = chalk(project, "image", "build", str(context), "-t", tag)
    assert built.returncode == 0, built.stderr


@pytest.fixture
def client(project: Project) -> Iterator[ChalkClient]:
    yield ChalkClient(project_dir=project.root)
    chalk(project, "down")


async def call_route(
    remote: RemoteCallClient, project: Project, group: str, texts: list[str]
) -> list[str]:
    """Call through the catalog's route, retrying a refused call on another endpoint."""
    catalog = open_catalog(project)
    last: Exception | None = None
    for _ in range(40):
        route = catalog.resolve(f"model.{group}")
        for endpoint in route.endpoints:
            try:
                result = await remote.call(
                    endpoint.target, {"document.body": pa.array(texts)}, name=group
                )
                return list(result.to_pylist())
            except TransportError as error:
                last = error
        await asyncio.sleep(0.05)
    raise AssertionError(f"no endpoint took the call: {last}")


def call_group(project: Project, group: str, texts: list[str]) -> list[str]:
    async def _call() -> list[str]:
        async with RemoteCallClient() as remote:
            return await call_route(remote, project, group, texts)

    return asyncio.run(_call())


def test_the_product_documents_example_runs_as_written(
    project: Project, client: ChalkClient
) -> None:
    build(project, "my-model-image:latest", "v1")

    registered = client.register_model_version(
        name="my-model",
        input_schema={"text": pa.large_string()},
        output_schema={"entities": pa.large_string()},
        model_image="my-model-image:latest",
    )
    group = client.deploy_model_version_to_scaling_group(
        name="my-model-scaling-group",
        model_name="my-model",
        model_version=1,
        scaling=AutoScalingSpec(
            min_replicas=1, max_replicas=2, target_cpu_utilization_percentage=70
        ),
        resources=ScalingGroupResourceRequest(cpu="2", memory="4Gi"),
        wait=True,
    )

    assert registered.model_version == 1
    assert group.status == "Ready"
    assert call_group(project, "my-model-scaling-group", ["abc", "hello"]) == ["v1:3", "v1:5"]
    stored = client.get_scaling_group("my-model-scaling-group")
    assert stored.spec["env"]["CHALK_INPUT_ARGS"] == "text"
    assert stored.spec["model"] == {"name": "my-model", "version": 1}
    assert stored.spec["resources"] == {"cpu": "2", "memory": "4Gi", "gpu": None}


def test_a_redeploy_with_nones_keeps_scaling_and_resources(
    project: Project, client: ChalkClient
) -> None:
    build(project, "m:v1", "v1")
    build(project, "m:v2", "v2")
    client.register_model_version(
        "m", {"text": pa.large_string()}, {"o": pa.large_string()}, "m:v1"
    )
    client.register_model_version(
        "m", {"text": pa.large_string()}, {"o": pa.large_string()}, "m:v2"
    )
    client.deploy_model_version_to_scaling_group(
        "g",
        "m",
        1,
        scaling=AutoScalingSpec(min_replicas=1, max_replicas=3, shutdown_delay_seconds=5),
        resources=ScalingGroupResourceRequest(cpu="500m", memory="512Mi"),
        env_vars={"EXTRA": "1"},
        wait=True,
    )

    updated = client.deploy_model_version_to_scaling_group("g", "m", 2, wait=True)

    assert updated.spec["model"] == {"name": "m", "version": 2}
    assert updated.spec["scaling"]["max_replicas"] == 3
    assert updated.spec["scaling"]["shutdown_delay_seconds"] == 5
    assert updated.spec["resources"]["memory"] == "512Mi"
    assert updated.spec["env"] == {"EXTRA": "1", "CHALK_INPUT_ARGS": "text"}
    assert call_group(project, "g", ["ab"]) == ["v2:2"]


def test_a_roll_from_v1_to_v2_under_continuous_calls_loses_no_call(
    project: Project, client: ChalkClient
) -> None:
    build(project, "m:v1", "v1")
    build(project, "m:v2", "v2")
    for tag in ("m:v1", "m:v2"):
        client.register_model_version(
            "m", {"text": pa.large_string()}, {"o": pa.large_string()}, tag
        )
    two = AutoScalingSpec(min_replicas=2, max_replicas=2, shutdown_delay_seconds=3)
    client.deploy_model_version_to_scaling_group("g", "m", 1, scaling=two, wait=True)
    answers: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    async def keep_calling(remote: RemoteCallClient) -> None:
        while not stop.is_set():
            try:
                answers.extend(await call_route(remote, project, "g", ["abcd"]))
            except (RemoteCallError, AssertionError) as error:
                failures.append(error)

    async def callers() -> None:
        # One event loop for every call, as the engine has: grpc's asyncio support is per loop.
        async with RemoteCallClient() as remote:
            await asyncio.gather(keep_calling(remote), keep_calling(remote))

    calling = threading.Thread(target=asyncio.run, args=(callers(),))
    calling.start()
    try:
        client.deploy_model_version_to_scaling_group("g", "m", 2, wait=True)
        seen_v2 = len(answers)
        while len(answers) < seen_v2 + 20 and calling.is_alive():
            time.sleep(0.01)
    finally:
        stop.set()
        calling.join(timeout=60)

    assert failures == []
    assert set(answers) <= {"v1:4", "v2:4"}
    assert "v1:4" in answers
    assert answers[-1] == "v2:4"


def test_chalk_model_deploy_from_the_command_line(project: Project, client: ChalkClient) -> None:
    build(project, "m:v1", "v1")
    client.register_model_version(
        "m", {"text": pa.large_string()}, {"o": pa.large_string()}, "m:v1"
    )

    dry = chalk(
        project,
        "model",
        "deploy",
        "--name",
        "g",
        "--model",
        "m",
        "--version",
        "1",
        "--dry-run",
        "-o",
        "json",
    )
    deployed = chalk(
        project,
        "model",
        "deploy",
        "--name",
        "g",
        "--model",
        "m",
        "--version",
        "1",
        "--replicas",
        "1",
        "--memory",
        "512Mi",
        "--wait",
    )
    bad = chalk(project, "model", "deploy", "--name", "g", "--model", "m", "--version", "7")

    assert dry.returncode == 0, dry.stderr
    assert '"CHALK_INPUT_ARGS": "text"' in dry.stdout
    assert deployed.returncode == 0, deployed.stderr
    assert "serves m version 1 at revision 1" in deployed.stdout
    assert call_group(project, "g", ["xyz"]) == ["v1:3"]
    assert bad.returncode == 1
    assert "model 'm' has no version '7'" in bad.stderr


def test_waiting_for_a_model_that_crashes_at_start_fails_fast_naming_it(
    project: Project, client: ChalkClient
) -> None:
    context = project.root / "models" / "crash"
    context.mkdir(parents=True)
    (context / "model.py").write_text('raise RuntimeError("weights not found")\n')
    (context / "Dockerfile").write_text(DOCKERFILE.format(version="crash"))
    built = chalk(project, "image", "build", str(context), "-t", "crash:1")
    assert built.returncode == 0, built.stderr
    client.register_model_version(
        name="crash",
        input_schema={"text": pa.large_string()},
        output_schema={"entities": pa.large_string()},
        model_image="crash:1",
    )

    with pytest.raises(CatalogError, match=r"'crash' cannot serve revision 1: its replicas keep"):
        client.deploy_model_version_to_scaling_group(
            name="crash", model_name="crash", model_version=1, wait=True
        )
    group = client.get_scaling_group("crash")

    # Given up after CRASH_RESTARTS restarts, long before the 300 s the wait allows.
    assert group.status == "CrashLoopBackOff"


def test_a_broken_version_on_a_ready_group_shows_which_version_serves(
    project: Project, client: ChalkClient
) -> None:
    build(project, "m:v1", "v1")
    context = project.root / "models" / "broken"
    context.mkdir(parents=True)
    (context / "model.py").write_text('raise RuntimeError("weights not found")\n')
    (context / "Dockerfile").write_text(DOCKERFILE.format(version="broken"))
    assert chalk(project, "image", "build", str(context), "-t", "m:broken").returncode == 0
    for image in ("m:v1", "m:broken"):
        client.register_model_version(
            "m", {"text": pa.large_string()}, {"out": pa.large_string()}, image
        )
    client.deploy_model_version_to_scaling_group("g", "m", 1, wait=True)

    deployed = chalk(
        project, "model", "deploy", "--name", "g", "--model", "m", "--version", "2", "--wait"
    )
    shown = chalk(project, "scaling-group", "get", "--name", "g")
    document = json.loads(
        chalk(project, "scaling-group", "get", "--name", "g", "-o", "json").stdout
    )

    assert deployed.returncode == 1
    assert "cannot serve revision 2: its replicas keep crashing" in deployed.stderr
    assert "; model m version 1 (revision 1) still serves" in deployed.stderr
    assert re.search(
        r"^Rollout: +rollout of model m version 2 \(revision 2\) failing: .+; serving model m "
        r"version 1 \(revision 1\) from 1 replica$",
        shown.stdout,
        re.MULTILINE,
    ), shown.stdout
    assert re.search(r"^Model: +m version 2 \(not serving yet: see Rollout\)$", shown.stdout, re.M)
    assert document["rollout"]["failing"] is True
    assert (document["rollout"]["servingRevision"], document["rollout"]["revision"]) == (1, 2)
    assert call_group(project, "g", ["abc"]) == ["v1:3"]
