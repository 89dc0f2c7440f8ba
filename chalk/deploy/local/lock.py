"""The local controller's lock file, read without loading the controller: who holds it, and
whether a controller that held it has gone (stopped, or killed with SIGKILL).

``chalk.deploy.local.daemon`` takes the lock; the group views (``chalk scaling-group list``,
``get``, ``chalk status``) read it, so they agree the moment a controller dies.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from chalk.common.config import Project

__all__ = ["controller_gone", "controller_pid", "lock_path"]


def lock_path(project: Project) -> Path:
    return project.state_dir / "controller.lock"


def controller_pid(project: Project) -> int | None:
    """The pid of the project's running controller, or None when none holds the lock."""
    path = lock_path(project)
    if not path.exists():
        return None
    with open(path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = lock.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None


def controller_gone(project: Project) -> bool:
    """A controller ran as this project's daemon and none holds the lock now: what it last
    reported is stale at once, without waiting for its heartbeat to age.

    A controller run inside another process (tests, an embedding program) takes no lock, so
    with no lock file this is False and the heartbeat alone decides.
    """
    return lock_path(project).exists() and controller_pid(project) is None
