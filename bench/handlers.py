"""Handlers served by the runtimes in ``bench/shim.py`` and ``bench/engine.py``; loaded as
``handlers.double``."""

from __future__ import annotations

from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["double"]

# A ready-made scalar: with a Python float operand, pyarrow 26 looks for pandas on every call
# (about 55-70 us), which would bury the runtimes' own per-call costs under the handler's.
_TWO: Final = pa.scalar(2.0, pa.float64())


def double(event: dict[str, pa.Array], context: dict[str, Any]) -> pa.Array:
    """The float64 column ``x`` times two: vectorised, so the runtime's own costs dominate."""
    return pc.multiply(event["x"], _TWO)
