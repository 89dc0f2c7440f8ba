"""Runs the server: one process, or ``workers`` processes sharing the port, each with its own
app (``chalk.server.app``) and figures summed through a multiprocess metrics directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from socket import socket
from typing import Final

import uvicorn

from chalk.server.app import create_app, log_to_stderr
from chalk.server.metrics import MULTIPROCESS_ENV
from chalk.server.settings import SETTINGS_ENV, ServerSettings

__all__ = ["serve"]

_FACTORY: Final = "chalk.server.app:app_from_env"


def serve(settings: ServerSettings, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then drain and return; with ``on_ready``
    (one worker only), call it once the server listens, and let a Ctrl-C that ended it
    through as KeyboardInterrupt."""
    log_to_stderr()
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "http": "httptools",
        "loop": "uvloop",
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1 and on_ready is not None:
        config = uvicorn.Config(create_app(settings), **common)  # type: ignore[arg-type]
        _Announcing(config, on_ready).run()
        return
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return
    metrics_dir = tempfile.mkdtemp(prefix="chalk-serve-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    os.environ[SETTINGS_ENV] = settings.to_json()
    try:
        uvicorn.run(_FACTORY, factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


class _Announcing(uvicorn.Server):
    """A server that calls ``on_ready`` once it listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()
