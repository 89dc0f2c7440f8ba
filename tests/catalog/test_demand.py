"""The demand rows: published per process, summed per group, old rows expired."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.demand import DEMAND_ROWS_KEPT, GROUP_ROW, DemandFigures, GroupDemand
from chalk.catalog.schema import demand

_T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = _T0

    def __call__(self) -> dt.datetime:
        return self.now


def test_two_processes_are_summed_and_a_silent_one_expires(catalog_url: str) -> None:
    clock = _Clock()
    catalog = open_catalog(catalog_url, clock=clock)
    catalog.demand.publish("a", {"ner": DemandFigures(2, 3, _T0)})
    clock.now = _T0 + dt.timedelta(seconds=2)
    catalog.demand.publish(
        "b", {"ner": DemandFigures(1, 0, clock.now), "fraud": DemandFigures(0, 4, None)}
    )
    totals = catalog.demand.totals()
    assert totals["ner"] == GroupDemand(3, 3, _T0 + dt.timedelta(seconds=2), 2)
    assert totals["ner"].total == 6
    assert totals["fraud"] == GroupDemand(0, 4, None, 1)

    # Process a's row is now 6 s old: it no longer counts, but its last call still does.
    clock.now = _T0 + dt.timedelta(seconds=6)
    catalog.demand.publish("b", {"ner": DemandFigures(1, 1, _T0 + dt.timedelta(seconds=2))})
    assert catalog.demand.totals()["ner"] == GroupDemand(1, 1, _T0 + dt.timedelta(seconds=2), 1)


def test_a_republish_replaces_and_forget_keeps_the_last_call(catalog_url: str) -> None:
    clock = _Clock()
    catalog = open_catalog(catalog_url, clock=clock)
    catalog.demand.publish("a", {"ner": DemandFigures(5, 5, _T0)})
    catalog.demand.publish("a", {"ner": DemandFigures(1, 0, _T0)})
    assert catalog.demand.totals()["ner"] == GroupDemand(1, 0, _T0, 1)
    catalog.demand.forget("a")
    assert catalog.demand.totals()["ner"] == GroupDemand(0, 0, _T0, 1)


def test_rows_untouched_for_a_day_are_deleted_on_publish(catalog_url: str) -> None:
    clock = _Clock()
    catalog = open_catalog(catalog_url, clock=clock)
    catalog.demand.publish("a", {"ner": DemandFigures(1, 0, _T0)})
    clock.now = _T0 + DEMAND_ROWS_KEPT + dt.timedelta(seconds=1)
    catalog.demand.publish("b", {"fraud": DemandFigures(0, 1, clock.now)})
    assert set(catalog.demand.totals()) == {"fraud"}


def _rows(catalog: Catalog) -> list[tuple[str, str]]:
    with catalog.read() as connection:
        found = connection.execute(sa.select(demand.c.group_name, demand.c.process)).all()
    return sorted((group, process) for group, process in found)


def test_stopped_processes_leave_one_row_per_group_with_the_last_call(catalog_url: str) -> None:
    clock = _Clock()
    catalog = open_catalog(catalog_url, clock=clock)
    for second, process in enumerate(["q1", "q2", "q3"]):
        clock.now = _T0 + dt.timedelta(seconds=second)
        catalog.demand.publish(process, {"ner": DemandFigures(1, 0, clock.now)})
        catalog.demand.forget(process)
    last_call = _T0 + dt.timedelta(seconds=2)
    # A write after the 5 s window folds the three stopped processes into the group's row.
    clock.now = _T0 + dt.timedelta(seconds=8)
    catalog.demand.publish("live", {"fraud": DemandFigures(0, 1, clock.now)})
    assert _rows(catalog) == [("fraud", "live"), ("ner", GROUP_ROW)]
    assert catalog.demand.totals()["ner"] == GroupDemand(0, 0, last_call, 0)

    # Later stopped processes fold into that same row, which keeps the latest call.
    clock.now = _T0 + dt.timedelta(seconds=9)
    catalog.demand.publish("q4", {"ner": DemandFigures(2, 1, clock.now)})
    assert catalog.demand.totals()["ner"] == GroupDemand(2, 1, clock.now, 1)
    catalog.demand.forget("q4")
    clock.now = _T0 + dt.timedelta(seconds=20)
    catalog.demand.forget("live")
    assert _rows(catalog) == [("fraud", "live"), ("ner", GROUP_ROW)]
    totals = catalog.demand.totals()
    assert totals["ner"] == GroupDemand(0, 0, _T0 + dt.timedelta(seconds=9), 0)
    assert totals["fraud"] == GroupDemand(0, 0, _T0 + dt.timedelta(seconds=8), 1)
