"""Which worker of ``chalk serve --workers N`` scrapes the dashboard's series: the one holding
an exclusive lock on a file in the project's state directory. It writes its rings to a
snapshot file after each pass; the other workers read that file when asked for series.

With one worker nothing is written: the worker scrapes and answers from memory. A worker that
lost the election stays a reader for its life (if the scraping worker dies, uvicorn replaces
it, and the newcomer takes the free lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
from pathlib import Path
from typing import IO, Final

from chalk.server.dashboard.series import SeriesStore

__all__ = ["ScrapeElection"]

_LOG = logging.getLogger("chalk.server")
_LOCK: Final = "dashboard-scraper.lock"
_SNAPSHOT: Final = "dashboard-series.pickle"


class ScrapeElection:
    """``scrapes`` is True in the one worker that scrapes (always, with one worker)."""

    def __init__(self, state_dir: Path, *, workers: int) -> None:
        self._dir = state_dir
        self._lock: IO[bytes] | None = None
        self._cached: tuple[int, SeriesStore] | None = None
        if workers <= 1:
            self.scrapes = True
            self._shared = False
            return
        self._shared = True
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            lock = (state_dir / _LOCK).open("ab")
        except OSError as error:
            # No shared file: every worker scrapes and answers from its own rings.
            _LOG.warning("the dashboard's series are scraped by every worker: %s", error)
            self.scrapes, self._shared = True, False
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            self.scrapes = False
            return
        self._lock = lock
        self.scrapes = True
        # A snapshot left by an earlier server is not this one's: readers wait for the first.
        (state_dir / _SNAPSHOT).unlink(missing_ok=True)

    def publish(self, store: SeriesStore) -> None:
        """After a pass of the scraping worker: its rings, for the others to read (written
        whole to a temporary file, then renamed over the last)."""
        if not self._shared:
            return
        temporary = self._dir / f".{_SNAPSHOT}.{os.getpid()}"
        # The file is this project's own (its state directory), written by this same user.
        temporary.write_bytes(pickle.dumps(store, protocol=pickle.HIGHEST_PROTOCOL))
        temporary.replace(self._dir / _SNAPSHOT)

    def read(self) -> SeriesStore:
        """The scraping worker's last snapshot (an empty store before its first)."""
        path = self._dir / _SNAPSHOT
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return SeriesStore()
        if self._cached is None or self._cached[0] != stamp:
            try:
                store = pickle.loads(path.read_bytes())  # our own file: see publish
            except (OSError, EOFError, pickle.UnpicklingError):
                return SeriesStore() if self._cached is None else self._cached[1]
            self._cached = (stamp, store)
        return self._cached[1]

    def close(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
