"""What a local replica is started with: its command line and its environment.

As in a container, a replica's environment is the image's and the group's, plus a few
variables taken from the controller's own (locale, home, user) and the ports it serves on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from chalk.catalog.records import LocalImage
from chalk.catalog.specs import GroupSpec
from chalk.deploy.local.image_runtime import image_argv, replica_env
from chalk.deploy.local.processes import substitute_port

__all__ = ["METRICS_PORT_ENV", "replica_argv", "replica_environment"]

METRICS_PORT_ENV: Final = "CHALK_REMOTE_CALL_METRICS_PORT"
# Variables a replica takes from the controller's environment; the rest comes from the image
# and the group, as in a container.
_INHERITED_ENV: Final = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "TERM")


def replica_argv(image: LocalImage, spec: GroupSpec, port: int) -> list[str]:
    """The image's (or the group's) command, the group's port replaced by the replica's."""
    return substitute_port(image_argv(image, spec.entrypoint), spec.port, port)


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
        CHALK_REMOTE_CALL_HOST="127.0.0.1",
    )
    env[METRICS_PORT_ENV] = str(metrics_port)
    return env
