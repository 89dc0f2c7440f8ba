"""Runs the server: one process, or ``workers`` processes sharing the port, each with its own
app (``chalk.server.app``) and figures summed through a multiprocess metrics directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Final

import uvicorn

from chalk.server.app import create_app, log_to_stderr
from chalk.server.metrics import MULTIPROCESS_ENV
from chalk.server.settings import SETTINGS_ENV, ServerSettings

__all__ = ["serve"]

_FACTORY: Final = "chalk.server.app:app_from_env"


def serve(settings: ServerSettings) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then drain and return."""
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
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return
    metrics_dir = tempfile.mkdtemp(prefix="chalk-serve-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir
    os.environ[SETTINGS_ENV] = settings.to_json()
    try:
        uvicorn.run(_FACTORY, factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
