"""Calls to a scaling group with no ready replica are held (DESIGN.md, "Scale to zero"): they
answer once a replica is ready, and fail naming the group, the wait and why past the time
bound, past the count bound, and at once for a crash-looping group. Real runtime processes
on 127.0.0.1; the test reports the group's status and endpoints as its backend would."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, Endpoint, Route
from chalk.catalog.errors import ControllerDownError
from chalk.catalog.records import Replica
from chalk.engine.calls import ModelCaller
from chalk.engine.errors import ModelCallError, ModelUnavailableError, TooManyHeldCallsError
from chalk.engine.recorder import CallRecorder, recording
from tests.engine.conftest import SHIM_HANDLERS, MakeCaller, StartRuntime
from tests.support.runtime_process import free_port

INT = pa.int64()
ONE = [pa.array([1, 2])]


def double_group(catalog: Catalog, backend: str) -> str:
    """Scaling group ``double`` hosting model ``double`` (int64 in, int64 out); its id."""
    version = catalog.models.register(
        "double",
        input_schema=pa.schema([("x", INT)]),
        output_schema=pa.schema([("y", INT)]),
        image="x",
    )
    model = {"name": version.model_name, "version": version.model_version}
    return catalog.groups.create("double", {"image": "x", "model": model}, backend=backend).id


def _group(catalog: Catalog, status: str, reason: str = "", *, backend: str = "kubernetes") -> str:
    """Scaling group ``double`` (model ``double``), reported with ``status`` and no endpoint."""
    group_id = double_group(catalog, backend)
    _report(catalog, group_id, status, reason)
    return group_id


def _report(
    catalog: Catalog, group_id: str, status: str, reason: str = "", targets: Sequence[str] = ()
) -> None:
    catalog.groups.report(
        group_id,
        status=status,
        reason=reason,
        desired=1,
        ready=len(targets),
        available=len(targets),
        endpoints=[Endpoint(target) for target in targets],
    )


def wait_held(caller: ModelCaller, count: int, timeout_s: float = 20.0) -> None:
    """Wait until ``caller`` holds ``count`` calls of ``double``."""
    give_up = time.monotonic() + timeout_s
    while caller.loads().get("double") is None or caller.loads()["double"].held < count:
        assert time.monotonic() < give_up, f"never held {count} calls: {caller.loads()}"
        time.sleep(0.01)


def test_a_call_held_while_the_only_replica_starts_is_answered(
    catalog: Catalog, runtime: StartRuntime, make_caller: MakeCaller
) -> None:
    group_id = _group(catalog, "Progressing", "0 of 1 replicas ready")
    caller = make_caller()
    recorder = CallRecorder()
    answers: list[pa.Array] = []
    calling = threading.Thread(
        target=lambda: answers.append(
            caller.call_blocking(feature="t.y", name="model.double", args=ONE, recorder=recorder)
        )
    )
    calling.start()
    wait_held(caller, 1)
    # Held calls count as waiting in the caller's demand, and show on the query's recorder.
    assert caller.demand()["double"] == (0, 1)
    assert recorder.still_held() == {"double": "status Progressing: 0 of 1 replicas ready"}

    port = free_port()
    runtime("model_handlers.double", cwd=SHIM_HANDLERS, args=("--port", str(port)))
    _report(catalog, group_id, "Ready", targets=[f"127.0.0.1:{port}"])
    calling.join(timeout=20)

    assert answers == [pa.array([2, 4], INT)]
    assert caller.loads()["double"].held == 0
    assert caller.loads()["double"].last_call_at is not None
    assert recorder.still_held() == {}  # released: nothing for a timed-out query to name


def test_a_call_held_past_the_hold_timeout_fails_naming_group_wait_and_reason(
    catalog: Catalog, make_caller: MakeCaller
) -> None:
    _group(catalog, "Progressing", "0 of 1 replicas ready")
    recorder = CallRecorder()

    # The recorder as a query thread sets it (chalk serve's thread path): picked up by the call.
    with recording(recorder), pytest.raises(ModelUnavailableError) as caught:
        make_caller(hold_timeout_s=0.3).call_blocking(feature="t.y", name="model.double", args=ONE)

    message = str(caught.value)
    assert message.startswith("t.y: catalog_call('model.double'): no replica of 'double' became")
    assert "ready within 0.3 s (1 starting; status Progressing: 0 of 1 replicas ready)" in message
    assert "hold_timeout_s on ChalkClient, --hold-timeout on chalk serve" in message
    assert (caught.value.group, caught.value.status) == ("double", "Progressing")
    assert caught.value.waited_s >= 0.3
    # Never released: the query's recorder still names the group and why.
    assert recorder.still_held() == {"double": "status Progressing: 0 of 1 replicas ready"}


def test_the_calls_deadline_bounds_the_hold_when_it_is_shorter(
    catalog: Catalog, make_caller: MakeCaller
) -> None:
    _group(catalog, "Idle")

    with pytest.raises(
        ModelUnavailableError, match=r"became ready within 0\.2 s \(1 starting; status Idle\)"
    ):
        make_caller(deadline_s=0.2).call_blocking(feature="t.y", name="model.double", args=ONE)


def test_a_group_waiting_for_capacity_fails_with_the_pending_reason(
    catalog: Catalog, make_caller: MakeCaller
) -> None:
    _group(catalog, "Pending", "no GPU free: 1 wanted, 0 of 0 free")

    with pytest.raises(
        ModelUnavailableError,
        match=r"no replica of 'double' became ready within 0\.2 s \(it waits for capacity: "
        r"no GPU free: 1 wanted, 0 of 0 free\)",
    ):
        make_caller(hold_timeout_s=0.2).call_blocking(feature="t.y", name="model.double", args=ONE)


def test_a_crash_looping_group_fails_at_once_with_the_exit_reason(
    catalog: Catalog, make_caller: MakeCaller
) -> None:
    reason = "replica 1 exited with code 3: ValueError: no weights (2 restarts)"
    _group(catalog, "CrashLoopBackOff", reason)

    with pytest.raises(ModelUnavailableError) as caught:
        make_caller().call_blocking(feature="t.y", name="model.double", args=ONE)

    message = str(caught.value)
    assert "scaling group 'double' has no ready replica and is crash-looping" in message
    assert f"(status CrashLoopBackOff: {reason})" in message
    assert "without waiting" in message
    # Not held for the 60 s hold timeout.
    assert caught.value.waited_s < 5


def test_a_held_call_fails_as_soon_as_its_group_starts_crash_looping(
    catalog: Catalog, make_caller: MakeCaller
) -> None:
    group_id = _group(catalog, "Progressing", "0 of 1 replicas ready")
    caller = make_caller()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            caller.call_blocking(feature="t.y", name="model.double", args=ONE)
        except ModelCallError as error:
            errors.append(error)

    calling = threading.Thread(target=call)
    calling.start()
    wait_held(caller, 1)
    _report(catalog, group_id, "CrashLoopBackOff", "replica 1 exited with code 1 (1 restarts)")
    calling.join(timeout=20)

    assert len(errors) == 1
    assert "is crash-looping (status CrashLoopBackOff: replica 1 exited with code 1" in str(
        errors[0]
    )


def test_past_max_held_calls_the_next_call_fails_at_once_naming_the_setting(
    catalog: Catalog, runtime: StartRuntime, make_caller: MakeCaller
) -> None:
    group_id = _group(catalog, "Idle")
    caller = make_caller(max_held_calls=2)
    port = free_port()

    async def three_calls() -> list[object]:
        held = [
            asyncio.ensure_future(caller.call(feature=f"t.y{i}", name="model.double", args=ONE))
            for i in range(2)
        ]
        await asyncio.to_thread(wait_held, caller, 2)
        with pytest.raises(TooManyHeldCallsError) as caught:
            await caller.call(feature="t.y3", name="model.double", args=ONE)
        # The two held calls go on once a replica is ready.
        await asyncio.to_thread(
            runtime, "model_handlers.double", cwd=SHIM_HANDLERS, args=("--port", str(port))
        )
        await asyncio.to_thread(_report, catalog, group_id, "Ready", "", [f"127.0.0.1:{port}"])
        return [str(caught.value), *await asyncio.gather(*held)]

    message, *answers = asyncio.run(three_calls())

    assert isinstance(message, str)
    assert message.startswith("t.y3: catalog_call('model.double'): scaling group 'double' has")
    assert "no ready replica (status Idle), and this process already holds 2 calls" in message
    assert "max_held_calls on ChalkClient, --max-held-calls on chalk serve" in message
    assert answers == [pa.array([2, 4], INT)] * 2


def test_a_local_group_without_a_controller_stays_an_error(
    catalog: Catalog, make_caller: MakeCaller
) -> None:
    _group(catalog, "Idle", backend="local")

    with pytest.raises(ControllerDownError, match=r"^t\.y: .*local controller is not running"):
        make_caller().call_blocking(feature="t.y", name="model.double", args=ONE)


class _CountingResolver:
    """The catalog, counting its route reads."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.reads = 0
        self._lock = threading.Lock()

    def resolve(self, name: str) -> Route:
        with self._lock:
            self.reads += 1
        return self.catalog.resolve(name)

    def replica_at(self, group: str, endpoint: str) -> Replica | None:
        return self.catalog.replica_at(group, endpoint)


def test_calls_held_for_one_group_share_each_read_of_its_route(
    catalog: Catalog, runtime: StartRuntime
) -> None:
    group_id = _group(catalog, "Progressing", "0 of 1 replicas ready")
    resolver = _CountingResolver(catalog)
    calls = 50
    port = free_port()

    async def held_calls() -> tuple[list[pa.Array], int, int]:
        caller = ModelCaller(resolver)
        try:
            answers = [
                asyncio.ensure_future(caller.call(feature=f"t.y{i}", name="model.double", args=ONE))
                for i in range(calls)
            ]
            await asyncio.to_thread(wait_held, caller, calls)
            first = resolver.reads
            await asyncio.sleep(1.0)  # about ten polls of every held call
            polled = resolver.reads - first
            await asyncio.to_thread(
                runtime, "model_handlers.double", cwd=SHIM_HANDLERS, args=("--port", str(port))
            )
            await asyncio.to_thread(_report, catalog, group_id, "Ready", "", [f"127.0.0.1:{port}"])
            return list(await asyncio.gather(*answers)), polled, first
        finally:
            await caller.aclose()

    answers, polled, first = asyncio.run(held_calls())

    assert answers == [pa.array([2, 4], INT)] * calls
    # Each call's first read is its own (the route cache's); the polls are shared: about ten
    # in the second, where 50 calls polling alone would make about 500.
    assert first <= calls
    assert 1 <= polled <= 3 * 10


class _LastReplicaGoes:
    """The catalog, where the group's last endpoint goes away right after the first read:
    a call resolved it just before the replica was removed (scale to zero)."""

    def __init__(self, catalog: Catalog, group_id: str) -> None:
        self.catalog = catalog
        self.group_id = group_id
        self.reads = 0

    def resolve(self, name: str) -> Route:
        route = self.catalog.resolve(name)
        self.reads += 1
        if self.reads == 1:
            _report(self.catalog, self.group_id, "Idle")
        return route

    def replica_at(self, group: str, endpoint: str) -> Replica | None:
        return self.catalog.replica_at(group, endpoint)


def test_a_call_whose_last_replica_goes_mid_call_is_held_past_the_recovery_window(
    catalog: Catalog, runtime: StartRuntime
) -> None:
    group_id = _group(catalog, "Ready")
    _report(catalog, group_id, "Ready", targets=[f"127.0.0.1:{free_port()}"])  # refuses
    port = free_port()

    async def call() -> pa.Array:
        caller = ModelCaller(_LastReplicaGoes(catalog, group_id), backoff_s=0.01, recovery_s=0.2)
        try:
            answer = asyncio.ensure_future(
                caller.call(feature="t.y", name="model.double", args=ONE)
            )
            await asyncio.to_thread(wait_held, caller, 1)
            await asyncio.sleep(1.0)  # five recovery windows: the call is still held
            assert not answer.done()
            await asyncio.to_thread(
                runtime, "model_handlers.double", cwd=SHIM_HANDLERS, args=("--port", str(port))
            )
            await asyncio.to_thread(_report, catalog, group_id, "Ready", "", [f"127.0.0.1:{port}"])
            return await answer
        finally:
            await caller.aclose()

    assert asyncio.run(call()) == pa.array([2, 4], INT)


def test_a_chunk_held_after_its_replica_went_fails_with_the_hold_bound(
    catalog: Catalog,
) -> None:
    group_id = _group(catalog, "Ready")
    _report(catalog, group_id, "Ready", targets=[f"127.0.0.1:{free_port()}"])
    caller = ModelCaller(
        _LastReplicaGoes(catalog, group_id), backoff_s=0.01, recovery_s=0.1, hold_timeout_s=0.5
    )
    try:
        with pytest.raises(ModelUnavailableError, match=r"became ready within 0\.5 s"):
            caller.call_blocking(feature="t.y", name="model.double", args=ONE)
    finally:
        caller.close()
