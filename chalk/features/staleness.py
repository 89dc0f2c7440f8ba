"""``feature(max_staleness=...)``: how long a feature's model answers may be reused, parsed from
Chalk's duration forms into seconds. ``dsl.py`` parses it; the graph stores it.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final

from chalk.common.errors import ChalkError

__all__ = ["StalenessError", "max_staleness_seconds", "staleness_text"]

# Seconds per unit of a duration string, as Chalk writes them ("1h30m", "1d", "30s"), largest
# first: a string names each unit at most once, in this order.
_UNITS: Final = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_INFINITE: Final = frozenset({"infinity", "inf", "all"})
# The longest finite staleness: answers kept longer than a model version lives are "infinity".
MAXIMUM_S: Final = 10 * 365 * 86_400
EXPECTED: Final = (
    'a duration such as "30s", "10m", "1h", "1.5h", "1d" or "1h30m" (units w, d, h, m, s, '
    "each at most once, largest first) up to 10 years, a datetime.timedelta, "
    '"infinity", or "0s"/None for no caching'
)


class StalenessError(ChalkError, ValueError):
    """A ``max_staleness`` that is not a duration; ``dsl.py`` names the feature."""


def max_staleness_seconds(value: object) -> float | None:
    """``value`` in seconds: None for no caching (None, "0s", a zero timedelta), ``math.inf``
    for "infinity".

    Examples
    --------
    >>> max_staleness_seconds("1h30m"), max_staleness_seconds(timedelta(minutes=2))
    (5400.0, 120.0)
    >>> max_staleness_seconds("0s") is None, max_staleness_seconds("infinity")
    (True, inf)
    >>> max_staleness_seconds("soon")
    Traceback (most recent call last):
    ...
    chalk.features.staleness.StalenessError: expected a duration such as "30s", "10m", "1h", "1.5h", "1d" or "1h30m" (units w, d, h, m, s, each at most once, largest first) up to 10 years, a datetime.timedelta, "infinity", or "0s"/None for no caching, got 'soon'
    >>> max_staleness_seconds("1.5h"), max_staleness_seconds("1w2d")
    (5400.0, 777600.0)
    """  # noqa: E501
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds > MAXIMUM_S:
            raise _too_long(value)
    elif isinstance(value, str):
        seconds = _parsed(value)
    else:
        raise StalenessError(f"expected {EXPECTED}, got {type(value).__name__} {value!r}")
    if seconds < 0:
        raise StalenessError(f"expected {EXPECTED}, got a negative duration {value!r}")
    return None if seconds == 0 else seconds


def _too_long(value: object) -> StalenessError:
    return StalenessError(
        f'expected {EXPECTED}, got {value!r}, longer than 10 years: write "infinity" to keep '
        f"answers as long as the model version lives"
    )


def staleness_text(seconds: float) -> str:
    """``seconds`` as a duration string that ``max_staleness_seconds`` reads back.

    Examples
    --------
    >>> staleness_text(5400.0), staleness_text(math.inf)
    ('5400s', 'infinity')
    """
    if math.isinf(seconds):
        return "infinity"
    return f"{int(seconds)}s" if seconds.is_integer() else f"{seconds}s"


def _parsed(text: str) -> float:
    given = text.strip().lower()
    if given in _INFINITE:
        return math.inf
    parts = [(match.group(1), match.group(2)) for match in _PART.finditer(given)]
    if not parts or "".join(amount + unit for amount, unit in parts) != given:
        raise StalenessError(f"expected {EXPECTED}, got {text!r}")
    order = [list(_UNITS).index(unit) for _, unit in parts]
    if order != sorted(set(order)):  # "1h1h", "30m1h"
        raise StalenessError(f"expected {EXPECTED}, got {text!r}")
    seconds = float(sum(float(amount) * _UNITS[unit] for amount, unit in parts))
    if not seconds <= MAXIMUM_S:  # also the infinity of a number too long for a float
        raise _too_long(text)
    return seconds
