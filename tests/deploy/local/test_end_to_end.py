"""The local backend as a user drives it: build an image, create a group, call it, delete it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalk.common.config import Project
from chalk.deploy.local import daemon
from tests.deploy.local.conftest import alive, wait_for

CHALK = str(Path(sys.executable).with_name("chalk"))


def chalk(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=project.root, capture_output=True, text=True, env=env, check=False
    )


def get(project: Project, name: str) -> dict[str, Any]:
    result = chalk(project, "scaling-group", "get", "--name", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture
def down_afterwards(project: Project) -> Iterator[None]:
    yield
    chalk(project, "down")


@pytest.mark.usefixtures("down_afterwards")
def test_build_create_serve_delete_down(project: Project) -> None:
    site = project.root / "site"
    site.mkdir()
    (site / "index.html").write_text("served by a replica")
    (site / "Dockerfile").write_text(
        "FROM python:3.11-slim\n"
        "RUN pip install nothing-at-all\n"
        "WORKDIR /srv\n"
        "COPY index.html .\n"
        "EXPOSE 8000\n"
        'CMD ["python", "-m", "http.server", "8000", "--bind", "127.0.0.1"]\n'
    )

    built = chalk(project, "image", "build", "site", "-t", "site:v1")
    created = chalk(
        project,
        "scaling-group",
        "create",
        "--name",
        "site",
        "--image",
        "site:v1",
        "--replicas",
        "2",
    )

    assert built.returncode == 0, built.stderr
    assert "not used" in built.stdout
    assert "not executed" in built.stdout
    assert created.returncode == 0, created.stderr
    assert daemon.controller_pid(project) is not None
    group = wait_for(
        lambda: (g := get(project, "site"))["readyReplicas"] == 2 and g, what="2 ready replicas"
    )
    assert group["status"] == "Ready"
    with urllib.request.urlopen(f"{group['url']}/index.html", timeout=5) as reply:
        assert reply.read() == b"served by a replica"
    pids = [replica["pid"] for replica in group["replicas"]]
    assert all(alive(pid) for pid in pids)

    listed = json.loads(chalk(project, "scaling-group", "list", "-o", "json").stdout)
    deleted = chalk(project, "scaling-group", "delete", "--name", "site")

    assert [entry["name"] for entry in listed] == ["site"]
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: not any(alive(pid) for pid in pids), what="the replicas to exit")
    assert json.loads(chalk(project, "scaling-group", "list", "-o", "json").stdout) == []
    time.sleep(0.5)
    stopped = chalk(project, "down")
    assert stopped.returncode == 0
    assert daemon.controller_pid(project) is None


def test_an_image_missing_from_the_store_is_a_clear_error(project: Project) -> None:
    result = chalk(project, "scaling-group", "create", "--name", "x", "--image", "nope:v1")

    assert result.returncode == 1
    assert "image 'nope:v1' is not in this project's local image store" in result.stderr
    assert daemon.controller_pid(project) is None
