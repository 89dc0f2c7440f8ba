"""Runs the server: one process, or ``workers`` processes sharing the port, each with its own
app (``chalk.server.app``) and figures summed through a multiprocess metrics directory."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from socket import socket
from types import FrameType
from typing import Final

import uvicorn

from chalk.server.app import create_app, log_to_stderr
from chalk.server.metrics import MULTIPROCESS_ENV
from chalk.server.settings import SETTINGS_ENV, ServerSettings

__all__ = ["serve"]

_FACTORY: Final = "chalk.server.app:app_from_env"


def serve(settings: ServerSettings, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve until stopped, then drain: SIGTERM returns (SystemExit(0) with one worker), a
    Ctrl-C with one worker ends in KeyboardInterrupt (the CLI's exit 130). With ``on_ready``
    (one worker only), call it once the server listens."""
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
    if settings.workers == 1:
        # Not uvicorn.run, which swallows the KeyboardInterrupt a Ctrl-C ends the server with:
        # the CLI turns it into one line and exit code 130, as for every other command.
        config = uvicorn.Config(create_app(settings), **common)  # type: ignore[arg-type]
        # uvicorn drains on SIGTERM, then raises it again: a stop asked for is a success (0),
        # as Kubernetes expects of a pod it ends, not the 143 of a process killed.
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            _Announcing(config, on_ready).run()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    metrics_dir = tempfile.mkdtemp(prefix="chalk-serve-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    os.environ[SETTINGS_ENV] = settings.to_json()
    try:
        uvicorn.run(_FACTORY, factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _stopped(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


class _Announcing(uvicorn.Server):
    """A server that calls ``on_ready`` (when given) once it listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready()
