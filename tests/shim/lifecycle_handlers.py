"""A handler module with module-level on_startup/on_shutdown hooks (found without flags)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

_state: dict[str, str] = {}


def on_startup() -> None:
    time.sleep(float(os.environ.get("STARTUP_SECONDS", "0")))
    _state["model"] = "loaded"
    Path(os.environ["LIFECYCLE_DIR"], "startup").write_text("ran")


def on_shutdown() -> None:
    Path(os.environ["LIFECYCLE_DIR"], "shutdown").write_text("ran")


def explicit_startup() -> None:
    _state["model"] = "explicit"
    Path(os.environ["LIFECYCLE_DIR"], "explicit_startup").write_text("ran")


def failing_startup() -> None:
    raise OSError("model weights not found at /models/ner.bin")


def handler(event: dict[str, pa.Array], context: Any) -> pa.Array:
    rows = len(next(iter(event.values())))
    return pa.array([_state.get("model", "missing")] * rows)
