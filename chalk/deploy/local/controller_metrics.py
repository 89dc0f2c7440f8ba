"""The local controller's own Prometheus figures, on a registry of its own, served on 127.0.0.1.

The controller counts reconcile passes, scaling decisions, restarts and OOM kills here, and
hands over its replicas' states after each pass; ``serve`` exposes them as ``/metrics`` and
the controller writes the port into its heartbeat row. Names and labels: README "Metrics".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from chalk.deploy.autoscale import AutoscaleContext

__all__ = ["ControllerMetrics", "signals_measured"]

_PASS_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Server(Protocol):
    server_port: int

    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


class ControllerMetrics:
    """Reconcile passes, scaling decisions, restarts, OOM kills and replicas by state.

    Examples
    --------
    >>> metrics = ControllerMetrics()
    >>> metrics.reconciled(seconds=0.02, ok=True)
    >>> metrics.scaled("ner", current=1, desired=3, reason="cpu")
    >>> metrics.replica_states({("ner", "Running"): 3})
    >>> metrics.registry.get_sample_value(
    ...     "chalk_controller_scaling_decisions_total",
    ...     {"group": "ner", "direction": "up", "reason": "cpu"},
    ... )
    1.0
    >>> metrics.registry.get_sample_value(
    ...     "chalk_controller_replicas", {"group": "ner", "state": "Running"}
    ... )
    3.0
    >>> metrics.group_seen("ner")
    >>> metrics.registry.get_sample_value("chalk_controller_oom_kills_total", {"group": "ner"})
    0.0
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._passes = Counter(
            "chalk_controller_reconcile_passes",
            "Reconcile passes over every group, by outcome (ok, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self._pass_seconds = Histogram(
            "chalk_controller_reconcile_duration_seconds",
            "Seconds one reconcile pass over every group took.",
            buckets=_PASS_BUCKETS,
            registry=self.registry,
        )
        self._decisions = Counter(
            "chalk_controller_scaling_decisions",
            "Autoscaler decisions that changed a group's replica count, by group, direction "
            "(up, down) and the signals measured (cpu, queue_depth, cpu+queue_depth, none).",
            ["group", "direction", "reason"],
            registry=self.registry,
        )
        self._restarts = Counter(
            "chalk_controller_replica_restarts",
            "Replica exits the controller restarts after a back-off, by group.",
            ["group"],
            registry=self.registry,
        )
        self._oom_kills = Counter(
            "chalk_controller_oom_kills",
            "Replicas killed for resident memory over their limit, by group.",
            ["group"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], int] = {}
        self.registry.register(_ReplicaStates(self))
        self._server: _Server | None = None

    def group_seen(self, group: str) -> None:
        """Give ``group``'s counters a sample at 0 now, not at their first event."""
        self._restarts.labels(group)
        self._oom_kills.labels(group)

    def reconciled(self, *, seconds: float, ok: bool) -> None:
        """One reconcile pass ended (``ok``: it did not fail as a whole)."""
        self._passes.labels("ok" if ok else "failed").inc()
        self._pass_seconds.observe(seconds)

    def scaled(self, group: str, *, current: int, desired: int, reason: str) -> None:
        """The autoscaler changed ``group`` from ``current`` to ``desired`` replicas."""
        direction = "up" if desired > current else "down"
        self._decisions.labels(group, direction, reason).inc()

    def restarted(self, group: str) -> None:
        self._restarts.labels(group).inc()

    def oom_killed(self, group: str) -> None:
        self._oom_kills.labels(group).inc()

    def replica_states(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the replicas-by-(group, state) figures with ``counts``."""
        with self._lock:
            self._states = dict(counts)

    def states(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._states)

    def serve(self, port: int = 0) -> int:
        """Serve ``/metrics`` on 127.0.0.1 (``port=0`` picks a free one); returns the port."""
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop serving (nothing when not serving)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def signals_measured(context: AutoscaleContext) -> str:
    """What a scaling decision rested on, as a label of few values: ``cpu``, ``queue_depth``,
    both joined by ``+``, or ``none`` (only the bounds moved it)."""
    signals = []
    if context.target_cpu_percent is not None and context.cpu_millicores_used:
        signals.append("cpu")
    if context.queue_depth_target is not None and (context.demand or context.in_flight):
        signals.append("queue_depth")
    return "+".join(signals) or "none"


class _ReplicaStates:
    """The replicas gauge, read from the last pass's counts on each scrape."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "chalk_controller_replicas",
            "Replicas the controller tracks, by group and state, as of its last pass.",
            labels=["group", "state"],
        )
        for (group, state), count in sorted(self._metrics.states().items()):
            family.add_metric([group, state], float(count))
        yield family
