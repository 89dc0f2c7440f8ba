"""The one capped exponential back-off every retry in ``chalk`` waits by: the local
controller's restarts and retries, and the engine's rounds of model-call retries.
"""

from __future__ import annotations

__all__ = ["capped_backoff"]

# 2 ** 62 is still exact as a float; past it every delay is the cap anyway.
_MAX_EXPONENT = 62


def capped_backoff(attempt: int, *, initial_s: float, max_s: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    ``initial_s`` doubles with each attempt and never exceeds ``max_s``; an attempt below 1
    waits ``initial_s`` (capped).

    Examples
    --------
    >>> [capped_backoff(n, initial_s=1.0, max_s=10.0) for n in range(1, 6)]
    [1.0, 2.0, 4.0, 8.0, 10.0]
    >>> capped_backoff(10_000, initial_s=0.05, max_s=2.0)
    2.0
    """
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    return float(min(max_s, initial_s * 2**exponent))
