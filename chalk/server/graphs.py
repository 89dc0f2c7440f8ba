"""The applied feature graph a server answers with, read again from the catalog when it may
have changed (at most every ``ttl_s``), so a ``chalk apply`` needs no restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chalk.catalog import Catalog
from chalk.common.errors import ChalkError
from chalk.features import FeatureGraph

__all__ = ["ActiveGraph", "LoadedGraph", "NoGraphError"]


class NoGraphError(ChalkError, LookupError):
    """No feature graph has been applied to the project yet."""


@dataclass(frozen=True, slots=True)
class LoadedGraph:
    """An applied graph and its version number in the catalog."""

    version: int
    graph: FeatureGraph


class ActiveGraph:
    """The catalog's active graph, parsed once per version and re-checked every ``ttl_s``.

    Thread-safe: request threads call ``current`` at once; one of them reads the catalog.

    Examples
    --------
    >>> from chalk.catalog import open_catalog
    >>> catalog = open_catalog("sqlite://")
    >>> active = ActiveGraph(catalog, ttl_s=0)
    >>> active.current()
    Traceback (most recent call last):
    ...
    chalk.server.graphs.NoGraphError: no feature graph has been applied to this project: run `chalk apply` first
    >>> _ = catalog.graphs.apply({"format": 1, "classes": []})
    >>> active.current().version
    1
    """  # noqa: E501

    def __init__(
        self, catalog: Catalog, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._catalog = catalog
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: LoadedGraph | None = None
        self._checked_at = float("-inf")

    def current(self) -> LoadedGraph:
        """The active graph; raises ``NoGraphError`` before the first ``chalk apply``."""
        now = self._clock()
        loaded = self._loaded
        if loaded is not None and now - self._checked_at < self._ttl_s:
            return loaded
        with self._lock:
            if self._loaded is None or now - self._checked_at >= self._ttl_s:
                self._loaded = self._read()
                self._checked_at = now
            return self._loaded

    def fresh(self) -> LoadedGraph | None:
        """The graph ``current`` would answer without reading the catalog, or None when it
        would read it (an event loop takes this, and leaves the read to a thread)."""
        loaded = self._loaded
        if loaded is not None and self._clock() - self._checked_at < self._ttl_s:
            return loaded
        return None

    def _read(self) -> LoadedGraph:
        record = self._catalog.graphs.active()
        if record is None:
            raise NoGraphError(
                "no feature graph has been applied to this project: run `chalk apply` first"
            )
        if self._loaded is not None and self._loaded.version == record.version:
            return self._loaded
        return LoadedGraph(record.version, FeatureGraph.from_json(record.graph))
