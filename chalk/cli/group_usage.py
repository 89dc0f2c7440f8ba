"""What ``chalk scaling-group get`` and ``top`` show of each replica's load: its metrics
endpoint, CPU and memory against the group's limits, and the calls in flight its runtime reports.

CPU and memory come from the replica's catalog row (the local controller samples them); calls
in flight are scraped from each replica's ``/metrics`` at once, each with a short timeout; what
is unknown shows as ``-``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from chalk.catalog import ScalingGroup
from chalk.catalog.records import Replica
from chalk.deploy.local.probes import scrape_in_flight
from chalk.deploy.usage import fresh_usage, group_limits

__all__ = [
    "KUBERNETES_NOTE",
    "USAGE_COLUMNS",
    "ReplicaLoad",
    "replica_loads",
    "unknown_note",
]

USAGE_COLUMNS: Final = ("METRICS", "CPU", "MEMORY", "IN FLIGHT")
SCRAPE_TIMEOUT_S: Final = 0.5
KUBERNETES_NOTE: Final = (
    "CPU and memory of pods need metrics-server (see `kubectl top pods`), and calls in flight "
    "the pods' metrics ports, which are not reachable from here: shown as '-'"
)
_UNKNOWN: Final = "-"


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """One replica's load as ``get`` and ``top`` show it; None where unknown."""

    group: str
    replica: Replica
    metrics_endpoint: str | None
    cpu_millicores: float | None
    cpu_limit_millicores: int
    memory_bytes: int | None
    memory_limit_bytes: int
    in_flight: int | None

    def row(self) -> dict[str, Any]:
        """The table cells (``USAGE_COLUMNS``).

        Examples
        --------
        >>> load = ReplicaLoad("ner", Replica("g1", "ner-1", 1, "Running"), None, 250.0,
        ...                    1000, 300 * 2**20, 2**30, None)
        >>> load.row()
        {'METRICS': '-', 'CPU': '250m/1000m (25%)', 'MEMORY': '300Mi/1024Mi (29%)', 'IN FLIGHT': '-'}
        """  # noqa: E501
        return {
            "METRICS": self.metrics_endpoint or _UNKNOWN,
            "CPU": _against(self.cpu_millicores, self.cpu_limit_millicores, 1, "m"),
            "MEMORY": _against(self.memory_bytes, self.memory_limit_bytes, 2**20, "Mi"),
            "IN FLIGHT": _UNKNOWN if self.in_flight is None else str(self.in_flight),
        }

    def document(self) -> dict[str, Any]:
        """The ``-o json|yaml`` fields (None where unknown)."""
        return {
            "metrics_endpoint": self.metrics_endpoint,
            "cpu_millicores": None if self.cpu_millicores is None else round(self.cpu_millicores),
            "cpu_limit_millicores": self.cpu_limit_millicores,
            "memory_bytes": self.memory_bytes,
            "memory_limit_bytes": self.memory_limit_bytes,
            "in_flight": self.in_flight,
        }


def replica_loads(
    group: ScalingGroup,
    replicas: Sequence[Replica],
    *,
    now: dt.datetime,
    timeout_s: float = SCRAPE_TIMEOUT_S,
) -> list[ReplicaLoad]:
    """Each replica's load; the in-flight calls of every replica are scraped at once."""
    cpu_limit, memory_limit = group_limits(group.spec)
    in_flight = scrape_all([r.metrics_port for r in replicas], timeout_s=timeout_s)
    loads = []
    for replica, calls in zip(replicas, in_flight, strict=True):
        cpu, memory = fresh_usage(replica, now)
        loads.append(
            ReplicaLoad(
                group=group.name,
                replica=replica,
                metrics_endpoint=_endpoint(replica.metrics_port),
                cpu_millicores=cpu,
                cpu_limit_millicores=cpu_limit,
                memory_bytes=memory,
                memory_limit_bytes=memory_limit,
                in_flight=None if calls is None else round(calls),
            )
        )
    return loads


def scrape_all(ports: Sequence[int | None], *, timeout_s: float) -> list[float | None]:
    """The in-flight calls on each metrics port of 127.0.0.1 (None: no port, or no answer)."""
    wanted = [port for port in ports if port is not None]
    if not wanted:
        return [None] * len(ports)
    with ThreadPoolExecutor(max_workers=min(16, len(wanted))) as pool:
        answers = dict(
            zip(wanted, pool.map(lambda p: scrape_in_flight(p, timeout_s), wanted), strict=True)
        )
    return [None if port is None else answers[port] for port in ports]


def unknown_note(group: ScalingGroup) -> str | None:
    """Why a group's load shows as ``-``, when its backend cannot tell (Kubernetes)."""
    return KUBERNETES_NOTE if group.backend == "kubernetes" else None


def _endpoint(port: int | None) -> str | None:
    return None if port is None else f"http://127.0.0.1:{port}/metrics"


def _against(value: float | None, limit: int, unit_size: int, unit: str) -> str:
    """``250m/1000m (25%)``: a reading against its limit, or ``-``."""
    if value is None:
        return _UNKNOWN
    share = f" ({value / limit:.0%})" if limit > 0 else ""
    return f"{value / unit_size:.0f}{unit}/{limit / unit_size:.0f}{unit}{share}"
