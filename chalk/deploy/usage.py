"""A replica's CPU and memory against its group's limits: the limits a group's spec gives, and
the readings of a replica row that are fresh enough to show (``chalk scaling-group get/top``
and the dashboard both read them here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from chalk.catalog.records import Replica
from chalk.catalog.specs import GroupSpec
from chalk.common.quantities import parse_cpu, parse_memory

__all__ = ["USAGE_STALE_AFTER", "fresh_usage", "group_limits"]

# A reading older than this is not shown: the controller that took it has stopped sampling.
USAGE_STALE_AFTER: Final = dt.timedelta(seconds=60)


def group_limits(spec: Mapping[str, Any]) -> tuple[int, int]:
    """The CPU (millicores) and memory (bytes) limit of each replica of a group's stored spec."""
    limits = GroupSpec.from_dict(dict(spec)).resources.requests_and_limits()["limits"]
    return parse_cpu(limits["cpu"]), parse_memory(limits["memory"])


def fresh_usage(replica: Replica, now: dt.datetime) -> tuple[float | None, int | None]:
    """The replica's CPU (millicores) and resident memory (bytes) as last sampled; None for
    both when the sample is missing or stale."""
    if replica.usage_at is None or now - replica.usage_at >= USAGE_STALE_AFTER:
        return None, None
    return replica.cpu_millicores, replica.memory_bytes
