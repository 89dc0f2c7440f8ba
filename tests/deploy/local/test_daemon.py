"""``chalk up|down|status`` and controller restarts, with the real detached controller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalk.catalog import Catalog
from chalk.catalog.config import Project
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec
from chalk.deploy.groups import pin_image
from chalk.deploy.local import daemon
from tests.deploy.local.conftest import alive, save_image, wait_for

CHALK = str(Path(sys.executable).with_name("chalk"))
HTTP_SERVER = (sys.executable, "-m", "http.server", "8000", "--bind", "127.0.0.1")


def chalk(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=project.root, capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def stopped_afterwards(project: Project) -> Iterator[None]:
    yield
    chalk(project, "down")


def web_group(catalog: Catalog, replicas: int = 2) -> str:
    spec = GroupSpec(
        image="web:latest",
        scaling=AutoScalingSpec(
            min_replicas=replicas, max_replicas=replicas, shutdown_delay_seconds=1
        ),
    )
    return catalog.groups.create(
        "web", pin_image(catalog, spec, port_given=False).to_dict(), backend="local"
    ).id


def ready_pids(catalog: Catalog, group_id: str, count: int) -> list[int]:
    def check() -> list[int] | None:
        rows = catalog.state.replicas(group_id)
        if len(rows) == count and all(r.ready and r.pid for r in rows):
            return sorted(r.pid for r in rows if r.pid)
        return None

    return list(wait_for(check, what=f"{count} ready replicas"))


@pytest.mark.usefixtures("stopped_afterwards")
def test_up_detach_status_and_down(catalog: Catalog, project: Project) -> None:
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    group_id = web_group(catalog)

    started = chalk(project, "up", "--detach")
    again = chalk(project, "up", "--detach")
    pids = ready_pids(catalog, group_id, 2)
    status = json.loads(chalk(project, "status", "-o", "json").stdout)
    stopped = chalk(project, "down")

    assert started.returncode == 0, started.stderr
    assert "already running" in again.stdout
    assert status["controller"]["running"] is True
    assert (status["groups"][0]["readyReplicas"], status["groups"][0]["desiredReplicas"]) == (2, 2)
    assert stopped.returncode == 0
    assert "stopped the local controller" in stopped.stdout
    assert not any(alive(pid) for pid in pids)
    assert daemon.controller_pid(project) is None
    assert catalog.state.replicas(group_id) == []


@pytest.mark.usefixtures("stopped_afterwards")
def test_a_restarted_controller_adopts_replicas_without_duplicates(
    catalog: Catalog, project: Project
) -> None:
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    group_id = web_group(catalog)
    chalk(project, "up", "--detach")
    pids = ready_pids(catalog, group_id, 2)
    controller = daemon.controller_pid(project)
    assert controller is not None

    os.kill(controller, signal.SIGKILL)
    wait_for(lambda: daemon.controller_pid(project) is None, what="the lock to be released")
    assert all(alive(pid) for pid in pids)
    chalk(project, "up", "--detach")

    assert ready_pids(catalog, group_id, 2) == pids
    chalk(project, "down")
    assert not any(alive(pid) for pid in pids)


def test_down_without_a_controller_says_so(project: Project) -> None:
    result = chalk(project, "down")

    assert result.returncode == 0
    assert "was not running" in result.stdout


def test_a_second_foreground_controller_is_refused(
    catalog: Catalog, project: Project, stopped_afterwards: None
) -> None:
    chalk(project, "up", "--detach")

    second = chalk(project, "up")

    assert second.returncode == 1
    assert "already running" in second.stderr


def test_down_after_a_controller_crash_stops_the_replicas_it_left(
    catalog: Catalog, project: Project
) -> None:
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    group_id = web_group(catalog)
    chalk(project, "up", "--detach")
    pids = ready_pids(catalog, group_id, 2)
    controller = daemon.controller_pid(project)
    assert controller is not None
    os.kill(controller, signal.SIGKILL)
    wait_for(lambda: daemon.controller_pid(project) is None, what="the lock to be released")

    result = chalk(project, "down")

    assert "was not running" in result.stdout
    assert not any(alive(pid) for pid in pids)
    assert catalog.state.replicas(group_id) == []
    assert catalog.groups.get("web").endpoints == ()
