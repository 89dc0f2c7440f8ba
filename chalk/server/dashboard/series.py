"""The dashboard's local time series: every 2 s the server scrapes each replica's metrics port
and the local controller's (ports from the catalog) and keeps 15 minutes of calls/s, rows/s,
p50/p99 handler latency and errors/s per replica and per group in fixed-size rings.

Memory is bounded: one ring is a flat ``array('d')`` of 450 points; a replica that goes away
keeps its ring until its last point is older than the window, then it is dropped.
``routes`` starts the ``Scraper`` in the app's lifespan and answers from its ``SeriesStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from chalk.catalog import Catalog
from chalk.deploy.local.probes import IN_FLIGHT_METRIC

__all__ = [
    "FIELDS",
    "NO_RUNTIME_METRICS_NOTE",
    "POINTS",
    "STEP_S",
    "WINDOW_S",
    "ControllerReading",
    "Ring",
    "RuntimeReading",
    "Scraper",
    "SeriesStore",
    "Target",
    "Targets",
    "catalog_targets",
    "empty_series",
    "parse_controller",
    "parse_runtime",
    "quantile",
]

_LOG = logging.getLogger("chalk.server")
_R = TypeVar("_R")
STEP_S: Final = 2.0
WINDOW_S: Final = 900.0
POINTS: Final = int(WINDOW_S / STEP_S)
# The values of one point, after its time; latency is NaN (null in JSON) for a step without
# a call. ``restartsPerSecond`` is the controller's figure: groups only (NaN for a replica).
FIELDS: Final = (
    "callsPerSecond",
    "rowsPerSecond",
    "p50Seconds",
    "p99Seconds",
    "errorsPerSecond",
    "restartsPerSecond",
)
_WIDTH: Final = 1 + len(FIELDS)
SCRAPE_TIMEOUT_S: Final = 1.0
_CALLS: Final = "chalk_remote_call_calls_total"
_ROWS: Final = "chalk_remote_call_rows_total"
_ERRORS: Final = "chalk_remote_call_errors_total"
_HANDLER_BUCKET: Final = "chalk_remote_call_handler_seconds_bucket"
_RESTARTS: Final = "chalk_controller_replica_restarts_total"
# The series' note of a group whose ready replicas serve no metrics (e.g. a plain HTTP server).
NO_RUNTIME_METRICS_NOTE: Final = "no model runtime metrics from this group's replicas"


class Ring:
    """The last ``POINTS`` points of one series: a time and ``FIELDS`` values each, in one
    flat array of doubles (NaN for none), written round and round.

    Examples
    --------
    >>> ring = Ring()
    >>> ring.append(10.0, (1.0, 2.0, None, None, 0.0, None))
    >>> ring.since(None)["callsPerSecond"], ring.since(None)["p50Seconds"]
    ([1.0], [None])
    >>> ring.since(10.0)["t"]
    []
    """

    __slots__ = ("_data", "_next", "_size")

    def __init__(self) -> None:
        self._data = array("d", [math.nan]) * (POINTS * _WIDTH)
        self._next = 0
        self._size = 0

    def append(self, t: float, values: Sequence[float | None]) -> None:
        start = self._next * _WIDTH
        self._data[start] = t
        for offset, value in enumerate(values, start=1):
            self._data[start + offset] = math.nan if value is None else value
        self._next = (self._next + 1) % POINTS
        self._size = min(self._size + 1, POINTS)

    @property
    def last_t(self) -> float:
        """The time of the newest point (NaN when empty)."""
        if self._size == 0:
            return math.nan
        return self._data[((self._next - 1) % POINTS) * _WIDTH]

    def latest(self, name: str) -> float | None:
        """The newest value of field ``name`` (None when empty or none)."""
        if self._size == 0:
            return None
        value = self._data[((self._next - 1) % POINTS) * _WIDTH + 1 + FIELDS.index(name)]
        return None if math.isnan(value) else value

    def since(self, since: float | None) -> dict[str, list[float | None]]:
        """The points after ``since`` (all when None), oldest first, as JSON lists."""
        found: dict[str, list[float | None]] = {"t": [], **{name: [] for name in FIELDS}}
        first = (self._next - self._size) % POINTS
        for index in range(self._size):
            start = ((first + index) % POINTS) * _WIDTH
            t = self._data[start]
            if since is not None and t <= since:
                continue
            found["t"].append(t)
            for offset, name in enumerate(FIELDS, start=1):
                value = self._data[start + offset]
                found[name].append(None if math.isnan(value) else value)
        return found


def empty_series() -> dict[str, list[float | None]]:
    """A series with no point (a group nothing was scraped from yet)."""
    return {"t": [], **{name: [] for name in FIELDS}}


@dataclass(frozen=True, slots=True)
class RuntimeReading:
    """What one scrape of a runtime's ``/metrics`` says (counters since it started)."""

    calls: float
    rows: float
    errors: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending
    in_flight: float | None


@dataclass(frozen=True, slots=True)
class ControllerReading:
    """What one scrape of the local controller's ``/metrics`` says: restarts by group."""

    restarts: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Target:
    """A replica to scrape: its group, name, metrics port on 127.0.0.1 and readiness."""

    group: str
    replica: str
    port: int
    ready: bool = True


def parse_runtime(text: str) -> RuntimeReading:
    """A runtime's Prometheus text, read with prometheus-client's parser.

    Examples
    --------
    >>> parse_runtime('chalk_remote_call_calls_total 4.0\\n'
    ...               'chalk_remote_call_handler_seconds_bucket{le="0.1"} 3.0\\n'
    ...               'chalk_remote_call_handler_seconds_bucket{le="+Inf"} 4.0\\n').buckets
    ((0.1, 3.0), (inf, 4.0))
    """
    sums = {_CALLS: 0.0, _ROWS: 0.0, _ERRORS: 0.0}
    buckets: dict[float, float] = {}
    in_flight = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
            elif sample.name == _HANDLER_BUCKET:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == IN_FLIGHT_METRIC:
                in_flight = (in_flight or 0.0) + sample.value
    return RuntimeReading(
        calls=sums[_CALLS],
        rows=sums[_ROWS],
        errors=sums[_ERRORS],
        buckets=tuple(sorted(buckets.items())),
        in_flight=in_flight,
    )


def parse_controller(text: str) -> ControllerReading:
    """The local controller's Prometheus text: its restarts counter by group."""
    restarts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == _RESTARTS:
                group = sample.labels.get("group", "")
                restarts[group] = restarts.get(group, 0.0) + sample.value
    return ControllerReading(restarts)


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets, interpolated
    linearly inside its bucket as Prometheus' ``histogram_quantile`` does; None with no count.

    Examples
    --------
    >>> quantile(0.5, [(0.1, 0.0), (0.2, 10.0), (math.inf, 10.0)])
    0.15000000000000002
    >>> quantile(0.99, [(0.1, 0.0), (math.inf, 0.0)]) is None
    True
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bound: the best known is that bound
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def _delta(now: float, before: float) -> float:
    """A counter's increase; a counter lower than before restarted from 0 (a new process)."""
    return now - before if now >= before else now


def _bucket_deltas(
    now: Sequence[tuple[float, float]], before: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    earlier = dict(before)
    reset = any(count < earlier.get(bound, 0.0) for bound, count in now)
    return [(bound, count if reset else count - earlier.get(bound, 0.0)) for bound, count in now]


def _sum_buckets(
    parts: Iterable[Sequence[tuple[float, float]]],
) -> list[tuple[float, float]]:
    total: dict[float, float] = {}
    for part in parts:
        for bound, count in part:
            total[bound] = total.get(bound, 0.0) + count
    return sorted(total.items())


class SeriesStore:
    """The rings of every replica (keyed by group and replica) and every group, and the last
    reading of each, from which the next scrape's rates are taken."""

    def __init__(self) -> None:
        self._replicas: dict[tuple[str, str], Ring] = {}
        self._groups: dict[str, Ring] = {}
        self._last: dict[tuple[str, str], tuple[float, RuntimeReading]] = {}
        self._controller: tuple[float, ControllerReading] | None = None
        # Groups whose ready replicas answered no runtime metrics at the last scrape.
        self._silent: frozenset[str] = frozenset()
        # The scraper records on a thread while requests read: one at a time.
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._lock = threading.Lock()

    def record(
        self,
        t: float,
        readings: Mapping[tuple[str, str], RuntimeReading],
        controller: ControllerReading | None = None,
        silent: frozenset[str] = frozenset(),
    ) -> None:
        """One scrape at time ``t``: a point per replica read twice by now, a point per group
        with such a replica or the controller's restarts (calls null), old rings dropped;
        ``silent``: the groups whose ready replicas answered no runtime metrics."""
        with self._lock:
            self._silent = silent
            self._record(t, readings, controller)

    def _record(
        self,
        t: float,
        readings: Mapping[tuple[str, str], RuntimeReading],
        controller: ControllerReading | None,
    ) -> None:
        by_group: dict[str, list[tuple[float, list[float | None], list[tuple[float, float]]]]] = {}
        for key, reading in readings.items():
            previous = self._last.get(key)
            self._last[key] = (t, reading)
            if previous is None or t <= previous[0]:
                continue
            step = t - previous[0]
            before = previous[1]
            buckets = _bucket_deltas(reading.buckets, before.buckets)
            calls = _delta(reading.calls, before.calls) / step
            values: list[float | None] = [
                calls,
                _delta(reading.rows, before.rows) / step,
                quantile(0.5, buckets),
                quantile(0.99, buckets),
                _delta(reading.errors, before.errors) / step,
                None,
            ]
            self._replicas.setdefault(key, Ring()).append(t, values)
            by_group.setdefault(key[0], []).append((step, values, buckets))
        restarts = self._restart_rates(t, controller)
        for group, points in by_group.items():
            summed = _sum_buckets(buckets for _, _, buckets in points)
            group_values: list[float | None] = [
                sum(values[0] or 0.0 for _, values, _ in points),
                sum(values[1] or 0.0 for _, values, _ in points),
                quantile(0.5, summed),
                quantile(0.99, summed),
                sum(values[4] or 0.0 for _, values, _ in points),
                restarts.get(group, 0.0) if controller is not None else None,
            ]
            self._groups.setdefault(group, Ring()).append(t, group_values)
        for group, rate in restarts.items():
            if group not in by_group:  # no replica read (crash-looping): the restarts alone
                self._groups.setdefault(group, Ring()).append(t, [None] * 5 + [rate])
        self._forget_before(t - WINDOW_S)

    def _restart_rates(self, t: float, controller: ControllerReading | None) -> dict[str, float]:
        previous, self._controller = (
            self._controller,
            (None if controller is None else (t, controller)),
        )
        if controller is None or previous is None or t <= previous[0]:
            return {}
        step = t - previous[0]
        return {
            group: _delta(count, previous[1].restarts.get(group, 0.0)) / step
            for group, count in controller.restarts.items()
        }

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, ring in self._replicas.items() if ring.last_t < cutoff]:
            del self._replicas[key]
        for key in [k for k, (t, _) in self._last.items() if t < cutoff]:
            del self._last[key]
        for group in [g for g, ring in self._groups.items() if ring.last_t < cutoff]:
            del self._groups[group]

    def group_series(self, group: str, since: float | None) -> dict[str, Any]:
        """The group's points and each of its replicas' after ``since``, and a ``note`` when
        its ready replicas answer no runtime metrics (else None)."""
        with self._lock:
            return self._group_series(group, since)

    def _group_series(self, group: str, since: float | None) -> dict[str, Any]:
        ring = self._groups.get(group)
        return {
            "group": empty_series() if ring is None else ring.since(since),
            "replicas": {
                replica: self._replicas[g, replica].since(since)
                for g, replica in sorted(self._replicas)
                if g == group
            },
            "note": NO_RUNTIME_METRICS_NOTE if group in self._silent else None,
        }

    def calls_per_second(self) -> dict[str, float]:
        """Each group's calls per second at its newest point."""
        found = {}
        with self._lock:
            groups = list(self._groups.items())
        for group, ring in groups:
            value = ring.latest("callsPerSecond")
            if value is not None:
                found[group] = value
        return found

    def in_flight(self) -> dict[tuple[str, str], float]:
        """Each replica's calls in flight at its last scrape."""
        with self._lock:
            last = list(self._last.items())
        return {
            key: reading.in_flight for key, (_, reading) in last if reading.in_flight is not None
        }


# What to scrape: the replicas, and the local controller's metrics port (None: none).
Targets = tuple[list[Target], int | None]


class Scraper:
    """Scrapes every replica and the local controller each ``interval_s``, at once and each
    with ``timeout_s``, so a hung replica costs one timeout, never the loop; ``targets`` (a
    catalog read) and the parsing run on a thread, so the event loop only waits on sockets."""

    def __init__(
        self,
        targets: Callable[[], Targets],
        store: SeriesStore,
        *,
        interval_s: float = STEP_S,
        timeout_s: float = SCRAPE_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        on_pass: Callable[[SeriesStore], None] | None = None,
    ) -> None:
        self._targets = targets
        self._store = store
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._on_pass = on_pass
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chalk-dashboard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=self._timeout_s, limits=limits) as http:
            while True:
                started = time.monotonic()
                try:
                    await self.scrape_once(http)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one failed pass (the catalog away) never ends the loop
                    _LOG.warning("the dashboard's scrape failed", exc_info=True)
                elapsed = time.monotonic() - started
                await asyncio.sleep(max(0.0, self._interval_s - elapsed))

    async def scrape_once(self, http: httpx.AsyncClient) -> None:
        """One pass: read the ports, fetch every text at once, parse and record them."""
        targets, controller_port = await asyncio.to_thread(self._targets)
        t = self._clock()
        texts = await asyncio.gather(*(_fetch(http, target.port) for target in targets))
        controller_text = None if controller_port is None else await _fetch(http, controller_port)
        await asyncio.to_thread(self._record, t, targets, texts, controller_text)

    def _record(
        self,
        t: float,
        targets: Sequence[Target],
        texts: Sequence[str | None],
        controller: str | None,
    ) -> None:
        readings = {}
        for target, text in zip(targets, texts, strict=True):
            reading = _parsed(text, parse_runtime)
            if reading is not None:
                readings[target.group, target.replica] = reading
        read = {group for group, _ in readings}
        silent = frozenset(x.group for x in targets if x.ready and x.group not in read)
        self._store.record(t, readings, _parsed(controller, parse_controller), silent)
        if self._on_pass is not None:
            self._on_pass(self._store)


def catalog_targets(catalog: Catalog) -> Targets:
    """Every replica with a metrics port, and the local controller's metrics port (from
    its heartbeat row)."""
    targets = [
        Target(group.name, replica.replica_id, replica.metrics_port, replica.ready)
        for group in catalog.groups.list()
        for replica in catalog.state.replicas(group.id)
        if replica.metrics_port is not None
    ]
    controller = catalog.state.controller("local")
    return targets, None if controller is None else controller.metrics_port


async def _fetch(http: httpx.AsyncClient, port: int) -> str | None:
    try:
        reply = await http.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.HTTPError:
        return None
    return reply.text if reply.status_code == 200 else None


def _parsed(text: str | None, parse: Callable[[str], _R]) -> _R | None:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError:  # not Prometheus text: some other server took the port
        return None
