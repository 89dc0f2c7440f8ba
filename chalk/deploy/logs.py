"""A scaling group's logs on either backend: every replica's lines, merged in time.

``chalk logs`` calls ``group_logs``; the local backend reads the replicas' files under
``.chalk/logs`` (``chalk.deploy.local.log_reader``), the Kubernetes one the pods' logs through
the API server (``chalk.deploy.kubernetes.logs``).
"""

from __future__ import annotations

from collections.abc import Iterator

from chalk.catalog import Catalog
from chalk.common.config import Project
from chalk.deploy.log_lines import LogLine, LogQuery, UnknownReplicaError

__all__ = ["LogLine", "LogQuery", "UnknownReplicaError", "group_logs"]


def group_logs(project: Project, catalog: Catalog, name: str, query: LogQuery) -> Iterator[LogLine]:
    """The lines of group ``name`` that ``query`` asks for, oldest first; following, it goes on
    until the caller stops (Ctrl-C) or the one replica asked for leaves.

    Raises NotFoundError naming an unknown group, UnknownReplicaError for an unknown replica
    (listing those there are); both before the first line.
    """
    group = catalog.groups.get(name)
    if project.config.backend == "kubernetes":
        from chalk.deploy.kubernetes.logs import cluster_logs  # noqa: PLC0415

        return cluster_logs(project, name, query)
    from chalk.deploy.local.log_reader import replica_logs  # noqa: PLC0415
    from chalk.deploy.local.logs import logs_dir  # noqa: PLC0415

    return replica_logs(catalog, group, logs_dir(project), query)
