"""Handlers the runtime tests serve (imported by the runtime process, ours or the reference)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def _only(event: dict[str, pa.Array]) -> pa.Array:
    return next(iter(event.values()))


def identity(event: dict[str, pa.Array], context: Any) -> pa.Array:
    return _only(event)


def double(event: dict[str, pa.Array], context: Any) -> pa.Array:
    return pc.multiply(_only(event), 2)


async def async_double(event: dict[str, pa.Array], context: Any) -> pa.Array:
    await asyncio.sleep(0)
    return pc.multiply(_only(event), 2)


def column_names(event: dict[str, pa.Array], context: Any) -> pa.Array:
    rows = len(_only(event))
    return pa.array([",".join(event)] * rows)


def context_echo(event: dict[str, pa.Array], context: Any) -> pa.Array:
    rows = len(_only(event))
    return pa.array([json.dumps(context, sort_keys=True)] * rows)


def _validate(values: pa.Array) -> None:
    raise ValueError(f"cannot score {len(values)} rows: the model is not trained")


def boom(event: dict[str, pa.Array], context: Any) -> pa.Array:
    _validate(_only(event))
    return _only(event)


def huge_error(event: dict[str, pa.Array], context: Any) -> pa.Array:
    raise RuntimeError("x" * 100_000 + "%" * 5_000)


def wrong_length(event: dict[str, pa.Array], context: Any) -> pa.Array:
    values = _only(event)
    return pa.concat_arrays([values, values.slice(0, 1)])


def two_columns(event: dict[str, pa.Array], context: Any) -> pa.RecordBatch:
    values = _only(event)
    return pa.record_batch([values, values], names=["a", "b"])


def as_list(event: dict[str, pa.Array], context: Any) -> list[Any]:
    return [None if v is None else v * 2 for v in _only(event).to_pylist()]


def as_numpy(event: dict[str, pa.Array], context: Any) -> Any:
    # Imported here: the reference runtime's venv has no numpy and imports this module too.
    import numpy as np

    return np.asarray(_only(event).to_numpy(zero_copy_only=False)) * 2


def as_table(event: dict[str, pa.Array], context: Any) -> pa.Table:
    return pa.table({"out": pc.multiply(_only(event), 2)})


def as_chunked(event: dict[str, pa.Array], context: Any) -> pa.ChunkedArray:
    values = pc.multiply(_only(event), 2)
    half = len(values) // 2
    return pa.chunked_array([values.slice(0, half), values.slice(half)], type=values.type)


def slow(event: dict[str, pa.Array], context: Any) -> pa.Array:
    time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    return _only(event)


_running_lock = threading.Lock()
_running = {"now": 0, "peak": 0}


def peak_tracking(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """``slow``, also writing to ``PEAK_FILE`` the most calls seen in the handler at once."""
    with _running_lock:
        _running["now"] += 1
        if _running["now"] > _running["peak"]:
            _running["peak"] = _running["now"]
            Path(os.environ["PEAK_FILE"]).write_text(str(_running["peak"]))
    try:
        time.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    finally:
        with _running_lock:
            _running["now"] -= 1
    return _only(event)


def exits(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """What a library that calls ``sys.exit`` on bad input does to a handler."""
    sys.exit(f"cannot score {len(_only(event))} rows")


def replica_name(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """Which runtime answered: its ``REPLICA_NAME``, once per row."""
    rows = len(_only(event))
    return pa.array([os.environ.get("REPLICA_NAME", "")] * rows)


def grpc_experiments(event: dict[str, pa.Array], context: Any) -> pa.Array:
    rows = len(_only(event))
    return pa.array([os.environ.get("GRPC_EXPERIMENTS")] * rows, pa.string())


async def async_boom(event: dict[str, pa.Array], context: Any) -> pa.Array:
    await asyncio.sleep(0)
    _validate(_only(event))
    return _only(event)
