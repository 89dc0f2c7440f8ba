"""The root of deploy's errors (Dockerfiles, local images, the controller, Kubernetes).

A ``ChalkError``, not a catalog error: the CLI prints any of them as one ``error:`` line.
"""

from __future__ import annotations

from chalk.common.errors import ChalkError

__all__ = ["DeployError"]


class DeployError(ChalkError):
    """Base of every error deploy raises on purpose."""
