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


# ``picky``'s row values with a meaning; any other value is answered as it is.
BLOCK, CRASH = 1000, -3


def picky(event: dict[str, pa.Array], context: Any) -> pa.Array:
    """``x`` back, except: a call carrying ``BLOCK`` takes ``BLOCK_SECONDS`` (default 1.5),
    one carrying ``CRASH`` kills the replica (exit code 3), one carrying another negative
    value raises ``ValueError`` naming it."""
    [values] = event.values()
    rows = values.to_pylist()
    if BLOCK in rows:
        time.sleep(float(os.environ.get("BLOCK_SECONDS", "1.5")))
    if CRASH in rows:
        os._exit(3)
    negative = [value for value in rows if value is not None and value < 0]
    if negative:
        raise ValueError(f"cannot score negative values {negative}")
    return values
