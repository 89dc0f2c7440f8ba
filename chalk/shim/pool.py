"""The threads that run sync handlers off the event loop, with a cheap hop each way.

``loop.run_in_executor`` chains a concurrent.futures.Future to an asyncio one; this pool hands
a job to an idle thread through a queue and sets the loop's future directly, which costs about
a third less CPU per call (a one-row call's cost is mostly such overhead; bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["HandlerPool"]

_STOP: Final = None


class HandlerPool:
    """``workers`` daemon threads; ``await pool.run(fn, *args)`` runs ``fn`` on one of them.

    Daemon threads: a handler still running when the process exits (past the grace period)
    does not hold the exit up.

    Examples
    --------
    >>> async def demo() -> int:
    ...     pool = HandlerPool(2)
    ...     try:
    ...         return await pool.run(sum, [1, 2, 3])
    ...     finally:
    ...         pool.close()
    >>> asyncio.run(demo())
    6
    """

    def __init__(self, workers: int, *, name: str = "chalk-handler") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Queue ``function(*args)``; the returned future resolves on the calling loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((function, args, future, loop))
        return future

    def close(self) -> None:
        """Let every thread finish its current job and end; does not wait for them."""
        for _ in self._threads:
            self._jobs.put(_STOP)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            function, args, future, loop = job
            try:
                result = function(*args)
            except BaseException as error:
                _resolve_soon(loop, future, None, error)
            else:
                _resolve_soon(loop, future, result, None)


def _resolve_soon(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # RuntimeError: the loop closed while the handler ran, so nobody waits for it any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
