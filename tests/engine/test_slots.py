"""The per-process in-flight slots: a ``dns:///`` endpoint gets 4 per address it resolves to
(DESIGN.md, "Batching"), counted in the background, and a replica on it answers through them."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from chalk.catalog.records import Endpoint, Route
from chalk.engine.addresses import AddressCounts, DnsName
from chalk.engine.batching import EndpointSlots, GroupQueue, Sent
from chalk.engine.chunking import ChunkLimits
from chalk.engine.model_call import Chunk, ModelCall
from chalk.engine.recorder import CallRecorder
from tests.engine.call_handlers import BLOCK
from tests.engine.conftest import Deploy, MakeCaller, StartRuntime
from tests.engine.test_batching import INT, NO_DELAY_EXIT, SCHEMAS, call_in_thread, wait_for

SCHEMA = pa.schema([("x", pa.int64())])
SERVICE = Endpoint("dns:///ner.ml.svc.cluster.local:6666")


def test_a_dns_endpoint_gets_four_slots_per_address_once_they_are_counted() -> None:
    async def scenario() -> tuple[tuple[int, int], tuple[int, int], list[int]]:
        counted = asyncio.Event()
        release = asyncio.Event()
        asked: list[tuple[str, int]] = []

        async def three_addresses(name: DnsName) -> frozenset[str]:
            asked.append((name.host, name.port))
            await counted.wait()
            return frozenset({"10.0.0.1", "10.0.0.2", "10.0.0.3"})

        async def send(endpoint: Endpoint, batch: pa.RecordBatch, call: ModelCall) -> pa.Array:
            await release.wait()
            return batch.column(0)

        slots = EndpointSlots(4, addresses=AddressCounts(three_addresses))
        queue = GroupQueue("ner", slots, send, ChunkLimits(), max_delay_s=60.0)
        queue.set_endpoints((SERVICE,))
        recounted = asyncio.Event()

        def changed() -> None:
            queue.pump()
            recounted.set()

        slots.watch(queue.endpoints, changed)
        # Not deterministic: every chunk is its own model call, none merged.
        route = Route("ner", "ner", 1, SCHEMA, SCHEMA, None, (SERVICE,), deterministic=False)
        futures: list[asyncio.Future[Sent]] = []
        for value in range(13):
            call = ModelCall("doc.y", "model.ner", route)
            batch = pa.record_batch({"x": pa.array([value], INT)})
            futures.append(
                queue.submit(call, Chunk(0, 0, batch), exclude=frozenset(), deadline_s=60.0)
            )
        before_count = queue.demand
        counted.set()
        await recounted.wait()
        after_count = queue.demand
        assert asked == [("ner.ml.svc.cluster.local", 6666)]
        release.set()
        answers = [(await future).answer for future in futures]
        return before_count, after_count, [a[0].as_py() for a in answers if a is not None]

    before, after, values = asyncio.run(scenario())

    assert before == (4, 9)  # one address until the count answers
    assert after == (12, 1)
    assert values == list(range(13))


def test_a_replica_behind_a_dns_target_takes_its_slots_per_address(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("call_handlers.picky", env={"BLOCK_SECONDS": "1.5"})
    port = int(model.target.rpartition(":")[2])
    deploy("picky", [f"dns:///localhost:{port}"], **SCHEMAS)
    addresses = len(
        {info[4][0] for info in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}
    )
    caller = make_caller(max_in_flight_per_endpoint=2, batch_max_delay_s=NO_DELAY_EXIT)
    # The first call reads the route, and with it the count of localhost's addresses starts.
    assert caller.call_blocking(
        feature="t.y", name="model.picky", args=[pa.array([1], INT)]
    ).to_pylist() == [1]
    slots = 2 * addresses
    with ThreadPoolExecutor(slots + 1) as pool:
        blockers = [call_in_thread(pool, caller, [BLOCK], CallRecorder()) for _ in range(slots)]
        wait_for(lambda: caller.demand().get("picky") == (slots, 0), "the slots fill")
        queued = call_in_thread(pool, caller, [7], CallRecorder())
        wait_for(lambda: caller.demand().get("picky") == (slots, 1), "a call queues")
        assert [b.result(timeout=30).to_pylist() for b in blockers] == [[BLOCK]] * slots
        assert queued.result(timeout=30).to_pylist() == [7]
