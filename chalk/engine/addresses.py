"""The addresses behind a ``dns:///`` endpoint: a headless Service resolves to one per pod,
and each gets its own in-flight slots (``chalk.engine.batching.EndpointSlots`` counts them).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = ["DNS_RECOUNT_S", "CountAddresses", "count_addresses", "dns_host_port"]

# How often the addresses behind a dns:/// target are counted again (pods come and go).
DNS_RECOUNT_S: Final = 30.0

# Counts the addresses a host resolves to (``count_addresses``; tests pass their own).
CountAddresses = Callable[[str, int], Awaitable[int]]


def dns_host_port(target: str) -> tuple[str, int] | None:
    """The host and port a ``dns:`` gRPC target names (port 443 when it names none); None for
    any other target.

    Examples
    --------
    >>> dns_host_port("dns:///ner.ml.svc.cluster.local:6666")
    ('ner.ml.svc.cluster.local', 6666)
    >>> dns_host_port("dns://8.8.8.8/example.com"), dns_host_port("127.0.0.1:7001")
    (('example.com', 443), None)
    """
    if not target.startswith("dns:"):
        return None
    name = target.removeprefix("dns:")
    if name.startswith("//"):
        name = name[2:].partition("/")[2]  # after the DNS server's authority, if any
    if name.startswith("["):
        host, _, rest = name[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = name.rpartition(":") if ":" in name else (name, "", "")
    return host, int(port) if port.isdigit() else 443


async def count_addresses(host: str, port: int) -> int:
    """How many distinct addresses ``host`` resolves to (what gRPC's round_robin spreads over)."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return len({info[4][0] for info in found})
