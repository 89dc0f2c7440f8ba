"""An asyncio event loop on a daemon thread, and blocking waits on a loop that see Ctrl-C.

``ModelCaller`` runs its calls on one (its own, or a process-wide one passed in); the bench
and the server share one across their callers. Synchronous code waits with ``run_on``, or
hands plain callbacks over through an ``Inbox`` and waits for a ``Reply``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Final, Generic, TypeVar, cast

__all__ = ["EventLoopThread", "Inbox", "Reply", "refuse_on", "run_on"]

# How long a blocking wait for the event loop sleeps before it checks for Ctrl-C again.
_WAIT_SLICE_S: Final = 0.2

T = TypeVar("T")


class EventLoopThread:
    """An asyncio event loop running on a daemon thread, for synchronous code to submit to.

    gRPC's asyncio objects belong to the loop that made them, so a process keeps one of these
    for all its model calls and passes ``loop`` to each ``ModelCaller``.

    Examples
    --------
    >>> async def answer() -> int:
    ...     return 42
    >>> thread = EventLoopThread()
    >>> thread.run(answer())
    42
    >>> thread.stop()
    """

    def __init__(self, *, name: str = "chalk-model-calls") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._stopped = False
        self._lock = threading.Lock()
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout_s: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or its exception)."""
        return run_on(self._loop, coroutine, timeout_s)

    def stop(self) -> None:
        """Cancel what still runs on the loop, stop it and join the thread; idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread.is_alive():
            run_on(self._loop, _cancel_others(), None)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()


async def _cancel_others() -> None:
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def run_on(
    loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T], timeout_s: float | None
) -> T:
    """Run ``coroutine`` on ``loop`` (from a thread other than the loop's) and wait for its
    result or exception, at most ``timeout_s`` seconds; Ctrl-C while waiting cancels it."""
    try:
        refuse_on(loop)
    except RuntimeError:
        coroutine.close()
        raise
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    give_up = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        # Waited for in short slices: an untimed wait does not see Ctrl-C once polars is
        # loaded, so a query would only stop when the model answered.
        while True:
            left = _WAIT_SLICE_S if give_up is None else give_up - time.monotonic()
            try:
                return future.result(max(0.0, min(left, _WAIT_SLICE_S)))
            except TimeoutError:
                if future.done():
                    raise  # the coroutine's own TimeoutError
                if give_up is not None and time.monotonic() >= give_up:
                    future.cancel()
                    raise TimeoutError(f"the call did not finish within {timeout_s}s") from None
    except BaseException:
        # KeyboardInterrupt in the waiting thread: stop the call too.
        future.cancel()
        raise


def refuse_on(loop: asyncio.AbstractEventLoop) -> None:
    """Raise RuntimeError when called on ``loop``'s own thread: a blocking wait there for work
    on ``loop`` would wait forever."""
    if asyncio._get_running_loop() is loop:
        raise RuntimeError(
            "a blocking call was made on the event loop that would run it, so it would wait "
            "forever: expected it from another thread; await the coroutine (ModelCaller.call) "
            "instead"
        )


class Inbox:
    """Callbacks handed to ``loop`` from other threads, run on it in the order put.

    ``call_soon_threadsafe`` wakes the loop (a write to its self-pipe, a system call) for
    every callback; an inbox wakes it once for however many callbacks arrive before it runs
    them: 64 query threads handing over their model calls cost a few wake-ups, not 64
    (bench/README.md, "calls.py"). A callback must not raise; one that does is reported to
    the loop's exception handler and the others still run.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: deque[Callable[[], None]] = deque()
        # Set while a drain is scheduled and has not started: items put meanwhile ride on it.
        self._scheduled = False

    def put(self, item: Callable[[], None]) -> None:
        """Run ``item`` on the loop soon (from any thread)."""
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        # Cleared before taking items: an item put after this line schedules a drain of its
        # own (at worst one that finds nothing), so none waits unseen.
        self._scheduled = False
        items = self._items
        while items:
            item = items.popleft()
            try:
                item()
            except Exception as error:
                self.loop.call_exception_handler(
                    {"message": "a callback handed to the loop failed", "exception": error}
                )


class Reply(Generic[T]):
    """One result (or error) that the loop sends to a waiting thread, once.

    Lighter than a ``concurrent.futures.Future`` (one lock, no condition or callbacks), for
    the one wait per model call of a query thread. ``wait`` sees Ctrl-C as ``run_on`` does.
    """

    __slots__ = ("_error", "_ready", "_sent", "_value")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._sent = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def send(self, value: T | None, error: BaseException | None) -> None:
        """The result, or the error ``wait`` raises; only the first one sent counts."""
        if self._sent:
            return
        self._sent = True
        self._value, self._error = value, error
        self._ready.release()

    def wait(
        self, loop: asyncio.AbstractEventLoop, timeout_s: float | None, cancel: Callable[[], None]
    ) -> T:
        """The result ``loop`` sent, waiting at most ``timeout_s`` seconds (TimeoutError after
        it); ``cancel`` runs when the wait ends without one (timeout, Ctrl-C). A loop closed
        meanwhile (its caller closed) raises CancelledError, as ``run_on``'s cancelled
        coroutine does."""
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            # In short slices, as run_on waits: an untimed wait does not see Ctrl-C.
            while not self._ready.acquire(timeout=_slice(give_up)):
                if loop.is_closed():
                    raise concurrent.futures.CancelledError("the event loop closed")
                if give_up is not None and time.monotonic() >= give_up:
                    raise TimeoutError(f"the call did not finish within {timeout_s}s")
        except BaseException:
            if not loop.is_closed():
                cancel()
            raise
        if self._error is not None:
            raise self._error
        return cast(T, self._value)  # sent without an error: a T


def _slice(give_up: float | None) -> float:
    if give_up is None:
        return _WAIT_SLICE_S
    return max(0.0, min(give_up - time.monotonic(), _WAIT_SLICE_S))
