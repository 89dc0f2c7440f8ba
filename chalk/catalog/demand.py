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

__all__ = ["DEMAND_MAX_AGE", "DEMAND_ROWS_KEPT", "DemandFigures", "DemandStore", "GroupDemand"]

# A row not rewritten for this long no longer counts as demand: its process stopped calling,
# or stopped.
DEMAND_MAX_AGE: Final = dt.timedelta(seconds=5)
# Rows untouched for this long are deleted on the next publish (their last call time no
# longer matters to any idle period).
DEMAND_ROWS_KEPT: Final = dt.timedelta(days=1)


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
    """The demand rows: one per (group name, calling process)."""

    def __init__(self, catalog: Transactions) -> None:
        self._catalog = catalog

    def publish(self, process: str, figures: Mapping[str, DemandFigures]) -> None:
        """Replace ``process``'s rows for the groups in ``figures`` (by group name), in one
        write; rows of every process untouched for ``DEMAND_ROWS_KEPT`` go too."""
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
            connection.execute(
                sa.delete(demand).where(demand.c.updated_at < now - DEMAND_ROWS_KEPT)
            )

    def forget(self, process: str) -> None:
        """Drop ``process``'s figures (it stops calling), keeping when it last called."""
        with self._catalog.write() as connection:
            connection.execute(
                sa.update(demand)
                .where(demand.c.process == process)
                .values(in_flight=0, waiting=0, updated_at=self._catalog.clock())
            )

    def totals(self, *, max_age: dt.timedelta = DEMAND_MAX_AGE) -> dict[str, GroupDemand]:
        """Each group's demand by group name; a group nobody published is absent."""
        with self._catalog.read() as connection:
            rows = connection.execute(sa.select(demand)).all()
        fresh_after = self._catalog.clock() - max_age
        sums: dict[str, GroupDemand] = {}
        for row in rows:
            found = sums.get(row.group_name, GroupDemand())
            last = found.last_call_at
            if row.last_call_at is not None and (last is None or row.last_call_at > last):
                last = row.last_call_at
            fresh = row.updated_at >= fresh_after
            sums[row.group_name] = GroupDemand(
                in_flight=found.in_flight + (row.in_flight if fresh else 0),
                waiting=found.waiting + (row.waiting if fresh else 0),
                last_call_at=last,
                processes=found.processes + int(fresh),
            )
        return sums
