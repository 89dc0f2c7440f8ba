"""The executor's model calls as requests it yields, and the two drivers that answer them:
``answer_blocking`` (a caller's ``call_blocking``, from any thread) and ``answer_awaiting``
(its ``call``, awaited on the running loop, so a query needs no thread of its own)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

import pyarrow as pa

from chalk.engine.calls import ModelCaller

__all__ = ["Answer", "ModelRequest", "Steps", "answer_awaiting", "answer_blocking"]

Answer: TypeAlias = pa.Array | pa.ChunkedArray
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One ``catalog_call`` the executor needs answered: ``ModelCaller.call``'s arguments."""

    feature: str
    name: str
    args: Sequence[pa.Array | pa.ChunkedArray]
    # True: the answer may stay a ChunkedArray of the chunks' answers (no copy into one).
    as_chunks: bool
    # The feature's max_staleness in seconds; None: the answers are not cached (none set, or
    # the query said use_cache=False).
    max_staleness_s: float | None = None


# Work that yields a ModelRequest for each model call, is sent its answer, and returns a T.
Steps: TypeAlias = Generator[ModelRequest, Answer, T]


def answer_blocking(steps: Steps[T], caller: ModelCaller | None) -> T:
    """Run ``steps`` to the end, each model call through ``caller.call_blocking``."""
    try:
        request = next(steps)
        while True:
            assert caller is not None, "steps ask for a model call only when given a caller"
            request = steps.send(_blocking(caller, request))
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        steps.close()


async def answer_awaiting(steps: Steps[T], caller: ModelCaller | None) -> T:
    """Run ``steps`` to the end on the running loop, each model call awaited on ``caller``
    (which must belong to this loop); the work between calls runs on the loop too."""
    try:
        request = next(steps)
        while True:
            assert caller is not None, "steps ask for a model call only when given a caller"
            request = steps.send(await _awaited(caller, request))
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        steps.close()


def _blocking(caller: ModelCaller, request: ModelRequest) -> Answer:
    args = list(request.args)
    feature, name, staleness = request.feature, request.name, request.max_staleness_s
    if request.as_chunks:
        return caller.call_blocking(
            feature=feature, name=name, args=args, as_chunks=True, max_staleness_s=staleness
        )
    return caller.call_blocking(feature=feature, name=name, args=args, max_staleness_s=staleness)


async def _awaited(caller: ModelCaller, request: ModelRequest) -> Answer:
    args = list(request.args)
    feature, name, staleness = request.feature, request.name, request.max_staleness_s
    if request.as_chunks:
        return await caller.call(
            feature=feature, name=name, args=args, as_chunks=True, max_staleness_s=staleness
        )
    return await caller.call(feature=feature, name=name, args=args, max_staleness_s=staleness)
