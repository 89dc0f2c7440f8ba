"""Which addresses a local replica listens on, so the controller can warn about a replica that
listens on every interface (a wildcard address) instead of loopback.

``chalk.deploy.local.replicas`` asks once, when a replica first passes its probe.
"""

from __future__ import annotations

import contextlib
import ipaddress

import psutil

__all__ = ["wildcard_listeners"]


def wildcard_listeners(pid: int) -> list[str]:
    """``host:port`` of each TCP socket the process ``pid`` (or a child of it) listens on at a
    wildcard address (``0.0.0.0``, ``::``), sorted; empty when it cannot be read.

    Examples
    --------
    >>> import os
    >>> wildcard_listeners(os.getpid())
    []
    """
    found: set[str] = set()
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        for member in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                found.update(_wildcards(member))
    return sorted(found)


def _wildcards(process: psutil.Process) -> list[str]:
    listening = [
        connection.laddr
        for connection in process.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr
    ]
    return [
        _shown(address.ip, address.port)
        for address in listening
        if ipaddress.ip_address(address.ip.split("%")[0]).is_unspecified
    ]


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
