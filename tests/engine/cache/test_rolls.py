"""The answer cache across a roll of a local group to a new model version: the old version's
replicas answer while the group names the new one, and their answers are never kept under it.
The catalog's replica rows are written as the local controller writes them."""

from __future__ import annotations

import os
import socket
import time

import pyarrow as pa

from chalk.catalog import Catalog
from chalk.catalog.records import Endpoint, Replica
from chalk.engine.calls import ModelCaller
from chalk.engine.recorder import CallRecorder, GroupCalls, recording
from chalk.engine.routes import ROUTE_TTL_S
from tests.engine.conftest import SHIM_HANDLERS, MakeCaller, StartRuntime

ROWS = "chalk_remote_call_rows_total"
INT_IN, INT_OUT = pa.schema({"x": pa.int64()}), pa.schema({"y": pa.int64()})


def call(caller: ModelCaller, values: list[int]) -> tuple[list[int | None], GroupCalls]:
    with recording(CallRecorder()) as recorder:
        answer = caller.call_blocking(
            feature="t.y",
            name="model.roll",
            args=[pa.array(values, pa.int64())],
            max_staleness_s=3600.0,
        )
    return answer.to_pylist(), recorder.groups()["roll"]


class LocalGroup:
    """Group ``roll`` of the local backend, its replicas reported as the controller does."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        catalog.state.heartbeat("local", pid=os.getpid(), host=socket.gethostname())
        for _ in range(2):  # model versions 1 and 2 of model ``roll``
            catalog.models.register("roll", input_schema=INT_IN, output_schema=INT_OUT, image="x")
        self.group = catalog.groups.create(
            "roll",
            {"image": "x", "port": 8080, "model": {"name": "roll", "version": 1}},
            backend="local",
        )

    def deploy(self, version: int) -> None:
        """A new revision naming model version ``version`` (its replicas not started yet)."""
        spec = {**self.group.spec, "model": {"name": "roll", "version": version}}
        self.group, _ = self.catalog.groups.update("roll", spec)

    def replica(self, name: str, revision: int, endpoint: str, *, ready: bool) -> None:
        state = "Running" if ready else "Starting"
        row = Replica(self.group.id, name, revision, state, ready, endpoint=endpoint)
        self.catalog.state.save_replica(row)

    def remove(self, name: str) -> None:
        self.catalog.state.remove_replica(self.group.id, name)

    def report(self, status: str, endpoints: list[str]) -> None:
        self.catalog.state.heartbeat("local", pid=os.getpid(), host=socket.gethostname())
        self.catalog.groups.report(
            self.group.id,
            status=status,
            desired=1,
            ready=len(endpoints),
            available=len(endpoints),
            endpoints=[Endpoint(target) for target in endpoints],
        )
        time.sleep(ROUTE_TTL_S)  # the caller reads the route again


def test_an_old_versions_answer_mid_roll_is_never_served_after_it(
    runtime: StartRuntime, catalog: Catalog, make_caller: MakeCaller
) -> None:
    old = runtime("model_handlers.identity", cwd=SHIM_HANDLERS)  # version 1: y = x
    new = runtime("model_handlers.double", cwd=SHIM_HANDLERS)  # version 2: y = 2x
    group = LocalGroup(catalog)
    group.replica("roll-1", 1, old.target, ready=True)
    group.report("Ready", [old.target])
    caller = make_caller()
    assert call(caller, [7])[0] == [7]

    # The roll to version 2: its replica starts while version 1's still answers.
    group.deploy(2)
    group.replica("roll-2", 2, new.target, ready=False)
    group.report("Progressing", [old.target])
    mid_roll, mid_calls = call(caller, [5])
    assert mid_roll == [5]  # answered by version 1, the route naming version 2
    assert catalog.resolve("model.roll").serving == (("roll", 1),)

    # Both versions ready: still nothing kept.
    group.replica("roll-2", 2, new.target, ready=True)
    group.report("Progressing", [old.target, new.target])
    assert catalog.resolve("model.roll").serving == (("roll", 1), ("roll", 2))
    assert call(caller, [6])[0] in ([6], [12])

    # The roll is done: version 2 answers alone, and its answers are kept from now on.
    group.remove("roll-1")
    group.report("Ready", [new.target])
    after, after_calls = call(caller, [5, 6])
    again, again_calls = call(caller, [5, 6])

    assert after == [10, 12]
    assert (after_calls.cache_hits, after_calls.cache_misses) == (0, 2)
    assert again == [10, 12]
    assert (again_calls.cache_hits, again_calls.calls) == (2, 0)
    assert mid_calls.cache_misses == 1
    # [7], [5], [6] mid-roll, and [5, 6] once after it.
    assert old.metric(ROWS) + new.metric(ROWS) == 3 + 2
