"""The model runtime (``chalk-remote-call``) and the client the engine calls it with.

Importable on its own: it loads neither polars, kubernetes, SQLAlchemy nor lark, so the runtime
can later ship as a slim wheel inside model images.
"""

from __future__ import annotations

from chalk.shim.client import RemoteCallClient, split_batch
from chalk.shim.errors import RemoteCallError, RemoteHandlerError, TransportError
from chalk.shim.server import ServerConfig, run_server, serve

__all__ = [
    "RemoteCallClient",
    "RemoteCallError",
    "RemoteHandlerError",
    "ServerConfig",
    "TransportError",
    "run_server",
    "serve",
    "split_batch",
]
