"""``chalk up|down|status`` and controller restarts, with the real detached controller."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chalk.catalog import Catalog
from chalk.catalog.errors import CatalogError
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.deploy.groups import pin_image, wait_until_serving
from chalk.deploy.local import daemon
from tests.deploy.local.conftest import alive, save_image, wait_for

CHALK = str(Path(sys.executable).with_name("chalk"))
HTTP_SERVER = (sys.executable, "-m", "http.server", "8000", "--bind", "127.0.0.1")
# Holds the controller's lock as a controller does; on SIGTERM ignores it or dies at once
# (without stopping any replica).
LOCK_HOLDER = r"""
import fcntl, os, signal, sys, time
lock = open(sys.argv[1], "a+")
fcntl.flock(lock, fcntl.LOCK_EX)
lock.seek(0)
lock.truncate()
lock.write(str(os.getpid()))
lock.flush()
signal.signal(signal.SIGTERM, signal.SIG_IGN if sys.argv[2] == "ignore" else signal.SIG_DFL)
print("locked", flush=True)
while True:
    time.sleep(1)
"""


def chalk(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=project.root, capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def stopped_afterwards(project: Project) -> Iterator[None]:
    yield
    chalk(project, "down")


@pytest.fixture
def lock_holder(project: Project) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def _start(on_sigterm: str) -> subprocess.Popen[str]:
        lock = project.state_dir / "controller.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(lock), on_sigterm],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(holder)
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        return holder

    yield _start
    for holder in started:
        holder.kill()
        holder.wait()


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


def replicas_of_a_killed_controller(catalog: Catalog, project: Project) -> tuple[str, list[int]]:
    """Two ready replicas of group ``web``, left running by a controller killed with SIGKILL."""
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    group_id = web_group(catalog)
    chalk(project, "up", "--detach")
    pids = ready_pids(catalog, group_id, 2)
    controller = daemon.controller_pid(project)
    assert controller is not None
    os.kill(controller, signal.SIGKILL)
    wait_for(lambda: daemon.controller_pid(project) is None, what="the lock to be released")
    return group_id, pids


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
    group_id, pids = replicas_of_a_killed_controller(catalog, project)
    assert all(alive(pid) for pid in pids)
    started = [e for e in catalog.state.events(group_id) if e.reason == "Started"]
    status = json.loads(chalk(project, "status", "-o", "json").stdout)
    listed = json.loads(chalk(project, "scaling-group", "list", "-o", "json").stdout)
    chalk(project, "up", "--detach")

    assert ready_pids(catalog, group_id, 2) == pids
    # Adopted, not started again: no replica beyond the two, no Started event since the kill.
    assert [e for e in catalog.state.events(group_id) if e.reason == "Started"] == started
    assert len(started) == 2
    # While no controller ran, status said what list says.
    assert status["controller"]["running"] is False
    assert status["groups"][0]["status"] == listed[0]["status"] == "Unknown"
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
    group_id, pids = replicas_of_a_killed_controller(catalog, project)

    result = chalk(project, "down")

    assert "was not running" in result.stdout
    assert not any(alive(pid) for pid in pids)
    assert catalog.state.replicas(group_id) == []
    assert catalog.groups.get("web").endpoints == ()


@pytest.mark.usefixtures("stopped_afterwards")
def test_down_returns_only_once_the_controller_and_its_replicas_have_exited(
    catalog: Catalog, project: Project
) -> None:
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    group_id = web_group(catalog)
    left_running = []

    for _ in range(3):
        chalk(project, "up", "--detach")
        controller = daemon.controller_pid(project)
        assert controller is not None
        pids = [controller, *ready_pids(catalog, group_id, 2)]
        stopped = chalk(project, "down")
        assert stopped.returncode == 0, stopped.stderr
        left_running.append([pid for pid in pids if alive(pid)])

    assert left_running == [[], [], []]


def test_down_names_the_pid_of_a_controller_that_does_not_exit(
    project: Project, lock_holder: Callable[[str], subprocess.Popen[str]]
) -> None:
    holder = lock_holder("ignore")

    expected = f"controller (pid {holder.pid}) did not exit within 0.5s of SIGTERM"
    with pytest.raises(CatalogError, match=re.escape(expected)) as raised:
        daemon.stop(project, timeout_s=0.5)

    assert f"`kill -KILL {holder.pid}`, then run `chalk down` again" in str(raised.value)
    assert alive(holder.pid)


@pytest.mark.usefixtures("stopped_afterwards")
def test_down_stops_the_replicas_a_controller_left_when_it_exited(
    catalog: Catalog, project: Project, lock_holder: Callable[[str], subprocess.Popen[str]]
) -> None:
    group_id, pids = replicas_of_a_killed_controller(catalog, project)
    # A controller that exits on SIGTERM without stopping the replicas it runs.
    holder = lock_holder("die")

    result = chalk(project, "down")

    assert "stopped the local controller" in result.stdout, result.stderr
    assert not alive(holder.pid)
    assert not any(alive(pid) for pid in pids)
    assert catalog.state.replicas(group_id) == []
    assert catalog.groups.get("web").endpoints == ()


def test_waiting_for_a_group_with_no_controller_says_to_start_one(
    catalog: Catalog, project: Project
) -> None:
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    web_group(catalog)

    with pytest.raises(CatalogError, match=r"the local controller is not running.*chalk up"):
        wait_until_serving(catalog, "web", project=project)


def test_no_daemon_starts_beside_a_controller_run_in_process(
    catalog: Catalog, project: Project, controller: Callable[..., object]
) -> None:
    # It holds no lock but beats: a daemon beside it would adopt its replicas and fight it.
    controller()
    assert daemon.ensure_running(project) is None
    assert daemon.controller_pid(project) is None


def test_up_detach_beside_a_controller_in_another_process_starts_none(
    project: Project, controller: Callable[..., Any]
) -> None:
    controller()
    again = chalk(project, "up", "--detach")
    assert again.returncode == 0, again.stderr
    assert "already running (in another process, not as a daemon)" in again.stdout
    assert daemon.controller_pid(project) is None
