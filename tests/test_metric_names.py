"""Every metric the server, the local controller and the runtime export is listed in the
README's Metrics table, once, with the type it has (DESIGN: metric names are listed once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from chalk.deploy.local.controller_metrics import ControllerMetrics
from chalk.server.metrics import ServerMetrics as HttpServerMetrics
from chalk.shim.metrics import ServerMetrics as RuntimeMetrics

README = Path(__file__).parents[1] / "README.md"


def _registries() -> dict[str, CollectorRegistry]:
    return {
        "server": HttpServerMetrics(CollectorRegistry()).registry,
        "controller": ControllerMetrics().registry,
        "runtime": RuntimeMetrics().registry,
    }


@pytest.mark.parametrize("process", ["server", "controller", "runtime"])
def test_every_metric_is_listed_once_in_the_readme(process: str) -> None:
    rows = [line for line in README.read_text().splitlines() if line.startswith(f"| {process} |")]
    families = [
        family
        for family in _registries()[process].collect()
        if not family.name.startswith("process_")
    ]

    assert families
    for family in families:
        name = f"{family.name}_total" if family.type == "counter" else family.name
        listed = [row for row in rows if f"| `{name}` |" in row]
        assert len(listed) == 1, f"{name} ({process}) is listed {len(listed)} times in README.md"
        assert f"| {family.type} |" in listed[0], listed[0]
