"""The server's Prometheus figures, on a registry the app is given (never the global one).

With several workers each process writes its figures to prometheus_client's multiprocess
directory and ``/metrics`` sums them over the workers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from chalk.engine.cache import CacheStats
from chalk.engine.demand import GroupLoad
from chalk.engine.recorder import CallRecorder, GroupCalls

__all__ = ["MULTIPROCESS_ENV", "ServerMetrics"]

# prometheus_client reads it when first imported: the parent sets it before workers start.
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
)  # fmt: skip
_CHUNK_QUERIES_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


class ServerMetrics:
    """Requests by endpoint and outcome, their latency, and model calls per scaling group.

    Examples
    --------
    >>> metrics = ServerMetrics(CollectorRegistry())
    >>> metrics.answered("query_online", 404, 0.002)
    >>> text = metrics.exposition().decode()
    >>> 'chalk_server_requests_total{endpoint="query_online",outcome="client_error"} 1.0' in text
    True
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "chalk_server_requests",
            "Requests answered, by endpoint and outcome (ok, client_error, server_error).",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "chalk_server_request_duration_seconds",
            "Time from a request's body read to its answer, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_calls = Counter(
            "chalk_server_model_calls",
            "Model calls (chunks, one gRPC call each) answered, by scaling group.",
            ["group"],
            registry=registry,
        )
        self.model_rows = Counter(
            "chalk_server_model_rows",
            "Rows answered by model calls, by scaling group.",
            ["group"],
            registry=registry,
        )
        self.model_call_latency = Histogram(
            "chalk_server_model_call_duration_seconds",
            "Time from sending one model call (a chunk) to its answer, by scaling group.",
            ["group"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_retries = Counter(
            "chalk_server_model_retries",
            "Model call attempts that failed in transport and were sent again, by group.",
            ["group"],
            registry=registry,
        )
        # Batching across queries (chalk.engine.batching), counted per query part.
        self.model_chunk_queries = Histogram(
            "chalk_server_model_chunk_queries",
            "Queries whose rows shared a model call, observed once per query per chunk.",
            ["group"],
            buckets=_CHUNK_QUERIES_BUCKETS,
            registry=registry,
        )
        self.model_queue_wait = Histogram(
            "chalk_server_model_queue_wait_seconds",
            "Time a query's chunks waited in the group's queue before being sent, per query.",
            ["group"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_chunks_left = Counter(
            "chalk_server_model_chunks_left",
            "Query chunks that left the group's queue, by why: slot_free, full, delay.",
            ["group", "reason"],
            registry=registry,
        )
        self.model_rows_asked = Counter(
            "chalk_server_model_rows_asked",
            "Argument rows model calls asked answers for, by scaling group.",
            ["group"],
            registry=registry,
        )
        self.model_rows_sent = Counter(
            "chalk_server_model_rows_sent",
            "Argument rows left to send once identical rows of a call were merged, by group.",
            ["group"],
            registry=registry,
        )
        self.model_dedup_hits = Counter(
            "chalk_server_model_dedup_hits",
            "Argument rows answered from an identical row's answer (asked - sent), by group.",
            ["group"],
            registry=registry,
        )
        # The worker's demand per group (chalk.engine.demand), as the local backend's catalog
        # rows carry it: on Kubernetes the autoscaler reads these instead.
        self.model_calls_in_flight = Gauge(
            "chalk_server_model_calls_in_flight",
            "Model calls sent and not yet answered, by scaling group.",
            ["group"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.model_calls_waiting = Gauge(
            "chalk_server_model_calls_waiting",
            "Model calls waiting, by scaling group: chunks queued (before merging) and calls "
            "held while the group has no ready replica.",
            ["group"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.model_calls_held = Gauge(
            "chalk_server_model_calls_held",
            "Model calls held while their scaling group has no ready replica (starting, scaled "
            "to zero, waiting for capacity), by group; counted in the waiting ones too.",
            ["group"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        # The answer cache (a feature's max_staleness): the process's store's own figures.
        self.cache_hits = Counter(
            "chalk_server_answer_cache_hits",
            "Distinct argument rows answered from the answer cache, by scaling group.",
            ["group"],
            registry=registry,
        )
        self.cache_misses = Counter(
            "chalk_server_answer_cache_misses",
            "Distinct argument rows looked up in the answer cache and not found, by group.",
            ["group"],
            registry=registry,
        )
        self.cache_evictions = Counter(
            "chalk_server_answer_cache_evictions",
            "Answers dropped from the answer cache before their time for room, by group.",
            ["group"],
            registry=registry,
        )
        self.cache_errors = Counter(
            "chalk_server_answer_cache_errors",
            "Answer cache reads and writes the store failed (each row a miss), by group.",
            ["group"],
            registry=registry,
        )
        self.cache_bytes = Gauge(
            "chalk_server_answer_cache_bytes",
            "Bytes the answers kept in the answer cache take now, by scaling group.",
            ["group"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._cache_seen: dict[str, CacheStats] = {}
        self.graph_version = Gauge(
            "chalk_server_graph_version",
            "The applied feature graph version the server last answered with.",
            registry=registry,
            multiprocess_mode="max",
        )

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
        self.requests.labels(endpoint, outcome).inc()
        self.latency.labels(endpoint).observe(seconds)

    def called(self, recorder: CallRecorder) -> None:
        for group, calls in recorder.groups().items():
            self.model_calls.labels(group).inc(calls.calls)
            self.model_rows.labels(group).inc(calls.rows)
            if calls.retries:
                self.model_retries.labels(group).inc(calls.retries)
            self.model_rows_asked.labels(group).inc(calls.rows_asked)
            self.model_rows_sent.labels(group).inc(calls.rows_sent)
            self.model_dedup_hits.labels(group).inc(calls.dedup_hits)
            self._batched(group, calls)
        for group, seconds in recorder.call_seconds().items():
            latency = self.model_call_latency.labels(group)
            for value in seconds:
                latency.observe(value)

    def demand(self, loads: Mapping[str, GroupLoad]) -> None:
        """Set the demand gauges to this worker's figures now (``ModelCaller.loads``)."""
        for group, load in loads.items():
            self.model_calls_in_flight.labels(group).set(load.in_flight)
            self.model_calls_waiting.labels(group).set(load.waiting)
            self.model_calls_held.labels(group).set(load.held)

    def cached(self, stats: dict[str, CacheStats]) -> None:
        """Bring the answer cache's figures up to the store's ``stats`` (its totals since the
        process started): counters grow by what changed since the last call."""
        for group, now in stats.items():
            seen = self._cache_seen.get(group, CacheStats())
            for counter, grown in (
                (self.cache_hits, now.hits - seen.hits),
                (self.cache_misses, now.misses - seen.misses),
                (self.cache_evictions, now.evictions - seen.evictions),
                (self.cache_errors, now.errors - seen.errors),
            ):
                counter.labels(group).inc(max(grown, 0))
            self.cache_bytes.labels(group).set(now.bytes)
            self._cache_seen[group] = now

    def _batched(self, group: str, calls: GroupCalls) -> None:
        if not calls.chunk_queries:
            return
        for queries in calls.chunk_queries:
            self.model_chunk_queries.labels(group).observe(queries)
        self.model_queue_wait.labels(group).observe(calls.waited_s)
        for reason, count in (
            ("slot_free", calls.left_slot_free),
            ("full", calls.left_full),
            ("delay", calls.left_delay),
        ):
            if count:
                self.model_chunks_left.labels(group, reason).inc(count)

    def exposition(self) -> bytes:
        """The Prometheus text of every worker's figures (this process's alone without a
        multiprocess directory)."""
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return bytes(generate_latest(self.registry))
        summed = CollectorRegistry()
        MultiProcessCollector(summed, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(summed))
