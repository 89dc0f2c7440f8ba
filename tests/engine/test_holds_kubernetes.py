"""On Kubernetes a group at zero keeps its endpoint, its headless Service's DNS name, which
resolves to no address while no pod is ready: a call to it is held as for a group with no
endpoint (DESIGN.md, "Scale to zero"), counting the Service's addresses again with each read,
and goes through once a pod is behind the name, on a fresh channel. A Service whose pods change
while they are up (scaled up, a pod replaced) is called on a fresh channel too: gRPC's resolver
alone would never send a call to the new pod.

A real DNS server on 127.0.0.1 stands in for the cluster's (named in the target's authority),
real runtimes on 127.0.0.x for the pods; the reader runs "in the cluster"
(``KUBERNETES_SERVICE_HOST``), so the catalog routes it to the Service.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, Endpoint
from chalk.catalog.records import REACH_CLUSTER, REACH_GATEWAY
from chalk.engine.calls import ModelCaller
from chalk.engine.errors import ModelCallError, ModelUnavailableError, TooManyHeldCallsError
from chalk.engine.recorder import CallRecorder
from chalk.shim.client import wait_until_serving
from tests.engine.conftest import SHIM_HANDLERS, MakeCaller
from tests.engine.test_holds import INT, ONE, double_group, wait_held
from tests.support.dns_service import ClusterDns, cluster_dns
from tests.support.runtime_process import RuntimeProcess, free_port, start_runtime

SERVICE = "double.ml.svc.cluster.local"
# ``pod(address)``, or ``pod(address, handler)``.
StartPod = Callable[..., RuntimeProcess]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterDns]:
    """The cluster's DNS, answering NXDOMAIN for the Service until a test gives it pods; this
    process reads the catalog as one inside the cluster."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with cluster_dns(SERVICE) as running:
        yield running


@pytest.fixture
def port() -> int:
    """The Service's port (every pod's)."""
    return free_port()


@pytest.fixture
def pod(tmp_path: Path, port: int) -> Iterator[StartPod]:
    """``pod("127.0.0.2")``: our runtime serving ``double`` (or ``handler``, which may answer
    its ``REPLICA_NAME``: the address) at that address and the Service's port, once it is
    SERVING; stopped afterwards."""
    started: list[RuntimeProcess] = []

    def _start(address: str, handler: str = "model_handlers.double") -> RuntimeProcess:
        process = start_runtime(
            handler,
            log_path=tmp_path / f"pod-{len(started)}.log",
            cwd=SHIM_HANDLERS,
            args=("--port", str(port)),
            env={"CHALK_REMOTE_CALL_HOST": address, "REPLICA_NAME": address},
        )
        started.append(process)
        asyncio.run(wait_until_serving(f"{address}:{port}", timeout_s=20))
        return process

    yield _start
    for process in started:
        process.stop(timeout=5)


def kube_group(catalog: Catalog, target: str, status: str = "Ready", reason: str = "") -> str:
    """Group ``double`` as the Kubernetes backend records it: its Service's DNS target (for
    readers in the cluster) and its gateway (for those outside); the status as the last
    command that observed the cluster left it."""
    group_id = double_group(catalog, "kubernetes")
    catalog.groups.report(
        group_id,
        status=status,
        reason=reason,
        desired=1,
        ready=1,
        available=1,
        endpoints=[
            Endpoint(target, reach=REACH_CLUSTER),
            Endpoint("dev-double.example.com:443", True, REACH_GATEWAY),
        ],
    )
    return group_id


def kube_group_at(
    catalog: Catalog, name: str, target: str, *, takes: pa.DataType, gives: pa.DataType
) -> None:
    """Kubernetes group ``name`` hosting model ``name`` (one column ``x`` of ``takes`` in,
    ``gives`` out), Ready, reached at ``target`` from inside the cluster."""
    version = catalog.models.register(
        name,
        input_schema=pa.schema([("x", takes)]),
        output_schema=pa.schema([("y", gives)]),
        image="x",
    )
    model = {"name": version.model_name, "version": version.model_version}
    group = catalog.groups.create(name, {"image": "x", "model": model}, backend="kubernetes")
    catalog.groups.report(
        group.id,
        status="Ready",
        desired=1,
        ready=1,
        available=1,
        endpoints=[Endpoint(target, reach=REACH_CLUSTER)],
    )


def _call(caller: ModelCaller, recorder: CallRecorder | None = None) -> pa.Array:
    return caller.call_blocking(feature="t.y", name="model.double", args=ONE, recorder=recorder)


def test_a_call_to_a_service_with_no_pod_is_held_until_one_is_behind_its_name(
    catalog: Catalog, dns: ClusterDns, port: int, pod: StartPod, make_caller: MakeCaller
) -> None:
    kube_group(catalog, dns.target(port))
    caller = make_caller()
    recorder = CallRecorder()
    answers: list[pa.Array] = []
    calling = threading.Thread(target=lambda: answers.append(_call(caller, recorder)))
    calling.start()
    wait_held(caller, 1)
    # Held calls count as waiting in the caller's demand; a Kubernetes group publishes no
    # demand rows (its demand travels as chalk serve's metrics).
    assert caller.demand()["double"] == (0, 1)

    pod("127.0.0.2")
    dns.pods = ["127.0.0.2"]
    calling.join(timeout=30)

    assert answers == [pa.array([2, 4], INT)]
    assert recorder.groups()["double"].retries == 0  # no call failed on the way
    # A second call right after goes through the same way, without waiting or failing.
    again = CallRecorder()
    assert _call(caller, again) == pa.array([2, 4], INT)
    assert (again.groups()["double"].calls, again.groups()["double"].retries) == (1, 0)
    assert caller.loads()["double"].held == 0
    assert catalog.demand.totals() == {}


def test_a_service_back_on_a_new_address_takes_the_call_after_the_hold(
    catalog: Catalog, dns: ClusterDns, port: int, pod: StartPod
) -> None:
    kube_group(catalog, dns.target(port))
    first = pod("127.0.0.2")
    dns.pods = ["127.0.0.2"]

    async def scenario() -> tuple[pa.Array, pa.Array, int]:
        caller = ModelCaller(catalog, backoff_s=0.01)
        try:
            before = await caller.call(feature="t.y", name="model.double", args=ONE)
            # Scaled to zero: the pod goes, and its name with it.
            await asyncio.to_thread(first.stop, 5)
            dns.pods = []
            held = asyncio.ensure_future(caller.call(feature="t.y", name="model.double", args=ONE))
            await asyncio.to_thread(wait_held, caller, 1)
            # Woken: a pod on another address.
            await asyncio.to_thread(pod, "127.0.0.3")
            dns.pods = ["127.0.0.3"]
            after = await held
            return before, after, caller.loads()["double"].held
        finally:
            await caller.aclose()

    before, after, held = asyncio.run(scenario())

    assert before == after == pa.array([2, 4], INT)
    assert held == 0


def test_a_call_held_past_the_bound_names_the_group_the_wait_and_the_service(
    catalog: Catalog, dns: ClusterDns, port: int, make_caller: MakeCaller
) -> None:
    # A stale stored status: the last command that observed the cluster saw it crash-loop.
    kube_group(catalog, dns.target(port), "CrashLoopBackOff", "pod double-1 exited with code 3")

    with pytest.raises(ModelUnavailableError) as caught:
        _call(make_caller(hold_timeout_s=0.5))

    message = str(caught.value)
    assert message.startswith("t.y: catalog_call('model.double'): no replica of 'double' became")
    assert (
        f"ready within 0.5 s (its Service {SERVICE} resolves to no pod: scaled to zero, or no "
        f"pod ready yet; its status when last observed: CrashLoopBackOff: pod double-1 exited "
        f"with code 3)"
    ) in message
    assert "`chalk scaling-group get --name double` shows its pods" in message
    # Held to the bound: the stored status did not fail it at once.
    assert caught.value.waited_s >= 0.5


def test_past_max_held_calls_a_call_to_a_service_with_no_pod_fails_at_once(
    catalog: Catalog, dns: ClusterDns, port: int, make_caller: MakeCaller
) -> None:
    kube_group(catalog, dns.target(port))
    caller = make_caller(max_held_calls=1, hold_timeout_s=3.0)
    errors: list[BaseException] = []

    def held_call() -> None:
        try:
            _call(caller)
        except ModelCallError as error:
            errors.append(error)

    calling = threading.Thread(target=held_call)
    calling.start()
    wait_held(caller, 1)
    with pytest.raises(TooManyHeldCallsError) as caught:
        _call(caller)
    calling.join(timeout=30)

    assert f"has no ready replica (its Service {SERVICE} resolves to no pod" in str(caught.value)
    assert "already holds 1 call waiting for one: expected at most 1 at once" in str(caught.value)
    assert [type(error) for error in errors] == [ModelUnavailableError]


def test_a_dns_server_that_does_not_answer_holds_nothing(
    catalog: Catalog, dns: ClusterDns, port: int, make_caller: MakeCaller
) -> None:
    kube_group(catalog, dns.target(port))
    dns.silent = True
    caller = make_caller(deadline_s=1.0, recovery_s=0.1)
    seen_held: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            load = caller.loads().get("double")
            seen_held.append(0 if load is None else load.held)
            time.sleep(0.02)

    watching = threading.Thread(target=watch)
    watching.start()
    try:
        with pytest.raises(ModelCallError) as caught:
            _call(caller)
    finally:
        done.set()
        watching.join()

    # A failed lookup is the transport's problem: the call fails as any unreachable one does.
    assert not isinstance(caught.value, ModelUnavailableError)
    # (gRPC's own lookup waits for the server to answer until the call's deadline.)
    assert str(caught.value).startswith(
        "t.y: catalog_call('model.double'): scaling group 'double' did not answer rows 0-1 "
        "within the deadline of 1s"
    )
    assert set(seen_held) <= {0}


def test_calls_held_for_a_service_share_each_lookup_of_its_name(
    catalog: Catalog, dns: ClusterDns, port: int, pod: StartPod
) -> None:
    kube_group(catalog, dns.target(port))
    calls = 50

    async def held_calls() -> tuple[list[pa.Array], int]:
        caller = ModelCaller(catalog)
        try:
            answers = [
                asyncio.ensure_future(caller.call(feature=f"t.y{i}", name="model.double", args=ONE))
                for i in range(calls)
            ]
            await asyncio.to_thread(wait_held, caller, calls)
            first = dns.questions
            await asyncio.sleep(1.0)  # about ten polls of every held call
            asked = dns.questions - first
            await asyncio.to_thread(pod, "127.0.0.2")
            dns.pods = ["127.0.0.2"]
            return list(await asyncio.gather(*answers)), asked
        finally:
            await caller.aclose()

    answers, asked = asyncio.run(held_calls())

    assert answers == [pa.array([2, 4], INT)] * calls
    # About ten lookups in the second (one question each: NXDOMAIN ends a lookup), where 50
    # calls looking alone would ask about 500.
    assert 1 <= asked <= 3 * 10


def test_pods_a_service_gains_or_swaps_while_up_take_calls_without_a_failure(
    catalog: Catalog, dns: ClusterDns, port: int, pod: StartPod
) -> None:
    # Each pod answers its own address: which pod took each call.
    kube_group_at(catalog, "whoami", dns.target(port), takes=INT, gives=pa.string())
    replica = "model_handlers.replica_name"
    pod("127.0.0.2", replica)
    dns.pods = ["127.0.0.2"]

    async def scenario() -> tuple[list[set[str]], CallRecorder]:
        caller = ModelCaller(catalog, backoff_s=0.01)
        recorder = CallRecorder()

        async def pods_answering(until: Callable[[set[str]], bool]) -> set[str]:
            """Calls one at a time until the pods that answered the last 10 calls satisfy
            ``until``."""
            answered: list[str] = []
            give_up = time.monotonic() + 30
            while len(answered) < 10 or not until(set(answered[-10:])):
                assert time.monotonic() < give_up, f"the pods that answered: {answered[-10:]}"
                answer = await caller.call(
                    feature="t.pod", name="model.whoami", args=ONE[:1], recorder=recorder
                )
                answered.extend(answer.to_pylist())
                await asyncio.sleep(0.02)
            return set(answered[-10:])

        try:
            seen = [await pods_answering(lambda pods: pods == {"127.0.0.2"})]
            # Scaled up: a second pod behind the name.
            await asyncio.to_thread(pod, "127.0.0.3", replica)
            dns.pods = ["127.0.0.2", "127.0.0.3"]
            seen.append(await pods_answering(lambda pods: len(pods) == 2))
            # The first pod replaced by another (it still serves, out of the Service, as a
            # terminating pod does for its grace period).
            await asyncio.to_thread(pod, "127.0.0.4", replica)
            dns.pods = ["127.0.0.3", "127.0.0.4"]
            seen.append(await pods_answering(lambda pods: "127.0.0.2" not in pods))
            return seen, recorder
        finally:
            await caller.aclose()

    seen, recorder = asyncio.run(scenario())

    assert seen == [{"127.0.0.2"}, {"127.0.0.2", "127.0.0.3"}, {"127.0.0.3", "127.0.0.4"}]
    assert recorder.groups()["whoami"].retries == 0
