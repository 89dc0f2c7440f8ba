"""A following reader of ``chalk.deploy`` log lines on a thread, for the logs tests of both
backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from chalk.deploy.logs import LogLine
from tests.deploy.local.conftest import wait_for

__all__ = ["Follower"]


class Follower:
    """Runs a following reader on a thread, keeping what it yields as ``[replica] text``.

    A group-wide follow never ends: its thread ends when the reader fails once the test's
    server or catalog is gone, and that failure is dropped.
    """

    def __init__(self, lines: Iterator[LogLine]) -> None:
        self.seen: list[str] = []
        self.ended = threading.Event()
        self._lines = lines
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for line in self._lines:
                self.seen.append(f"[{line.replica}] {line.text}")
        except Exception:
            pass  # a reader failing once the test's server or catalog went: seen is what counts
        self.ended.set()

    def wait_for(self, *lines: str) -> None:
        """Until every one of ``lines`` was seen."""
        wait_for(lambda: all(line in self.seen for line in lines), timeout_s=10, what=lines)
