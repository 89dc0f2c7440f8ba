"""Prometheus metrics of the runtime server; the local autoscaler reads ``in_flight``.

Each server owns its registry, so several servers (in tests) never clash over names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

__all__ = ["ServerMetrics"]

_HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(slots=True)
class ServerMetrics:
    """Calls, rows, errors, in-flight calls and handler seconds of one server."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    calls: Counter = field(init=False)
    rows: Counter = field(init=False)
    errors: Counter = field(init=False)
    in_flight: Gauge = field(init=False)
    handler_seconds: Histogram = field(init=False)

    def __post_init__(self) -> None:
        ProcessCollector(registry=self.registry)
        self.calls = Counter(
            "chalk_remote_call_calls",
            "CallFunction calls received.",
            registry=self.registry,
        )
        self.rows = Counter(
            "chalk_remote_call_rows", "Input rows passed to the handler.", registry=self.registry
        )
        self.errors = Counter(
            "chalk_remote_call_errors",
            "Calls that ended in an error, by exception kind.",
            ["kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "chalk_remote_call_in_flight",
            "CallFunction calls being served now.",
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "chalk_remote_call_handler_seconds",
            "Seconds spent in the handler per record batch.",
            buckets=_HANDLER_BUCKETS,
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP; returns the bound port (``port=0`` picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
