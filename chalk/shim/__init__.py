"""The model runtime (``chalk-remote-call``) and the client the engine calls it with.

Importable on its own: it loads neither polars, kubernetes, SQLAlchemy nor lark, so the runtime
can later ship as a slim wheel inside model images. The names below load their modules on first
use, so that ``chalk-remote-call`` can set gRPC's environment before gRPC is imported
(``chalk.shim.cli``).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Final

# gRPC's core logs INFO lines on stderr (a peer's GOAWAY on every rolling update), which land
# in users' programs and break the runtime's JSON-lines log. Read once when gRPC loads, which
# is after this package (its modules load lazily); a value the user set is kept.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

if TYPE_CHECKING:
    from chalk.shim.client import RemoteCallClient, split_batch
    from chalk.shim.config import ServerConfig
    from chalk.shim.errors import RemoteCallError, RemoteHandlerError, TransportError
    from chalk.shim.server import run_server, serve

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

_MODULE_OF: Final = {
    "RemoteCallClient": "chalk.shim.client",
    "split_batch": "chalk.shim.client",
    "ServerConfig": "chalk.shim.config",
    "RemoteCallError": "chalk.shim.errors",
    "RemoteHandlerError": "chalk.shim.errors",
    "TransportError": "chalk.shim.errors",
    "run_server": "chalk.shim.server",
    "serve": "chalk.shim.server",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'chalk.shim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
