"""A scaling group's logs on either backend: every replica's lines, merged in time.

``chalk logs`` calls ``group_logs``; the local backend reads the replicas' files under
``.chalk/logs`` (``chalk.deploy.local.log_reader``), the Kubernetes one the pods' logs through
the API server (``chalk.deploy.kubernetes.logs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from chalk.catalog import Catalog
from chalk.catalog.errors import NotFoundError
from chalk.common.config import Project
from chalk.deploy.log_lines import LogLine, LogQuery, UnknownReplicaError

__all__ = ["LogLine", "LogQuery", "UnknownReplicaError", "group_logs"]


def group_logs(
    project: Project,
    catalog: Catalog,
    name: str,
    query: LogQuery,
    *,
    note: Callable[[str], None] = lambda _: None,
) -> Iterator[LogLine]:
    """The lines of group ``name`` that ``query`` asks for, oldest first; following, it goes on
    until the caller stops (Ctrl-C) or the one replica asked for leaves.

    On the local backend the logs of replicas that have gone, of a deleted group and of a
    project whose controller is down are read from the files kept for them, without following;
    ``note`` gets one line saying which.

    Raises NotFoundError naming an unknown group, UnknownReplicaError for an unknown replica
    (listing those there are); both before the first line.
    """
    if project.config.backend == "kubernetes":
        catalog.groups.get(name)
        from chalk.deploy.kubernetes.logs import cluster_logs  # noqa: PLC0415

        return cluster_logs(project, name, query)
    from chalk.deploy.local.lock import controller_gone  # noqa: PLC0415
    from chalk.deploy.local.log_reader import deleted_group_logs, replica_logs  # noqa: PLC0415
    from chalk.deploy.local.logs import logs_dir  # noqa: PLC0415

    folder = logs_dir(project)
    group = catalog.groups.find(name)
    if group is not None:
        runs = catalog.local_controller_running() and not controller_gone(project)
        return replica_logs(catalog, group, folder, query, note=note, controller_runs=runs)
    deleted = catalog.groups.find_deleted(name)
    lines = None if deleted is None else deleted_group_logs(deleted, folder, query, note=note)
    if lines is None:
        catalog.groups.get(name)  # raises, saying whether and when it was deleted
        raise NotFoundError(f"there is no scaling group named {name!r}")
    return lines
