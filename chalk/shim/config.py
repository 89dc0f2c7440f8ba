"""The runtime server's settings, apart from the server so that reading them loads no gRPC.

``chalk.shim.cli`` fills a ``ServerConfig`` from flags and environment before it imports the
server (see ``chalk.shim.cli`` for why gRPC must load after that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["SERVER_CORES", "ServerConfig"]

# The gRPC server cores the runtime can run on: "cython" (chalk.shim._core, the default:
# grpcio's Cython layer, the faster) and "grpcio" (chalk.shim._grpcio_core, grpcio's public API,
# for a grpcio release whose internals the first no longer fits).
SERVER_CORES: Final = ("cython", "grpcio")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``chalk-remote-call`` takes from its flags and environment."""

    handler: str
    host: str = "[::]"
    port: int = 6666
    workers: int = 10
    on_startup: str | None = None
    on_shutdown: str | None = None
    grace_period_s: float = 30.0
    metrics_port: int | None = None
    input_args: tuple[str, ...] | None = None
    log_level: str = "INFO"
    server_core: str = "cython"
