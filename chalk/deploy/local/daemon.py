"""Starting, finding and stopping a project's local controller (one per project, by a lock).

``chalk up`` runs it in the foreground or detached; every command that changes desired state
on the local backend calls ``ensure_running``; ``chalk down`` calls ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final

import psutil

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.errors import CatalogError
from chalk.common.config import Project
from chalk.deploy.errors import DeployError
from chalk.deploy.local.controller import BACKEND, ControllerSettings, LocalController
from chalk.deploy.local.lock import controller_gone, controller_pid
from chalk.deploy.local.lock import lock_path as _lock_path
from chalk.deploy.local.logs import logs_dir
from chalk.deploy.local.processes import ReplicaHandle, adopt
from chalk.deploy.local.replicas import DEFAULT_GRACE_S
from chalk.deploy.local.stored import StoredSpecError, stored_spec
from chalk.deploy.states import GroupStatus

__all__ = [
    "ControllerAlreadyRunning",
    "controller_pid",
    "ensure_running",
    "logs_dir",
    "run_foreground",
    "start_detached",
    "stop",
    "stop_orphans",
]

logger = logging.getLogger("chalk.deploy.local.daemon")
_START_TIMEOUT_S: Final = 20.0
# chalk down waits for the longest shutdown_delay_seconds of any group, plus this.
_STOP_MARGIN_S: Final = 60.0


class ControllerAlreadyRunning(DeployError):
    """Another controller holds this project's lock."""


@contextlib.contextmanager
def _hold_lock(project: Project) -> Iterator[IO[str]]:
    path = _lock_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ControllerAlreadyRunning(
                f"a local controller is already running for {project.root} "
                f"(pid {controller_pid(project)}); stop it with `chalk down`"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield lock
        finally:
            lock.seek(0)
            lock.truncate()


def run_foreground(project: Project, *, settings: ControllerSettings | None = None) -> int:
    """Hold the lock and reconcile until SIGTERM or SIGINT; returns the exit code."""
    with _hold_lock(project):
        catalog = open_catalog(project)
        controller = LocalController(
            catalog, settings or ControllerSettings(logs_dir=logs_dir(project))
        )

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            logger.info("local controller %d running for %s", os.getpid(), project.root)
            await controller.run(stop)
            logger.info("local controller stopped; every replica has exited")

        asyncio.run(main())
    return 0


def start_detached(project: Project) -> int:
    """Start ``chalk up`` in the background and wait for its first heartbeat; returns its pid."""
    log_dir = logs_dir(project)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "controller.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "chalk.cli", "up"],
            cwd=project.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    catalog = open_catalog(project)
    give_up = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < give_up:
        beat = catalog.state.controller(BACKEND)
        if beat is not None and beat.pid == process.pid:
            return process.pid
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise CatalogError(
        f"the local controller did not start (exit code {process.poll()}); see "
        f"{log_dir / 'controller.log'}"
    )


def ensure_running(project: Project) -> int | None:
    """Start the controller detached when none runs; returns the new pid, or None if one ran.

    A controller run inside another process (tests, an embedding program) holds no lock but
    beats: a second one started beside it would adopt its replicas and fight it over them.
    """
    if controller_pid(project) is not None or _reports_without_lock(project):
        return None
    try:
        return start_detached(project)
    except CatalogError:
        # Two commands may race to start it; the loser finds the winner's lock.
        if controller_pid(project) is not None:
            return None
        raise


def _reports_without_lock(project: Project) -> bool:
    """A fresh heartbeat, and no lock released by a daemon that died or stopped since."""
    return open_catalog(project).local_controller_running() and not controller_gone(project)


def stop(project: Project, *, timeout_s: float | None = None) -> bool:
    """SIGTERM the running controller and return once it and every replica have exited.

    The controller stops its replicas before it exits; replicas it could not stop (it was
    killed meanwhile) are stopped here, as ``stop_orphans`` does. Returns False when no
    controller was running (then ``stop_orphans`` cleans up after one that died).

    Raises
    ------
    CatalogError
        When the controller has not exited within ``timeout_s`` (default: the longest
        ``shutdown_delay_seconds`` of any group plus a minute); the message names its pid.
    """
    pid = _running_pid(project)
    if pid is None:
        return False
    process = _process(pid)
    if timeout_s is None:
        timeout_s = _STOP_MARGIN_S + _longest_grace_s(open_catalog(project))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    give_up = time.monotonic() + timeout_s
    # The lock goes when run_foreground returns; the process exits a moment later.
    while _is_running(process) or controller_pid(project) == pid:
        if time.monotonic() > give_up:
            raise _did_not_stop(project, pid, timeout_s)
        time.sleep(0.05)
    with contextlib.suppress(ControllerAlreadyRunning):
        # A controller started meanwhile holds the lock: the replicas are its own.
        stop_orphans(project)
    return True


def _running_pid(project: Project) -> int | None:
    """The controller's pid; waits a moment for a controller that has the lock but no pid yet."""
    give_up = time.monotonic() + _START_TIMEOUT_S
    pid = controller_pid(project)
    while pid is not None and pid <= 0 and time.monotonic() < give_up:
        time.sleep(0.05)
        pid = controller_pid(project)
    return pid if pid is not None and pid > 0 else None


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _is_running(process: psutil.Process | None) -> bool:
    """Whether ``process`` (the same one: pid and start time) runs; a zombie has exited."""
    if process is None or not process.is_running():
        return False
    with contextlib.suppress(ChildProcessError):
        # This process started it (``ensure_running``): reap it, or it stays a zombie.
        os.waitpid(process.pid, os.WNOHANG)
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _did_not_stop(project: Project, pid: int, timeout_s: float) -> CatalogError:
    log = logs_dir(project) / "controller.log"
    return CatalogError(
        f"the local controller (pid {pid}) did not exit within {timeout_s:g}s of SIGTERM; "
        f"see {log}. Stop it with `kill -KILL {pid}`, then run `chalk down` again to stop "
        "the replicas it leaves"
    )


def _longest_grace_s(catalog: Catalog) -> float:
    delays: list[float] = []
    for group in catalog.groups.list():
        try:
            delays.append(stored_spec(group).scaling.effective_shutdown_delay_seconds)
        except StoredSpecError:  # the controller stops its replicas with its default grace
            delays.append(DEFAULT_GRACE_S)
    return float(max(delays, default=0))


def stop_orphans(project: Project, *, grace_s: float = 5.0) -> int:
    """Stop replicas a dead controller left running (checked by pid and start time).

    Returns how many were stopped; their rows and the groups' endpoints are cleared.
    """
    # Holding the controller's lock: a controller started meanwhile must not lose its replicas.
    with _hold_lock(project):
        return _stop_orphans(project, grace_s=grace_s)


def _stop_orphans(project: Project, *, grace_s: float) -> int:
    catalog = open_catalog(project)
    handles = _orphans(catalog, logs_dir(project))
    for handle in handles:
        handle.signal_group(signal.SIGTERM)
    give_up = time.monotonic() + grace_s
    while any(h.exit_reason() is None for h in handles) and time.monotonic() < give_up:
        time.sleep(0.05)
    for handle in handles:
        if handle.exit_reason() is None:
            handle.signal_group(signal.SIGKILL)
    for group in catalog.groups.list():
        for row in catalog.state.replicas(group.id):
            catalog.state.remove_replica(group.id, row.replica_id)
        catalog.groups.report(
            group.id,
            status=GroupStatus.STOPPED.value,
            desired=0,
            ready=0,
            available=0,
            endpoints=[],
        )
    return len(handles)


def _orphans(catalog: Catalog, log_dir: Path) -> list[ReplicaHandle]:
    found = []
    for group in catalog.groups.list(include_deleted=True):
        for row in catalog.state.replicas(group.id):
            handle = adopt(row, log_dir / group.name / f"{row.replica_id}.log")
            if handle is not None:
                found.append(handle)
    return found
