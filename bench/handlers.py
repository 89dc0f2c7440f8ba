"""Handlers served by the runtimes in ``bench/shim.py``, ``bench/engine.py`` and
``bench/calls.py``; loaded as ``handlers.double`` and ``handlers.paced_double``."""

from __future__ import annotations

import time
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["double", "paced_double"]

# A ready-made scalar: with a Python float operand, pyarrow 26 looks for pandas on every call
# (about 55-70 us), which would bury the runtimes' own per-call costs under the handler's.
_TWO: Final = pa.scalar(2.0, pa.float64())


def double(event: dict[str, pa.Array], context: dict[str, Any]) -> pa.Array:
    """The float64 column ``x`` times two: vectorised, so the runtime's own costs dominate."""
    return pc.multiply(event["x"], _TWO)


# What the model costs per row in ``paced_double`` (bench/calls.py's deduplication figures).
PACED_ROW_S: Final = 10e-6


def paced_double(event: dict[str, pa.Array], context: dict[str, Any]) -> pa.Array:
    """``double`` for a model that spends 10 us per row: it sleeps them, as a model waiting on
    its accelerator would, so the cost holds on a busy 2-core machine and leaves its CPU to the
    client."""
    values = event["x"]
    time.sleep(len(values) * PACED_ROW_S)
    return pc.multiply(values, _TWO)
