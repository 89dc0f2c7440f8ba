"""The seam between the engine's answer cache and where answers are kept: ``AnswerStore``.

A key is 16 bytes per argument row, a hash of the row's values computed by the engine
(``chalk.engine.cache.keys``); a store keeps each key's answer under its ``AnswerScope`` (the
model version) for the scope's time to live, and never answers one scope's key from another's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

__all__ = ["AnswerScope", "AnswerStore", "CacheStats", "Lookup"]


@dataclass(frozen=True, slots=True)
class AnswerScope:
    """Whose answers: one model version, asked through one scaling group.

    ``group`` names the scaling group (figures are kept per group); ``model`` and ``version``
    the model version that answers (a new version never sees an older one's answers);
    ``ttl_s`` how long an answer may be served, the feature's ``max_staleness`` in seconds
    (> 0, ``math.inf`` for "infinity"): a lookup never answers with one put longer ago than
    its own scope's ``ttl_s``; ``output_type`` the answers' Arrow type (the model's
    output_schema); ``identity`` which registration of that version (a digest of it,
    ``Route.version_digest``): a version of the same name and number registered in another
    catalog, or registered again, never sees these answers.
    """

    group: str
    model: str
    version: int
    ttl_s: float
    output_type: pa.DataType
    identity: str = ""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a store found for a batch of keys.

    ``found`` has one value per key asked, True where an answer is kept and fresh;
    ``answers`` holds those answers in the order of their keys (``len(answers)`` equals the
    count of True in ``found``), typed by the scope's ``output_type``. ``error`` is set when the
    store could not answer (a Redis server down or slow): every key is then a miss.
    """

    found: pa.BooleanArray
    answers: pa.Array
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A store's figures for one scaling group since the process started.

    ``hits`` and ``misses`` count rows looked up; ``bytes`` is what the group's answers take
    now (in this process's memory, or as written to Redis); ``evictions`` counts answers
    dropped before their time to live for room; ``errors`` counts lookups and writes the store
    failed (each cost its rows a miss, never a query error).
    """

    hits: int = 0
    misses: int = 0
    bytes: int = 0
    evictions: int = 0
    errors: int = 0


class AnswerStore(Protocol):
    """Where a process keeps model answers. Used from the engine's event loop."""

    async def get(self, scope: AnswerScope, keys: pa.FixedSizeBinaryArray) -> Lookup:
        """The kept, fresh answers of ``keys`` (16 bytes each) under ``scope``. Never raises
        for a failing backend: it returns every key as a miss, with ``error`` set."""
        ...

    async def put(
        self, scope: AnswerScope, keys: pa.FixedSizeBinaryArray, answers: pa.Array
    ) -> None:
        """Keep ``answers[i]`` as the answer of ``keys[i]`` under ``scope`` for ``scope.ttl_s``
        seconds. Never raises for a failing backend (it counts an error)."""
        ...

    def stats(self) -> dict[str, CacheStats]:
        """Figures per scaling group name; safe to read from any thread."""
        ...

    async def aclose(self) -> None:
        """Release connections and memory; the store answers nothing after."""
        ...
