"""A process's demand on each scaling group it calls, published to the catalog for the local
controller (DESIGN.md, "Demand"): at most once a second per group, at once when a call finds
no ready replica, from a thread of its own (the catalog is a database, the loop serves calls).

``ModelCaller`` owns one ``DemandPublisher`` when its catalog takes demand (``catalog.demand``)
and hands it each call's group (``called``) and each held call (``urgent``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from chalk.catalog.demand import DemandFigures

__all__ = [
    "PUBLISH_EVERY_S",
    "DemandPublisher",
    "DemandSink",
    "GroupLoad",
    "demand_sink",
    "process_id",
]

_LOG = logging.getLogger("chalk.engine.demand")
# A group's row is written at most this often (unless a call finds no ready replica).
PUBLISH_EVERY_S: Final = 1.0
# A group is published while it has demand, or was called this recently (its zeros and its
# last call time then reach the catalog once the calls end).
_CALLED_LATELY_S: Final = 5.0
# How often the publisher looks at the figures while any group is active.
_TICK_S: Final = 0.1


@runtime_checkable
class DemandSink(Protocol):
    """Where demand rows go: ``chalk.catalog.Catalog.demand`` (a ``DemandStore``)."""

    def publish(self, process: str, figures: Mapping[str, DemandFigures]) -> None: ...

    def forget(self, process: str) -> None: ...


def demand_sink(catalog: object) -> DemandSink | None:
    """The demand store of ``catalog`` (a ``Resolver``), or None when it keeps none (a fake
    resolver in tests, a catalog of another kind)."""
    sink = getattr(catalog, "demand", None)
    return sink if isinstance(sink, DemandSink) else None


def process_id() -> str:
    """This process's name in demand rows: host, pid and a random token (pids are reused).

    Examples
    --------
    >>> host, pid, token = process_id().rsplit(":", 2)
    >>> int(pid) == os.getpid(), len(token)
    (True, 8)
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class GroupLoad:
    """One group's figures in this process: model calls in flight; calls waiting (queued
    chunks before merging, and ``held`` calls waiting for a ready replica, counted in it too);
    and when the process last called the group (None: not since it started)."""

    in_flight: int = 0
    waiting: int = 0
    held: int = 0
    last_call_at: dt.datetime | None = None

    @property
    def total(self) -> int:
        return self.in_flight + self.waiting

    def figures(self) -> DemandFigures:
        return DemandFigures(self.in_flight, self.waiting, self.last_call_at)


class DemandPublisher:
    """Writes ``loads()`` of the groups called locally to ``sink`` under ``process``, from a
    daemon thread started by the first call.

    A group is written while it has demand or was called in the last 5 s, at most once every
    ``PUBLISH_EVERY_S``, and at once after ``urgent(group)``. ``close`` stops the thread and
    zeroes the process's rows. Errors writing are logged and the write is tried again on the
    next tick: demand is advice to the autoscaler, never a reason to fail a call.
    """

    def __init__(
        self,
        sink: DemandSink,
        loads: Callable[[], Mapping[str, GroupLoad]],
        *,
        process: str | None = None,
        every_s: float = PUBLISH_EVERY_S,
    ) -> None:
        self.process = process or process_id()
        self._sink = sink
        self._loads = loads
        self._every_s = every_s
        # Groups whose backend takes demand rows (local), by name: when each was last called.
        self._called: dict[str, float] = {}
        self._published: dict[str, float] = {}
        self._urgent: set[str] = set()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wrote = False
        # Set by the thread before it looks for work: a call then wakes it.
        self._idle = True

    def called(self, group: str) -> None:
        """A call to ``group`` started (on the loop: a dict write, and a wake-up when idle)."""
        self._called[group] = time.monotonic()
        if self._idle:
            self._idle = False
            self._start()
            self._wake.set()

    def urgent(self, group: str) -> None:
        """A call to ``group`` found no ready replica: write its row now."""
        self._called[group] = time.monotonic()
        with self._lock:
            self._urgent.add(group)
        self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="chalk-demand", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.clear()
            self._idle = True
            try:
                active = self.publish_due()
            except Exception:  # advice only: a failing step costs a tick, never the thread
                _LOG.exception("publishing demand failed; trying again in %s s", _TICK_S)
                active = True
            if active:
                self._idle = False
            # Idle: sleep until a call wakes it.
            self._wake.wait(_TICK_S if active else None)

    def publish_due(self) -> bool:
        """Write the rows that are due now; whether any group is still active."""
        now = time.monotonic()
        loads = self._loads()
        with self._lock:
            urgent, self._urgent = self._urgent, set()
        due: dict[str, DemandFigures] = {}
        active = False
        for group, called_at in list(self._called.items()):
            load = loads.get(group, GroupLoad())
            if load.total == 0 and now - called_at > _CALLED_LATELY_S:
                continue
            active = True
            if group in urgent or now - self._published.get(group, -math.inf) >= self._every_s:
                due[group] = load.figures()
        if due:
            try:
                self._sink.publish(self.process, due)
            except Exception as error:  # advice only: never stop publishing, never fail a call
                _LOG.warning("could not publish demand for %s: %s", ", ".join(due), error)
                with self._lock:
                    self._urgent |= urgent & set(due)
                return True
            self._wrote = True
            for group in due:
                self._published[group] = now
        return active

    def close(self) -> None:
        """Stop the thread and zero this process's rows (keeping its last call times)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5.0)
        if self._wrote:
            try:
                self._sink.forget(self.process)
            except Exception as error:  # the rows expire after 5 s anyway
                _LOG.warning("could not withdraw demand of %s: %s", self.process, error)
