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


def run_top(project: Project, catalog: Catalog, *, interval_s: float, once: bool, fmt: str) -> int:
    """Show every live group's replica loads: once, or refreshed every ``interval_s`` until
    Ctrl-C (which ``chalk.cli`` turns into exit code 130)."""
    if fmt != "table":
        emit(top_document(project, catalog), fmt)
        return 0
    from rich.console import Console  # noqa: PLC0415 - loaded when used
    from rich.live import Live  # noqa: PLC0415

    console = Console(markup=False, emoji=False, highlight=False)
    if not console.is_terminal:  # piped: never wrapped, and each refresh printed in turn
        console = Console(width=1_000, markup=False, emoji=False, highlight=False)
        while True:
            console.print(_table(project, catalog))
            if once:
                return 0
            time.sleep(interval_s)
    if once:
        console.print(_table(project, catalog))
        return 0
    with Live(_table(project, catalog), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval_s)
            live.update(_table(project, catalog), refresh=True)


def top_document(project: Project, catalog: Catalog) -> list[dict[str, Any]]:
    """Every live group with its replicas' loads, as ``-o json|yaml`` prints it."""
    document = []
    for group, loads in _loads(project, catalog):
        document.append(
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
    return document


def _loads(project: Project, catalog: Catalog) -> list[tuple[ScalingGroup, list[ReplicaLoad]]]:
    now = catalog.clock()
    found = []
    for stored in catalog.groups.list():
        view = observe_group(project, catalog, stored.name)
        found.append((view.group, replica_loads(view.group, view.replicas, now=now)))
    return found


def _table(project: Project, catalog: Catalog) -> Table:
    from rich.table import Table  # noqa: PLC0415

    found = _loads(project, catalog)
    controller = catalog.state.controller("local")
    title = f"scaling groups at {catalog.clock():%H:%M:%S} UTC"
    if controller is not None and controller.metrics_port is not None:
        title += f"; controller metrics http://127.0.0.1:{controller.metrics_port}/metrics"
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
