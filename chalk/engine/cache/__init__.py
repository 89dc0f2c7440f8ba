"""The answer cache: model answers kept by model version and argument values, for a feature's
``max_staleness``.

The engine looks a call's distinct argument rows up before sending them and stores what the
model answered after. Where answers are kept is an ``AnswerStore``: in this process, bounded
by bytes, by default (``chalk.engine.cache.memory``), or a Redis server that several processes
share when chalk.yaml names one (``online_store: redis://...``,
``chalk.engine.cache.redis_store``). Never for a model version registered with
``deterministic=False``. ``open_answer_store`` picks one.
"""

from __future__ import annotations

from chalk.engine.cache.memory import DEFAULT_MAX_BYTES, MemoryAnswerStore
from chalk.engine.cache.store import AnswerScope, AnswerStore, CacheStats, Lookup
from chalk.engine.errors import EngineError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "AnswerScope",
    "AnswerStore",
    "AnswerStoreUnavailableError",
    "CacheStats",
    "Lookup",
    "MemoryAnswerStore",
    "open_answer_store",
]


class AnswerStoreUnavailableError(EngineError):
    """chalk.yaml's ``online_store`` names a store this installation cannot open."""


def open_answer_store(
    online_store: str | None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> AnswerStore:
    """The answer store of a process: chalk.yaml's ``online_store`` (a ``redis://``,
    ``rediss://`` or ``unix://`` URL: ``RedisAnswerStore``), or with None one in this
    process's memory holding at most ``max_bytes`` bytes.

    Examples
    --------
    >>> type(open_answer_store(None, max_bytes=1024)).__name__
    'MemoryAnswerStore'
    """
    if online_store is None:
        return MemoryAnswerStore(max_bytes)
    return _redis_store(online_store)


def _redis_store(url: str) -> AnswerStore:
    """The store in the Redis server at ``url``, shared by every process naming it (its memory
    is bounded by the server's ``maxmemory``, not ``max_bytes``): ConfigError for a URL that
    is not a Redis server's, AnswerStoreUnavailableError without the ``redis`` extra."""
    from chalk.engine.cache.redis_store import RedisAnswerStore, check_redis_url  # noqa: PLC0415

    check_redis_url(url)
    try:
        import redis.asyncio  # noqa: F401, PLC0415 (an optional dependency)
    except ImportError:
        raise AnswerStoreUnavailableError(
            "chalk.yaml: online_store names a Redis server, but redis-py is not installed: "
            "expected scalegroup's redis extra (pip install 'scalegroup[redis]'), or no "
            "online_store to keep answers in this process"
        ) from None
    return RedisAnswerStore(url)
