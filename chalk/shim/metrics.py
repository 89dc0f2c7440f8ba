"""Prometheus metrics of the runtime server; the local autoscaler reads ``in_flight``.

The server counts in plain numbers under one lock and the numbers become Prometheus samples
only when ``/metrics`` is scraped: prometheus-client's own Counter, Gauge and Histogram cost
about a twentieth of a one-row call's server CPU in their Python layers (bench/README.md).
Each server owns its registry, so several servers (in tests) never clash over names.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

__all__ = ["ServerMetrics"]

_HANDLER_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)


class ServerMetrics:
    """Calls, rows, errors, in-flight calls and handler seconds of one server.

    Examples
    --------
    >>> metrics = ServerMetrics()
    >>> metrics.call_started()
    >>> metrics.batch_handled(rows=3, seconds=0.002)
    >>> metrics.call_ended()
    >>> metrics.registry.get_sample_value("chalk_remote_call_rows_total")
    3.0
    >>> metrics.registry.get_sample_value(
    ...     "chalk_remote_call_handler_seconds_bucket", {"le": "0.0025"}
    ... )
    1.0
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._rows = 0
        self._in_flight = 0
        self._errors: dict[str, int] = {}
        # One count per bucket (not cumulative) plus one past the last bound, for +Inf.
        self._handler_counts = [0] * (len(_HANDLER_BUCKETS) + 1)
        self._handler_sum_s = 0.0
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(self)

    def call_started(self) -> None:
        """A CallFunction call began."""
        with self._lock:
            self._calls += 1
            self._in_flight += 1

    def call_ended(self) -> None:
        """A CallFunction call ended, whatever its outcome."""
        with self._lock:
            self._in_flight -= 1

    def batch_handled(self, *, rows: int, seconds: float) -> None:
        """The handler answered one record batch of ``rows`` rows in ``seconds``."""
        bucket = bisect.bisect_left(_HANDLER_BUCKETS, seconds)
        with self._lock:
            self._rows += rows
            self._handler_counts[bucket] += 1
            self._handler_sum_s += seconds

    def call_failed(self, kind: str) -> None:
        """A call ended in an error of this exception kind."""
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def collect(self) -> Iterator[Metric]:
        """The samples, as the registry asks for them on each scrape."""
        with self._lock:
            calls, rows, in_flight = float(self._calls), float(self._rows), float(self._in_flight)
            errors = dict(self._errors)
            counts, sum_s = list(self._handler_counts), self._handler_sum_s
        yield CounterMetricFamily("chalk_remote_call_calls", "CallFunction calls received.", calls)
        yield CounterMetricFamily(
            "chalk_remote_call_rows", "Input rows passed to the handler.", rows
        )
        by_kind = CounterMetricFamily(
            "chalk_remote_call_errors",
            "Calls that ended in an error, by exception kind.",
            labels=["kind"],
        )
        for kind, count in sorted(errors.items()):
            by_kind.add_metric([kind], float(count))
        yield by_kind
        yield GaugeMetricFamily(
            "chalk_remote_call_in_flight", "CallFunction calls being served now.", in_flight
        )
        yield HistogramMetricFamily(
            "chalk_remote_call_handler_seconds",
            "Seconds spent in the handler per record batch.",
            buckets=_cumulative(counts),
            sum_value=sum_s,
        )

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP; returns the bound port (``port=0`` picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    bounds = [repr(float(bound)) for bound in _HANDLER_BUCKETS] + ["+Inf"]
    total = 0
    buckets = []
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        buckets.append((bound, float(total)))
    return buckets
