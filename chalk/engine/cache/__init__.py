"""The answer cache: model answers kept by model version and argument values, for a feature's
``max_staleness``.

The engine looks a call's distinct argument rows up before sending them and stores what the
model answered after. Where answers are kept is an ``AnswerStore``: in this process, bounded
by bytes, by default (``chalk.engine.cache.memory``), or a Redis server that several processes
share when chalk.yaml names one (``online_store: redis://...``,
``chalk.engine.cache.redis_store``). Never for a model version registered with
``deterministic=False``.
"""

from __future__ import annotations

from chalk.engine.cache.store import AnswerScope, AnswerStore, CacheStats, Lookup

__all__ = ["AnswerScope", "AnswerStore", "CacheStats", "Lookup"]
