"""The dashboard's time series on Kubernetes: asked of the Prometheus server chalk.yaml names
(``kubernetes.prometheus_url``) through its HTTP API's ``query_range``, never scraped by us; and
the figures of now (calls/s, in flight, CPU, memory) through its instant ``query``.

A group's pods are the Deployment's (``<group>-<hash>-<id>`` in the project's namespace), so
the queries select ``namespace`` and ``pod``, the labels Prometheus' Kubernetes discovery gives.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import httpx

from chalk.common.errors import ChalkError
from chalk.deploy.kubernetes.keda import pod_selector
from chalk.server.dashboard.series import FIELDS, STEP_S, WINDOW_S, empty_series

__all__ = [
    "NO_PROMETHEUS_NOTE",
    "Instant",
    "PrometheusError",
    "PrometheusSeries",
    "instant_queries",
    "queries",
]

NO_PROMETHEUS_NOTE: Final = (
    "no time series: on Kubernetes they come from a Prometheus server; name it in chalk.yaml "
    "as kubernetes.prometheus_url (e.g. http://prometheus.monitoring:9090)"
)
_TIMEOUT_S: Final = 3.0
_RATE: Final = "1m"


class PrometheusError(ChalkError):
    """Prometheus did not answer a query (unreachable, or an error answer): said in the
    series answer's note, never a failed request."""


def queries(namespace: str, group: str, *, by_pod: bool) -> dict[str, str]:
    """The PromQL of each field in ``FIELDS`` for a group, summed or ``by (pod)``.

    Examples
    --------
    >>> queries("ml", "ner", by_pod=False)["callsPerSecond"]
    'sum(rate(chalk_remote_call_calls_total{namespace="ml",pod=~"ner-[a-z0-9]+-[a-z0-9]+"}[1m]))'
    """
    selector = pod_selector(namespace, group)
    by = " by (pod)" if by_pod else ""
    by_le = " by (le, pod)" if by_pod else " by (le)"

    def rate(metric: str) -> str:
        return f"sum{by}(rate({metric}{selector}[{_RATE}]))"

    def latency(q: float) -> str:
        buckets = f"rate(chalk_remote_call_handler_seconds_bucket{selector}[{_RATE}])"
        return f"histogram_quantile({q}, sum{by_le}({buckets}))"

    return {
        "callsPerSecond": rate("chalk_remote_call_calls_total"),
        "rowsPerSecond": rate("chalk_remote_call_rows_total"),
        "p50Seconds": latency(0.5),
        "p99Seconds": latency(0.99),
        "errorsPerSecond": rate("chalk_remote_call_errors_total"),
    }


def instant_queries(namespace: str, group: str) -> dict[str, str]:
    """The PromQL of a group's figures of now, each ``by (pod)``: calls in flight, CPU in
    millicores and resident memory (the runtime's ``process_*``, which every replica exports).

    Examples
    --------
    >>> instant_queries("ml", "ner")["inFlight"]
    'sum by (pod)(chalk_remote_call_in_flight{namespace="ml",pod=~"ner-[a-z0-9]+-[a-z0-9]+"})'
    """
    selector = pod_selector(namespace, group)
    return {
        "inFlight": f"sum by (pod)(chalk_remote_call_in_flight{selector})",
        "cpuMillicores": f"1000 * sum by (pod)(rate(process_cpu_seconds_total{selector}[{_RATE}]))",
        "memoryBytes": f"sum by (pod)(process_resident_memory_bytes{selector})",
    }


@dataclass(frozen=True, slots=True)
class Instant:
    """The figures of now: calls per second by group, and by ``(group, pod)`` the calls in
    flight, CPU millicores and resident bytes; ``error`` says why some are missing."""

    calls_per_second: dict[str, float] = field(default_factory=dict)
    in_flight: dict[tuple[str, str], float] = field(default_factory=dict)
    cpu_millicores: dict[tuple[str, str], float] = field(default_factory=dict)
    memory_bytes: dict[tuple[str, str], float] = field(default_factory=dict)
    error: str | None = None


class PrometheusSeries:
    """A group's series from the Prometheus server at ``url``."""

    def __init__(self, url: str, namespace: str, *, timeout_s: float = _TIMEOUT_S) -> None:
        self._url = url.rstrip("/")
        self._namespace = namespace
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def group_series(self, group: str, *, now: float, since: float | None) -> dict[str, Any]:
        """``{"group": series, "replicas": {pod: series}}`` of the last 15 minutes after
        ``since``, on the dashboard's 2 s steps.

        Raises
        ------
        PrometheusError
            When Prometheus cannot be reached or answers an error.
        """
        end = math.floor(now / STEP_S) * STEP_S
        start = end - WINDOW_S + STEP_S
        if since is not None:
            start = max(start, math.floor(since / STEP_S) * STEP_S + STEP_S)
        if start > end:
            return {"group": empty_series(), "replicas": {}}
        summed = queries(self._namespace, group, by_pod=False)
        per_pod = queries(self._namespace, group, by_pod=True)
        names = list(summed)
        answers = await asyncio.gather(
            *(self._range(summed[name], start, end) for name in names),
            *(self._range(per_pod[name], start, end) for name in names),
        )
        group_answers = dict(zip(names, answers[: len(names)], strict=True))
        pod_answers = dict(zip(names, answers[len(names) :], strict=True))
        steps = _steps(start, end)
        group_values = {name: _only(result) for name, result in group_answers.items()}
        pods = sorted({pod for result in pod_answers.values() for pod in _by_pod(result)})
        return {
            "group": _series(steps, group_values),
            "replicas": {
                pod: _series(
                    steps,
                    {name: _by_pod(result).get(pod, {}) for name, result in pod_answers.items()},
                )
                for pod in pods
            },
        }

    async def instant(self, groups: Sequence[str], *, pods_of: str | None = None) -> Instant:
        """Calls per second of each of ``groups`` and, for group ``pods_of``, its pods'
        figures, asked in one round of concurrent queries; a query that fails leaves its
        figures out and says why in ``error``, never raises."""
        # One query for every group's calls/s, by pod, summed here by the group the pod's name
        # begins with (a Deployment's pods are <group>-<hash>-<id>): one request per poll
        # however many groups there are.
        every_pod = f'{{namespace="{self._namespace}"}}'
        calls = f"sum by (pod)(rate(chalk_remote_call_calls_total{every_pod}[{_RATE}]))"
        asked: list[tuple[str, str, Mapping[str, str]]] = [
            ("", "callsPerSecond", {"callsPerSecond": calls})
        ]
        if pods_of is not None:
            by_pod = instant_queries(self._namespace, pods_of)
            asked += [(pods_of, name, by_pod) for name in by_pod]
        answers = await asyncio.gather(
            *(self._query("query", {"query": q[name]}) for _, name, q in asked),
            return_exceptions=True,
        )
        found = Instant()
        per_pod = {
            "inFlight": found.in_flight,
            "cpuMillicores": found.cpu_millicores,
            "memoryBytes": found.memory_bytes,
        }
        errors = []
        for (group, name, _), answer in zip(asked, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, PrometheusError):
                    raise answer
                errors.append(str(answer))
            elif name == "callsPerSecond":
                wanted = set(groups)
                for result in answer:
                    pod, value = str(result.get("metric", {}).get("pod", "")), _now(result)
                    owner = pod.rsplit("-", 2)[0] if pod.count("-") >= 2 else None
                    if owner in wanted and value is not None:
                        found.calls_per_second[owner] = (
                            found.calls_per_second.get(owner, 0.0) + value
                        )
            else:
                for result in answer:
                    pod, value = result.get("metric", {}).get("pod"), _now(result)
                    if pod and value is not None:
                        per_pod[name][(group, str(pod))] = value
        return replace(found, error=errors[0] if errors else None)

    async def _range(self, query: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {
            "query": query,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{STEP_S:g}",
        }
        return await self._query("query_range", params)

    async def _query(self, api: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        try:
            reply = await self._http.get(f"{self._url}/api/v1/{api}", params=params)
            answer = reply.json()
        except (httpx.HTTPError, ValueError) as error:
            raise PrometheusError(
                f"Prometheus at {self._url} did not answer: {type(error).__name__}: {error}"
            ) from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            said = answer.get("error") if isinstance(answer, dict) else None
            raise PrometheusError(
                f"Prometheus at {self._url} answered {reply.status_code}: "
                f"{said or reply.text[:200]}"
            )
        result = answer.get("data", {}).get("result", [])
        return result if isinstance(result, list) else []


def _steps(start: float, end: float) -> list[float]:
    count = round((end - start) / STEP_S) + 1
    return [start + index * STEP_S for index in range(count)]


def _values(result: Mapping[str, Any]) -> dict[float, float]:
    """One result's ``[time, "value"]`` pairs as floats; NaN (a quantile of no call) dropped."""
    found = {}
    for t, text in result.get("values", []):
        value = float(text)
        if not math.isnan(value) and not math.isinf(value):
            found[round(float(t), 3)] = value
    return found


def _now(result: Mapping[str, Any]) -> float | None:
    """An instant query's ``[time, "value"]`` as a float; None for NaN or infinity."""
    try:
        value = float(result["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def _only(results: list[dict[str, Any]]) -> dict[float, float]:
    return _values(results[0]) if results else {}


def _by_pod(results: list[dict[str, Any]]) -> dict[str, dict[float, float]]:
    return {
        str(result.get("metric", {}).get("pod")): _values(result)
        for result in results
        if result.get("metric", {}).get("pod")
    }


def _series(steps: list[float], values: Mapping[str, Mapping[float, float]]) -> dict[str, Any]:
    """The steps where any field has a value, each field's value there (None where none)."""
    kept = [t for t in steps if any(round(t, 3) in field for field in values.values())]
    series: dict[str, Any] = {"t": kept}
    for name in FIELDS:
        field = values.get(name, {})
        series[name] = [field.get(round(t, 3)) for t in kept]
    return series
