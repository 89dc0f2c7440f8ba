"""What the local controller asks a running replica: is it ready, how many calls it holds.

Readiness is the gRPC health check for a model's runtime, a TCP connect for any other
server; in-flight calls come from the runtime's Prometheus metrics, read with
prometheus-client's own text parser.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["IN_FLIGHT_METRIC", "in_flight_calls", "is_ready", "scrape_in_flight"]

IN_FLIGHT_METRIC: Final = "chalk_remote_call_in_flight"


async def is_ready(endpoint: str, *, hosts_model: bool, timeout_s: float = 1.0) -> bool:
    """Whether the replica at ``endpoint`` (``host:port``) answers as ready."""
    if hosts_model:
        # Imported here: gRPC loads only in the controller, not in every reader of deploy.
        from chalk.shim.client import health_status  # noqa: PLC0415

        return await health_status(endpoint, timeout_s=timeout_s) == "SERVING"
    host, _, port = endpoint.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port)), timeout=timeout_s
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def in_flight_calls(text: str) -> float | None:
    """The in-flight calls a runtime's ``/metrics`` text reports, summed over its labels.

    None when the text has no such metric.

    Examples
    --------
    >>> in_flight_calls("# TYPE chalk_remote_call_in_flight gauge\\n"
    ...                 "chalk_remote_call_in_flight 3.0\\n")
    3.0
    >>> in_flight_calls("process_cpu_seconds_total 1.5\\n") is None
    True
    """
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == IN_FLIGHT_METRIC
    ]
    return float(sum(values)) if values else None


def scrape_in_flight(port: int, timeout_s: float) -> float | None:
    """In-flight calls from the metrics port of a replica on 127.0.0.1; None when it does
    not answer (or answers with something that is not Prometheus text)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as reply:
            return in_flight_calls(reply.read().decode())
    except (OSError, ValueError):
        return None
