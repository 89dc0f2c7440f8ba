"""The demand rows: published per process, summed per group, old rows expired."""

from __future__ import annotations

import datetime as dt

from chalk.catalog import open_catalog
from chalk.catalog.demand import DEMAND_ROWS_KEPT, DemandFigures, GroupDemand

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
