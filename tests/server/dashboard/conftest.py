"""A project for the dashboard's API tests, served by a real ``chalk serve`` (a token, two
workers) under the real local controller: group ``double`` serves, group ``wobbly`` rolls to a
version that crashes at start while its first version still serves. One for the package."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.client import ChalkClient
from chalk.scaling import AutoScalingSpec
from tests.server.conftest import DOCKERFILE, MODEL, Reading, Server, apply, chalk, start_server

TOKEN = "dash-token"
CRASHING_MODEL = 'raise RuntimeError("weights not found")\n'


@dataclass
class Served:
    """The project's root and its server (whose client sends the token)."""

    root: Path
    server: Server


def _image(root: Path, name: str, model: str, tag: str) -> None:
    context = root / name
    context.mkdir()
    (context / "model.py").write_text(model)
    (context / "Dockerfile").write_text(DOCKERFILE)
    built = chalk(root, "image", "build", name, "-t", tag)
    assert built.returncode == 0, built.stderr


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard")
    (root / "chalk.yaml").write_text("project: dashboard\n")
    _image(root, "good", MODEL, "double:v1")
    _image(root, "crash", CRASHING_MODEL, "double:crash")
    client = ChalkClient(project_dir=root)
    token_file = root / "token"
    token_file.write_text(TOKEN)
    server = None
    try:
        for image in ("double:v1", "double:crash"):
            client.register_model_version(
                name="double",
                input_schema={"x": pa.float64()},
                output_schema={"y": pa.float64()},
                model_image=image,
            )
        one = AutoScalingSpec(min_replicas=1, max_replicas=1)
        for group in ("double", "wobbly"):
            client.deploy_model_version_to_scaling_group(
                name=group, model_name="double", model_version=1, scaling=one, wait=True
            )
        # Version 2 crashes at start: wobbly's version 1 replica keeps serving.
        client.deploy_model_version_to_scaling_group(
            name="wobbly", model_name="double", model_version=2, scaling=one, wait=False
        )
        apply(root, Reading)
        server = start_server(root, "--token-file", str(token_file), "--workers", "2", token=TOKEN)
        yield Served(root, server)
    finally:
        if server is not None:
            server.stop()
        client.close()
        chalk(root, "down")
