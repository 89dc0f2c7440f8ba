"""QA's roll, under the real local controller: a group rolls from a version answering x to one
answering 2x whose start takes seconds; an answer the old version gave mid-roll is never served
from the answer cache after the roll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, open_catalog
from chalk.client import ChalkClient
from chalk.common.config import load_project
from chalk.engine.calls import ModelCaller
from chalk.engine.recorder import CallRecorder, GroupCalls, recording
from chalk.engine.routes import ROUTE_TTL_S
from chalk.scaling import AutoScalingSpec
from tests.deploy.local.conftest import wait_for
from tests.server.conftest import chalk

HANDLER = """
import time
import pyarrow.compute as pc

def startup():
    time.sleep({startup_s})

def handler(event, context):
    return pc.multiply(event["x"], {factor})
"""
DOCKERFILE = """FROM python:3.11-slim
WORKDIR /app
COPY model.py /app/model.py
EXPOSE 8080
ENTRYPOINT ["chalk-remote-call", "--handler", "model.handler", "--on-startup", "model.startup", \
"--port", "8080"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """Group ``scale`` serving version 1 (y = x) under the real local controller; version 2
    (y = 2x, 4 s to start) registered, not deployed."""
    (tmp_path / "chalk.yaml").write_text("project: rolled\n")
    client = ChalkClient(project_dir=tmp_path)
    try:
        for version, (factor, startup_s) in enumerate([(1.0, 0), (2.0, 4)], start=1):
            context = tmp_path / f"models{version}"
            context.mkdir()
            (context / "model.py").write_text(HANDLER.format(factor=factor, startup_s=startup_s))
            (context / "Dockerfile").write_text(DOCKERFILE)
            built = chalk(tmp_path, "image", "build", context.name, "-t", f"scale:v{version}")
            assert built.returncode == 0, built.stderr
            client.register_model_version(
                name="scale",
                input_schema={"x": pa.float64()},
                output_schema={"y": pa.float64()},
                model_image=f"scale:v{version}",
            )
        client.deploy_model_version_to_scaling_group(
            name="scale",
            model_name="scale",
            model_version=1,
            scaling=AutoScalingSpec(min_replicas=1, max_replicas=1),
            wait=True,
        )
        yield tmp_path
    finally:
        client.close()
        chalk(tmp_path, "down")


def call(caller: ModelCaller, x: float) -> tuple[float, GroupCalls]:
    with recording(CallRecorder()) as recorder:
        answer = caller.call_blocking(
            feature="t.y", name="model.scale", args=[pa.array([x])], max_staleness_s=3600.0
        )
    return answer.to_pylist()[0], recorder.groups()["scale"]


def rolled(catalog: Catalog) -> bool:
    route = catalog.resolve("model.scale")
    return route.model_version == 2 and route.settled


def test_an_answer_of_the_old_version_mid_roll_is_not_cached_under_the_new(project: Path) -> None:
    catalog = open_catalog(load_project(project / "chalk.yaml"))
    with ModelCaller(catalog) as caller, ChalkClient(project_dir=project) as client:
        assert call(caller, 3.0)[0] == 3.0
        client.deploy_model_version_to_scaling_group(
            name="scale", model_name="scale", model_version=2
        )
        time.sleep(ROUTE_TTL_S)
        mid_roll, _ = call(caller, 5.0)
        assert not catalog.resolve("model.scale").settled  # the roll was still going on
        wait_for(lambda: rolled(catalog), timeout_s=60, what="the roll to version 2")
        time.sleep(ROUTE_TTL_S)
        after, after_calls = call(caller, 5.0)
        again, again_calls = call(caller, 5.0)

    assert mid_roll == 5.0  # version 1 answered, the group naming version 2
    assert (after, after_calls.cache_hits, after_calls.rows_sent) == (10.0, 0, 1)
    assert (again, again_calls.cache_hits, again_calls.rows_sent) == (10.0, 1, 0)
