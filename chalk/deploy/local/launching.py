"""What a local replica is started with: its command line and its environment.

As in a container, a replica's environment is the image's and the group's, plus a few
variables taken from the controller's own (locale, home, user) and the ports it serves on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Final

from chalk.catalog.records import LocalImage
from chalk.catalog.specs import GroupSpec
from chalk.deploy.local.image_runtime import image_argv, replica_args, replica_env
from chalk.deploy.local.processes import substitute_port

__all__ = ["LOOPBACK", "METRICS_PORT_ENV", "replica_argv", "replica_environment", "substitute_host"]

METRICS_PORT_ENV: Final = "CHALK_REMOTE_CALL_METRICS_PORT"
# Where every local replica of our runtime listens (DESIGN.md: local replicas stay on loopback).
LOOPBACK: Final = "127.0.0.1"
_RUNTIME_SCRIPT: Final = "chalk-remote-call"
# Variables a replica takes from the controller's environment; the rest comes from the image
# and the group, as in a container.
_INHERITED_ENV: Final = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "TERM")


def replica_argv(image: LocalImage, spec: GroupSpec, port: int) -> list[str]:
    """The image's (or the group's) command, the group's port replaced by the replica's, its
    image paths pointing into the snapshot and, for our runtime, its ``--host`` by loopback."""
    argv = substitute_port(image_argv(image, spec.entrypoint), spec.port, port)
    return substitute_host(replica_args(image, argv))


def substitute_host(argv: Sequence[str]) -> list[str]:
    """Our runtime's ``--host X`` / ``--host=X`` with X replaced by 127.0.0.1; other commands
    unchanged (what they bind is theirs; the controller warns about a wildcard listener).

    Examples
    --------
    >>> substitute_host(["chalk-remote-call", "--handler", "m.f", "--host", "0.0.0.0"])
    ['chalk-remote-call', '--handler', 'm.f', '--host', '127.0.0.1']
    >>> substitute_host(["/venv/bin/chalk-remote-call", "--host=[::]"])
    ['/venv/bin/chalk-remote-call', '--host=127.0.0.1']
    >>> substitute_host(["uvicorn", "app:app", "--host", "0.0.0.0"])
    ['uvicorn', 'app:app', '--host', '0.0.0.0']
    """
    if not argv or PurePath(argv[0]).name != _RUNTIME_SCRIPT:
        return list(argv)
    result = list(argv)
    for index, arg in enumerate(result):
        if arg == "--host" and index + 1 < len(result):
            result[index + 1] = LOOPBACK
        elif arg.startswith("--host="):
            result[index] = f"--host={LOOPBACK}"
    return result


def replica_environment(
    image: LocalImage,
    spec: GroupSpec,
    *,
    port: int,
    metrics_port: int,
    interpreter_bin: Path,
) -> dict[str, str]:
    """The environment of a replica serving on ``port`` (metrics on ``metrics_port``).

    ``interpreter_bin`` comes first on PATH, so ``python`` and ``chalk-remote-call`` are the
    project's own.
    """
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.update(replica_env(image))
    env.update(spec.env)
    path = [str(interpreter_bin)]
    path += [p for p in (env.get("PATH") or os.environ.get("PATH", "")).split(os.pathsep) if p]
    env.update(
        PATH=os.pathsep.join(path),
        PORT=str(port),
        CHALK_REMOTE_CALL_PORT=str(port),
        CHALK_REMOTE_CALL_HOST=LOOPBACK,
    )
    env[METRICS_PORT_ENV] = str(metrics_port)
    return env
