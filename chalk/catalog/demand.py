"""Demand: what the calling processes ask of each scaling group, summed for the autoscaler.

Each process's ``ModelCaller`` publishes, per group it calls, its calls in flight and waiting
(queued or held while no replica is ready) and when it last called, at most once a second per
group and at once when a call finds no ready replica. The local controller reads the sums.
Reached as ``catalog.demand``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from chalk.catalog.schema import demand
from chalk.catalog.transactions import Transactions

__all__ = [
    "DEMAND_MAX_AGE",
    "DEMAND_ROWS_KEPT",
    "GROUP_ROW",
    "DemandFigures",
    "DemandStore",
    "GroupDemand",
]

# A row not rewritten for this long no longer counts as demand: its process stopped calling,
# or stopped.
DEMAND_MAX_AGE: Final = dt.timedelta(seconds=5)
# A group's row untouched for this long is deleted on the next write (its last call time no
# longer matters to any idle period).
DEMAND_ROWS_KEPT: Final = dt.timedelta(days=1)
# The ``process`` of a group's own row, where stale rows of processes leave their last call
# (no process id is this: they are host:pid:token).
GROUP_ROW: Final = "*"


@dataclass(frozen=True, slots=True)
class DemandFigures:
    """One process's figures for one group, as it publishes them.

    ``in_flight``: model calls sent and not answered; ``waiting``: calls (chunks) queued
    before merging, plus calls held while the group has no ready replica; ``last_call_at``:
    when the process last started a call to the group (None: never).
    """

    in_flight: int
    waiting: int
    last_call_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class GroupDemand:
    """One group's demand summed over the processes that published it lately.

    ``in_flight`` and ``waiting`` sum the rows at most ``DEMAND_MAX_AGE`` old;
    ``last_call_at`` is the latest call of any row, old ones included (a process that called
    and stopped still made the group busy then); ``processes`` counts the fresh rows.
    """

    in_flight: int = 0
    waiting: int = 0
    last_call_at: dt.datetime | None = None
    processes: int = 0

    @property
    def total(self) -> int:
        """Calls in flight plus waiting: what the queue-depth rule divides."""
        return self.in_flight + self.waiting


class DemandStore:
    """The demand rows: one per (group name, calling process) that published in the last
    ``DEMAND_MAX_AGE`` or so, and one per group (process ``GROUP_ROW``) keeping the last call
    time of the processes whose rows went stale: a stopped process leaves no row of its own
    behind for longer than a write's fold."""

    def __init__(self, catalog: Transactions) -> None:
        self._catalog = catalog

    def publish(self, process: str, figures: Mapping[str, DemandFigures]) -> None:
        """Replace ``process``'s rows for the groups in ``figures`` (by group name), in one
        write, and fold the stale rows of every process into their groups' rows."""
        if not figures:
            return
        now = self._catalog.clock()
        with self._catalog.write() as connection:
            connection.execute(
                sa.delete(demand).where(
                    (demand.c.process == process) & demand.c.group_name.in_(list(figures))
                )
            )
            connection.execute(
                sa.insert(demand),
                [
                    {
                        "group_name": group,
                        "process": process,
                        "in_flight": max(0, figure.in_flight),
                        "waiting": max(0, figure.waiting),
                        "last_call_at": figure.last_call_at,
                        "updated_at": now,
                    }
                    for group, figure in figures.items()
                ],
            )
            _fold_stale(connection, now)

    def forget(self, process: str) -> None:
        """Zero ``process``'s figures (it stops calling), keeping when it last called; its
        rows are folded into their groups' rows by a write once they are stale."""
        now = self._catalog.clock()
        with self._catalog.write() as connection:
            connection.execute(
                sa.update(demand)
                .where(demand.c.process == process)
                .values(in_flight=0, waiting=0, updated_at=now)
            )
            _fold_stale(connection, now)

    def totals(self, *, max_age: dt.timedelta = DEMAND_MAX_AGE) -> dict[str, GroupDemand]:
        """Each group's demand by group name, summed by the database; a group nobody
        published is absent."""
        fresh = (demand.c.updated_at >= self._catalog.clock() - max_age) & (
            demand.c.process != GROUP_ROW
        )

        def fresh_sum(column: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((fresh, column), else_=0)), 0)

        query = sa.select(
            demand.c.group_name,
            fresh_sum(demand.c.in_flight),
            fresh_sum(demand.c.waiting),
            sa.func.max(demand.c.last_call_at),
            fresh_sum(sa.literal(1, sa.Integer)),
        ).group_by(demand.c.group_name)
        with self._catalog.read() as connection:
            rows = connection.execute(query).all()
        return {
            name: GroupDemand(int(in_flight), int(waiting), last_call_at, int(processes))
            for name, in_flight, waiting, last_call_at, processes in rows
        }


def _fold_stale(connection: sa.Connection, now: dt.datetime) -> None:
    """Fold the process rows older than ``DEMAND_MAX_AGE`` (no longer demand) into one row
    per group, which keeps the group's latest call and latest write; then drop the groups'
    rows untouched for ``DEMAND_ROWS_KEPT``. Catalog writes are serialised
    (``Catalog.write``), so no other fold runs between this one's read and its writes."""
    stale = (demand.c.process != GROUP_ROW) & (demand.c.updated_at < now - DEMAND_MAX_AGE)
    folded = connection.execute(
        sa.select(
            demand.c.group_name,
            sa.func.max(demand.c.last_call_at),
            sa.func.max(demand.c.updated_at),
        )
        .where(stale)
        .group_by(demand.c.group_name)
    ).all()
    if folded:
        of_groups = (demand.c.process == GROUP_ROW) & demand.c.group_name.in_(
            [name for name, _, _ in folded]
        )
        kept: dict[str, tuple[dt.datetime | None, dt.datetime | None]] = {
            name: (last_call_at, updated_at)
            for name, last_call_at, updated_at in connection.execute(
                sa.select(demand.c.group_name, demand.c.last_call_at, demand.c.updated_at).where(
                    of_groups
                )
            )
        }
        connection.execute(sa.delete(demand).where(stale | of_groups))
        connection.execute(
            sa.insert(demand),
            [
                {
                    "group_name": name,
                    "process": GROUP_ROW,
                    "in_flight": 0,
                    "waiting": 0,
                    "last_call_at": _latest(last_call_at, kept.get(name, (None, None))[0]),
                    "updated_at": _latest(updated_at, kept.get(name, (None, None))[1]),
                }
                for name, last_call_at, updated_at in folded
            ],
        )
    connection.execute(
        sa.delete(demand).where(
            (demand.c.process == GROUP_ROW) & (demand.c.updated_at < now - DEMAND_ROWS_KEPT)
        )
    )


def _latest(*times: dt.datetime | None) -> dt.datetime | None:
    """The latest of ``times`` that are known (None: none is)."""
    known = [time for time in times if time is not None]
    return max(known) if known else None
