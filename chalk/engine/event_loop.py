"""An asyncio event loop on a daemon thread, and blocking waits on a loop that see Ctrl-C.

``ModelCaller`` runs its calls on one (its own, or a process-wide one passed in); the bench
and the server share one across their callers. Synchronous code waits with ``run_on``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

__all__ = ["EventLoopThread", "run_on"]

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
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError(
            "a blocking call was made on the event loop that would run it, so it would wait "
            "forever: expected it from another thread; await the coroutine (ModelCaller.call) "
            "instead"
        )
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
