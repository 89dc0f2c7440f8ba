"""A ``dns:`` target whose name resolved to nothing has its channel dropped for the retry, but
never a channel opened after the failed attempt was sent (another retry's, which may resolve)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pyarrow as pa

from chalk.catalog import Endpoint
from chalk.catalog.records import Replica, Route
from chalk.engine.batching import Sent
from chalk.engine.chunking import ChunkLimits
from chalk.engine.dispatch import Dispatcher
from chalk.engine.model_call import Chunk, ModelCall
from chalk.engine.routes import RouteCache
from chalk.shim import RemoteCallClient
from chalk.shim.errors import TransportError

TARGET = "dns:///ner.ml.svc.cluster.local:8080"
ROUTE = Route("ner", "ner", 1, pa.schema([]), pa.schema([]), 8080, (Endpoint(TARGET),))


class _Catalog:
    def resolve(self, name: str) -> Route:
        return ROUTE

    def replica_at(self, group: str, endpoint: str) -> Replica | None:
        return None


class _Client:
    """Records each drop, with the channel it would spare."""

    def __init__(self) -> None:
        self.drops: list[float | None] = []

    def drop(self, target: str, *, tls: bool = False, opened_before: float | None = None) -> bool:
        self.drops.append(opened_before)
        return True


async def _hold(*args: Any) -> tuple[Route, float]:
    raise AssertionError("nothing is held here")


def test_an_unresolved_attempt_drops_only_a_channel_opened_before_it_was_sent() -> None:
    client = _Client()
    dispatcher = Dispatcher(
        cast(RemoteCallClient, client),
        RouteCache(_Catalog()),
        limits=ChunkLimits(),
        max_in_flight_per_endpoint=4,
        max_attempts=10,
        backoff_s=0.01,
        max_backoff_s=0.01,
        deadline_s=None,
        recovery_s=60.0,
        hold=_hold,
    )
    call = ModelCall("t.y", "model.ner", ROUTE)
    chunk = Chunk(0, 0, pa.record_batch({"x": [1]}))
    sent_at = time.monotonic()
    error = TransportError(
        endpoint=TARGET, code="UNAVAILABLE", details="DNS resolution failed for ner: no address"
    )
    sent = Sent(Endpoint(TARGET), None, error, 1, sent_at=sent_at)

    asyncio.run(dispatcher._after_failure(call, chunk, sent, 10, set()))

    assert client.drops == [sent_at]
