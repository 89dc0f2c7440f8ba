"""Local replicas stay on loopback: our runtime's ``--host`` is replaced by 127.0.0.1, and a
replica listening on a wildcard address gets a Warning event naming it and the address."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import psutil
import pytest

from chalk.catalog import Catalog
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.config import Project
from chalk.deploy.groups import pin_image
from chalk.deploy.local.launching import substitute_host
from chalk.deploy.local.listeners import wildcard_listeners
from tests.deploy.local.conftest import MODEL_HANDLER, RunningController, save_image, wait_for

# The runtime runs on_startup before it reports SERVING, so the extra socket is open by the
# time the controller finds the replica ready.
WILDCARD_MODEL = (
    MODEL_HANDLER
    + """
import socket

_HELD = []

def on_startup():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    _HELD.append(listener)
"""
)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["chalk-remote-call", "--host", "0.0.0.0"], ["chalk-remote-call", "--host", "127.0.0.1"]),
        (["chalk-remote-call", "--host=[::]"], ["chalk-remote-call", "--host=127.0.0.1"]),
        (["/v/chalk-remote-call", "--host", "::"], ["/v/chalk-remote-call", "--host", "127.0.0.1"]),
        (["chalk-remote-call", "--host"], ["chalk-remote-call", "--host"]),
        (["uvicorn", "--host", "0.0.0.0"], ["uvicorn", "--host", "0.0.0.0"]),
        ([], []),
    ],
    ids=["space", "equals", "full_path", "no_value", "other_server", "empty"],
)  # fmt: skip
def test_substitute_host(argv: list[str], expected: list[str]) -> None:
    assert substitute_host(argv) == expected


@pytest.fixture
def listener() -> Iterator[Callable[[str], int]]:
    opened: list[socket.socket] = []

    def listen(host: str) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, 0))
        sock.listen()
        opened.append(sock)
        return int(sock.getsockname()[1])

    yield listen
    for sock in opened:
        sock.close()


def test_wildcard_listeners_finds_only_wildcard_sockets(listener: Callable[[str], int]) -> None:
    listener("127.0.0.1")
    port = listener("0.0.0.0")

    assert f"0.0.0.0:{port}" in wildcard_listeners(psutil.Process().pid)
    assert all(
        not address.startswith("127.") for address in wildcard_listeners(psutil.Process().pid)
    )


def test_wildcard_listeners_of_a_gone_process_is_empty() -> None:
    assert wildcard_listeners(2**22 + 12345) == []


def test_a_replica_on_a_wildcard_address_gets_a_warning_and_ours_stays_on_loopback(
    catalog: Catalog, project: Project, controller: Callable[..., RunningController]
) -> None:
    save_image(
        catalog,
        project,
        "wild:latest",
        files={"/app/model.py": WILDCARD_MODEL},
        entrypoint=("chalk-remote-call", "--handler", "model.handler", "--port", "8080",
                    "--host", "0.0.0.0"),
        exposed_port=8080,
    )  # fmt: skip
    spec = GroupSpec(
        image="wild:latest",
        model=ModelRef("m", 1),
        scaling=AutoScalingSpec(min_replicas=1, max_replicas=1, shutdown_delay_seconds=1),
    )
    group_id = catalog.groups.create(
        "wild", pin_image(catalog, spec, port_given=False).to_dict(), backend="local"
    ).id
    controller()

    [warning] = wait_for(
        lambda: [e for e in catalog.state.events(group_id) if e.reason == "WildcardListener"],
        what="a WildcardListener event",
    )
    [replica] = catalog.state.replicas(group_id)

    assert warning.type == "Warning"
    assert warning.message.startswith(f"replica {replica.replica_id} listens on 0.0.0.0:")
    assert f":{replica.port}," not in warning.message  # the runtime's own port is on loopback
    assert replica.pid is not None
    own = [
        c.laddr.ip.removeprefix("::ffff:")  # an IPv6 socket may hold the IPv4 address
        for c in psutil.Process(replica.pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == replica.port
    ]
    assert own == ["127.0.0.1"]
