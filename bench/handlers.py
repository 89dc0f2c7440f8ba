"""Handlers served by the runtimes in ``bench/shim.py``, ``bench/engine.py``, ``bench/calls.py``
and ``bench/scaling.py``; loaded as ``handlers.double``, ``handlers.paced_double``,
``handlers.burn`` and ``handlers.sleepy_double``."""

from __future__ import annotations

import time
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["burn", "double", "paced_double", "sleepy_double"]

# A ready-made scalar: with a Python float operand, pyarrow 26 looks for pandas on every call
# (about 55-70 us), which would bury the runtimes' own per-call costs under the handler's.
_TWO: Final = pa.scalar(2.0, pa.float64())
_BURN_PER_CALL_S: Final = 0.001
_BURN_PER_ROW_S: Final = 0.000_001


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


def burn(event: dict[str, pa.Array], context: dict[str, Any]) -> pa.Array:
    """``x`` back after burning 1 ms of CPU plus 1 us per row: a model whose cost per call
    dwarfs its cost per row, as a small neural network's does."""
    rows = len(event["x"])
    until = time.thread_time() + _BURN_PER_CALL_S + rows * _BURN_PER_ROW_S
    while time.thread_time() < until:
        pass
    return event["x"]


# What an I/O-bound model waits per call in ``sleepy_double`` (bench/scaling.py's scale-out).
SLEEPY_CALL_S: Final = 0.05


def sleepy_double(event: dict[str, pa.Array], context: dict[str, Any]) -> pa.Array:
    """``double`` for an I/O-bound model: it sleeps 50 ms per call, whatever its rows, as a
    model waiting on a remote service would: its replicas are busy waiting, not computing, so
    their CPU never asks for more of them and only the queue depth can."""
    time.sleep(SLEEPY_CALL_S)
    return pc.multiply(event["x"], _TWO)
