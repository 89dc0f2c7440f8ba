"""How the client reaches a group on Kubernetes, with real runtimes on loopback addresses: a
``dns:///`` target (the headless Service) spreads calls over every address it resolves to
(round robin), and a ``tls`` endpoint (the gateway) is called over TLS.

The cluster's DNS is stood in for by a small DNS server on 127.0.0.1 (dnslib), named in the
target's authority (``dns://127.0.0.1:<port>/<name>:<port>``); the gateway by a TLS-terminating
proxy (``tls_gateway.py``). A channel whose name resolved to nothing is dropped, and the next
call's new channel resolves it afresh.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from chalk.shim import RemoteCallClient
from chalk.shim.client import wait_until_serving
from chalk.shim.errors import TransportError
from tests.support.dns_service import cluster_dns
from tests.support.runtime_process import RuntimeProcess, free_port

StartRuntime = Callable[..., RuntimeProcess]
SERVICE = "ner.ml.svc.cluster.local"
POD_ADDRESSES = ("127.0.0.1", "127.0.0.2")
GATEWAY = Path(__file__).with_name("tls_gateway.py")


class _HeadlessService(BaseResolver):
    """Answers ``SERVICE`` with one A record per pod, as a headless Service's DNS does."""

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        question = request.q
        if str(question.qname).rstrip(".") == SERVICE and question.qtype == QTYPE.A:
            for address in POD_ADDRESSES:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=30))
        return reply


@pytest.fixture
def dns_port() -> Iterator[int]:
    server = DNSServer(
        _HeadlessService(), port=0, address="127.0.0.1", logger=DNSLogger(logf=lambda _: None)
    )
    server.start_thread()
    yield int(server.server.server_address[1])
    server.stop()


def _answers(target: str, calls: int) -> list[str]:
    async def _run() -> list[str]:
        async with RemoteCallClient() as client:
            answers = []
            for _ in range(calls):
                result = await client.call(target, {"x": [1]}, name="ner", deadline_s=10)
                answers.append(str(result[0].as_py()))
            return answers

    return asyncio.run(_run())


def _pod(start: StartRuntime, address: str, port: int, name: str) -> RuntimeProcess:
    runtime = start(
        "model_handlers.replica_name",
        args=["--port", str(port)],
        env={"CHALK_REMOTE_CALL_HOST": address, "REPLICA_NAME": name},
    )
    asyncio.run(wait_until_serving(f"{address}:{port}", timeout_s=20))
    return runtime


def test_a_dns_target_reaches_a_runtime_by_name(start: StartRuntime) -> None:
    port = free_port()
    _pod(start, "127.0.0.1", port, "only")
    # "localhost" resolves to 127.0.0.1 alone on this machine (no ::1 in /etc/hosts).
    assert _answers(f"dns:///localhost:{port}", 3) == ["only"] * 3


def test_a_dns_target_spreads_calls_over_every_address(start: StartRuntime, dns_port: int) -> None:
    port = free_port()
    for index, address in enumerate(POD_ADDRESSES):
        _pod(start, address, port, f"pod-{index}")
    answers = _answers(f"dns://127.0.0.1:{dns_port}/{SERVICE}:{port}", 40)
    # Round robin takes the ready pods in turn (the first calls may find only one connected
    # yet); pick_first, gRPC's default, would keep to one pod throughout.
    assert sorted(set(answers)) == ["pod-0", "pod-1"]
    assert all(a != b for a, b in itertools.pairwise(answers[-10:]))


def test_a_tls_endpoint_is_called_over_tls(start: StartRuntime, tmp_path: Path) -> None:
    cert, key = tmp_path / "gateway.crt", tmp_path / "gateway.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    _pod(start, "127.0.0.1", port, "behind-the-gateway")
    env = {**os.environ, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)}
    result = subprocess.run(
        [sys.executable, str(GATEWAY), str(cert), str(key), str(port)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tls"] == ["behind-the-gateway"] * 2
    # The same endpoint spoken to in plaintext fails: the client did the TLS handshake.
    assert report["plaintext"] == "TransportError"


def test_a_dropped_channel_resolves_a_name_that_resolved_to_nothing_afresh(
    start: StartRuntime,
) -> None:
    port = free_port()
    with cluster_dns(SERVICE) as dns:
        target = dns.target(port)

        async def calls() -> tuple[str, str, str, bool, bool]:
            async with RemoteCallClient() as client:
                # The Service has no pod: gRPC's resolver finds nothing, then backs off.
                with pytest.raises(TransportError) as nothing:
                    await client.call(target, {"x": [1]}, name="ner", deadline_s=10)
                await asyncio.to_thread(_pod, start, "127.0.0.2", port, "woken")
                dns.pods = ["127.0.0.2"]
                # The same channel still waits out its back-off ...
                with pytest.raises(TransportError) as stuck:
                    await client.call(target, {"x": [1]}, name="ner", deadline_s=10)
                # ... a new one looks the name up again.
                dropped = client.drop(target, opened_before=time.monotonic())
                answer = await client.call(target, {"x": [1]}, name="ner", deadline_s=10)
                again = client.drop(target, opened_before=0.0)  # the new one is younger
                return nothing.value.details, stuck.value.details, str(answer[0]), dropped, again

        nothing, stuck, answer, dropped, again = asyncio.run(calls())

    assert "Domain name not found" in nothing
    assert stuck == nothing
    assert (answer, dropped, again) == ("woken", True, False)


def test_a_call_in_flight_on_a_dropped_channel_still_finishes(start: StartRuntime) -> None:
    runtime = start("model_handlers.slow", args=("--metrics-port", "0"), env={"SLOW_SECONDS": "1"})

    async def calls() -> tuple[list[int], list[int], grpc.ChannelConnectivity, bool]:
        async with RemoteCallClient() as client:
            in_flight = asyncio.ensure_future(
                client.call(runtime.target, {"x": [1]}, name="slow", deadline_s=20)
            )
            await asyncio.to_thread(runtime.wait_in_flight, 1)
            dropped = client._channels[(runtime.target, False)].channel
            assert client.drop(runtime.target)
            after = await client.call(runtime.target, {"x": [2]}, name="slow", deadline_s=20)
            first = (await in_flight).to_pylist()
            # Closed once its call ended, not left open until the client closes (a leak).
            await asyncio.gather(*client._closing)
            return first, after.to_pylist(), dropped.get_state(), bool(client._dropped)

    assert asyncio.run(calls()) == ([1], [2], grpc.ChannelConnectivity.SHUTDOWN, False)
