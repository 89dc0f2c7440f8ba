"""The one table of bounds on every number a user gives, each with the reason for it.

Specs (``chalk.catalog``), the CLI, the feature server's settings and the model runtime's flags
check their numbers here, so a value that would make a part do unbounded work is refused before
it is stored or used. README's "Bounds" section lists the same table.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Final

from chalk.common.errors import ValidationError

__all__ = ["BOUNDS", "Bound", "check_bound", "check_number"]


@dataclass(frozen=True, slots=True)
class Bound:
    """The smallest and largest value of one user-given number, its unit and why; ``whole``:
    only an int is accepted (a count, a size in bytes)."""

    minimum: float
    maximum: float
    unit: str
    reason: str
    whole: bool = False

    def shown(self, value: float) -> str:
        """``value`` in this bound's unit, as the user would write it."""
        if self.unit == "bytes":
            return _bytes_text(int(value))
        if self.unit == "millicores":
            return f"{int(value)}m" if value % 1000 else str(int(value) // 1000)
        text = str(int(value)) if float(value).is_integer() else str(value)
        return f"{text} {self.unit}" if self.unit else text


_MI: Final = 2**20
_GI: Final = 2**30
_TI: Final = 2**40

BOUNDS: Final[dict[str, Bound]] = {
    # Scaling groups ---------------------------------------------------------------------------
    "replicas": Bound(
        1,
        1_000,
        "",
        "the controller tracks every replica on each pass, and each is a process or a pod",
    ),
    "target_cpu_utilization_percentage": Bound(1, 100, "", "a share of the requested CPU"),
    "queue_depth_target": Bound(1, 10_000, "", "calls in flight per replica"),
    "shutdown_delay_seconds": Bound(0, 3_600, "s", "a leaving replica is killed after it"),
    "window_seconds": Bound(0, 86_400, "s", "the scale-down window; longer never scales down"),
    "idle_seconds": Bound(1, 604_800, "s", "idle time before scaling to zero, a week at most"),
    "port": Bound(1, 65_535, "", "a TCP port"),
    "batch_max_delay_ms": Bound(
        0, 10_000, "ms", "a longer wait for a free slot only delays queries: add replicas instead"
    ),
    "cpu": Bound(1, 1_024_000, "millicores", "no machine offers more than 1024 cores"),
    "memory": Bound(
        16 * _MI,
        64 * _TI,
        "bytes",
        "below 16Mi no Python runtime starts, it is killed as OOMKilled at once; "
        "no machine offers more than 64Ti",
    ),
    "gpu": Bound(1, 16, "", "no machine holds more than 16 GPUs"),
    "tags": Bound(0, 64, "tags", "each tag is a label on every object of the group"),
    "env": Bound(0, 256, "variables", "each replica's environment"),
    "env_value_length": Bound(0, 32_768, "characters", "one environment variable's value"),
    "entrypoint_arguments": Bound(1, 256, "arguments", "one command line"),
    "entrypoint_length": Bound(1, 32_768, "characters", "one command line, all arguments"),
    # Model versions ---------------------------------------------------------------------------
    "metadata": Bound(0, 64, "entries", "a model version's metadata, stored with each version"),
    "metadata_value_length": Bound(0, 4_096, "characters", "one metadata value"),
    "aliases": Bound(0, 32, "aliases", "a model version's aliases"),
    # Servers ----------------------------------------------------------------------------------
    "workers": Bound(1, 256, "", "processes or threads, each holding its own state"),
    "max_body_bytes": Bound(1, 2 * _GI, "bytes", "one request body is held in memory"),
    "deadline_seconds": Bound(0.001, 3_600, "s", "one request's time; longer holds its worker"),
    "grace_period_seconds": Bound(0, 3_600, "s", "how long SIGTERM waits for in-flight calls"),
    "hold_timeout_seconds": Bound(
        0, 3_600, "s", "how long a call waits for a replica of a group with none ready"
    ),
    "max_held_calls": Bound(0, 1_000_000, "calls", "each held call waits in memory", whole=True),
    "answer_cache_bytes": Bound(
        0, 64 * _GI, "bytes", "each process holds its answer cache in memory", whole=True
    ),
    # Views ------------------------------------------------------------------------------------
    "refresh_seconds": Bound(0.1, 3_600, "s", "time between two refreshes of a view"),
    "log_lines": Bound(0, 1_000_000, "lines", "lines held in memory before they print"),
    "block_rows": Bound(1, 10_000_000, "rows", "one block of an offline query is held in memory"),
    "log_since_seconds": Bound(
        0, 366 * 86_400, "s", "how far back `chalk logs` looks; a year is more than logs keep"
    ),
}


def check_bound(name: str, value: float, *, what: str | None = None) -> None:
    """Raise ``ValidationError`` when ``value`` is outside ``BOUNDS[name]``.

    ``what`` names the value in the message (a flag such as ``--replicas``); default ``name``.
    Infinite and NaN values are always outside.

    Examples
    --------
    >>> check_bound("replicas", 3)
    >>> check_bound("replicas", 5000, what="--replicas")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: --replicas is out of range: expected 1 to 1000 (the \
controller tracks every replica on each pass, and each is a process or a pod), got 5000
    >>> check_bound("memory", 500_000, what="--memory")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: --memory is below its floor: expected at least 16Mi \
(below 16Mi no Python runtime starts, it is killed as OOMKilled at once; no machine offers \
more than 64Ti), got 500k
    >>> check_bound("max_held_calls", True)
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: max_held_calls: expected an int, got bool True
    """
    bound = BOUNDS[name]
    label = name if what is None else what
    check_number(value, label, whole=bound.whole)
    finite = not isinstance(value, float) or math.isfinite(value)
    if finite and bound.minimum <= value <= bound.maximum:
        return
    got = bound.shown(value) if finite else repr(value)
    if finite and value < bound.minimum and bound.unit == "bytes":
        raise ValidationError(
            f"{label} is below its floor: expected at least {bound.shown(bound.minimum)} "
            f"({bound.reason}), got {got}"
        )
    raise ValidationError(
        f"{label} is out of range: expected {bound.shown(bound.minimum)} to "
        f"{bound.shown(bound.maximum)} ({bound.reason}), got {got}"
    )


def check_number(value: object, what: str, *, whole: bool = False) -> None:
    """Raise ``ValidationError`` naming ``what`` unless ``value`` is a number (an int when
    ``whole``); a bool is not a number here, though Python counts it as an int.

    Examples
    --------
    >>> check_number(1.5, "hold_timeout_s")
    >>> check_number("5", "hold_timeout_s")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: hold_timeout_s: expected a number, got str '5'
    """
    expected = numbers.Integral if whole else numbers.Real
    if isinstance(value, bool) or not isinstance(value, expected):
        kind = "an int" if whole else "a number"
        raise ValidationError(f"{what}: expected {kind}, got {type(value).__name__} {value!r}")


def _bytes_text(size: int) -> str:
    for suffix, factor in (("Ti", _TI), ("Gi", _GI), ("Mi", _MI), ("Ki", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    for suffix, factor in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)
