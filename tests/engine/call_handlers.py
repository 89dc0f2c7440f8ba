"""Handlers the model-call tests serve (imported by runtime processes started in tests/engine)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def entities(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """A toy NER model: every capitalised word is a NAME; a null text gives a null."""
    [texts] = event.values()
    found = []
    for text in texts.to_pylist():
        if text is None:
            found.append(None)
            continue
        words = [word.strip(".,!?") for word in text.split()]
        names = [{"text": word, "label": "NAME"} for word in words if word[:1].isupper()]
        found.append(json.dumps({"entities": names}))
    return pa.array(found, pa.large_string())


def difference(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """``a - b``, read by the field names of the model's input_schema."""
    return pc.subtract(event["a"], event["b"])


def named_values(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """Per row, ``name=value`` for each column in the order the handler got them."""
    columns = [(name, values.to_pylist()) for name, values in event.items()]
    rows = len(columns[0][1])
    return pa.array(
        [",".join(f"{name}={values[row]}" for name, values in columns) for row in range(rows)]
    )


def type_names(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """Per row, the Arrow type of each column the handler got."""
    rows = len(next(iter(event.values())))
    return pa.array([",".join(str(values.type) for values in event.values())] * rows)


def rows_seen(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """Per row, how many rows its call carried (shows how the engine chunked them)."""
    rows = len(next(iter(event.values())))
    return pa.array([rows] * rows, pa.int64())


def crash(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """A handler that kills its replica (exit code 3), as a native library's abort does."""
    os._exit(3)


def fail_on_negative(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """``x`` back, unless a row is negative: then the handler raises, naming it."""
    [values] = event.values()
    negative = [value for value in values.to_pylist() if value is not None and value < 0]
    if negative:
        raise ValueError(f"cannot score negative values {negative}")
    return values


def crash_on_negative(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """``x`` back, unless a row is negative: then the replica dies (exit code 3)."""
    [values] = event.values()
    if any(value is not None and value < 0 for value in values.to_pylist()):
        os._exit(3)
    return values


def slow_echo(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """``x`` back after ``SLOW_SECONDS`` (default 0.05): keeps the in-flight slots busy."""
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0.05")))
    [values] = event.values()
    return values
