"""``chalk scaling-group top``: every group's replicas with their load, refreshed in place
(rich Live) like ``kubectl top`` under ``watch``; piped, one table per refresh; ``--once`` and
``-o json|yaml`` print once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from chalk.cli.group_usage import USAGE_COLUMNS, ReplicaLoad, replica_loads, unknown_note
from chalk.cli.output import emit
from chalk.deploy.groups import observe_group

if TYPE_CHECKING:
    from rich.table import Table

    from chalk.catalog import Catalog, ScalingGroup
    from chalk.common.config import Project

__all__ = ["TOP_COLUMNS", "run_top", "top_document"]

TOP_COLUMNS: Final = ("GROUP", "REPLICA", "STATE", "CPU", "MEMORY", "IN FLIGHT", "METRICS")


def run_top(
    project: Project,
    catalog: Catalog,
    *,
    interval_s: float,
    once: bool,
    fmt: str,
    name: str | None = None,
) -> int:
    """Show every live group's replica loads (or group ``name``'s): once, or refreshed every
    ``interval_s`` until Ctrl-C (which ``chalk.cli`` turns into exit code 130)."""
    if name is not None:
        catalog.groups.get(name)  # an unknown group is refused now, not shown as empty
    if fmt != "table":
        emit(top_document(project, catalog, name), fmt)
        return 0
    from rich.console import Console  # noqa: PLC0415 - loaded when used
    from rich.live import Live  # noqa: PLC0415

    console = Console(markup=False, emoji=False, highlight=False)
    if not console.is_terminal:  # piped: never wrapped, and each refresh printed in turn
        console = Console(width=1_000, markup=False, emoji=False, highlight=False)
        while True:
            console.print(_table(project, catalog, name))
            if once:
                return 0
            time.sleep(interval_s)
    if once:
        console.print(_table(project, catalog, name))
        return 0
    with Live(_table(project, catalog, name), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval_s)
            live.update(_table(project, catalog, name), refresh=True)


def top_document(project: Project, catalog: Catalog, name: str | None = None) -> dict[str, Any]:
    """Every live group (or group ``name``) with its replicas' loads, and the local
    controller's metrics endpoint, as ``-o json|yaml`` prints them."""
    groups = []
    for group, loads in _loads(project, catalog, name):
        groups.append(
            {
                "name": group.name,
                "status": group.status,
                "backend": group.backend,
                "note": unknown_note(group),
                "replicas": [
                    {"replica": load.replica.replica_id, "state": load.replica.state}
                    | load.document()
                    for load in loads
                ],
            }
        )
    return {"controller_metrics_endpoint": _controller_metrics(catalog), "groups": groups}


def _controller_metrics(catalog: Catalog) -> str | None:
    controller = catalog.state.controller("local")
    if controller is None or controller.metrics_port is None:
        return None
    return f"http://127.0.0.1:{controller.metrics_port}/metrics"


def _loads(
    project: Project, catalog: Catalog, name: str | None
) -> list[tuple[ScalingGroup, list[ReplicaLoad]]]:
    now = catalog.clock()
    found = []
    for stored in catalog.groups.list():
        if name is not None and stored.name != name:
            continue
        view = observe_group(project, catalog, stored.name)
        found.append((view.group, replica_loads(view.group, view.replicas, now=now)))
    return found


def _table(project: Project, catalog: Catalog, name: str | None) -> Table:
    from rich.table import Table  # noqa: PLC0415

    found = _loads(project, catalog, name)
    metrics = _controller_metrics(catalog)
    title = f"scaling groups at {catalog.clock():%H:%M:%S} UTC"
    if metrics is not None:
        title += f"; controller metrics {metrics}"
    table = Table(box=None, pad_edge=False, header_style="bold", title=title)
    for column in TOP_COLUMNS:
        table.add_column(column, no_wrap=column != "METRICS")
    notes = set()
    for group, loads in found:
        note = unknown_note(group)
        if note is not None:
            notes.add(note)
        if not loads:
            table.add_row(group.name, "<none>", group.status, *("" for _ in USAGE_COLUMNS))
        for load in loads:
            cells = load.row()
            table.add_row(
                group.name,
                load.replica.replica_id,
                load.replica.state,
                *(cells[column] for column in ("CPU", "MEMORY", "IN FLIGHT", "METRICS")),
            )
    if notes:
        table.caption = "; ".join(sorted(notes))
    return table
