"""Offline queries over HTTP (``POST /v1/query/offline``, Arrow IPC blocks): the same tables as
in process for every type and nulls and a million rows, every row once when a model replica is
killed mid-query, and the server's JSON errors for bad blocks."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from chalk.client import ChalkClient
from chalk.client_http import ApiServerClient, FeatureMismatchError
from chalk.engine.errors import ModelCallError
from chalk.engine.query import QueryError
from chalk.features import graph_of
from chalk.features.wire import ARROW_STREAM, FINGERPRINTS_HEADER, MODEL_CALLS_HEADER
from tests.deploy.local.conftest import alive, wait_for
from tests.server.conftest import (
    OUTPUTS,
    Reading,
    Server,
    reading_with_loud_redefined,
    replica_pids,
    start_server,
)

MILLION = 1_000_000


@pytest.fixture(scope="module")
def clients(project: Path, server: Server) -> Iterator[tuple[ChalkClient, ChalkClient]]:
    """An in-process client and one of the server, on the same project."""
    local = ChalkClient(project_dir=project)
    remote = ChalkClient(project_dir=project, api_server=server.url)
    yield local, remote
    local.close()
    remote.close()


def every_type(rows: int) -> pa.Table:
    """``rows`` rows of every input type, each column null in some rows (but the key's)."""
    at = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    values: dict[str, list[object]] = {
        "reading.id": list(range(rows)),
        "reading.x": [i * 0.5 for i in range(rows)],
        "reading.name": [f"name {i}" for i in range(rows)],
        "reading.flag": [i % 2 == 0 for i in range(rows)],
        "reading.blob": [bytes([i % 256, 255]) for i in range(rows)],
        "reading.at": [at + dt.timedelta(seconds=i) for i in range(rows)],
        "reading.on": [dt.date(2024, 2, 29) + dt.timedelta(days=i) for i in range(rows)],
        "reading.tags": [[f"t{i}", None] if i % 3 else [] for i in range(rows)],
        "reading.maybe": [i if i % 2 else None for i in range(rows)],
    }
    for offset, column in enumerate(list(values)[1:]):
        for row in range(offset % 3, rows, 4):
            values[column][row] = None
    graph = graph_of([Reading])
    return pa.table({fqn: pa.array(v, graph.feature(fqn).arrow_type) for fqn, v in values.items()})


def test_every_type_and_null_come_back_as_in_process(
    clients: tuple[ChalkClient, ChalkClient],
) -> None:
    local, remote = clients
    table = every_type(40)

    expected = local.offline_query(table, OUTPUTS, show_progress=False)
    found = remote.offline_query(table, OUTPUTS, show_progress=False)

    assert found.to_arrow().equals(expected.to_arrow())
    assert found.to_arrow().column_names == ["reading.id", *OUTPUTS]
    # Every figure crosses the wire: rows asked, and rows sent once repeats were merged.
    remote_calls, local_calls = found.model_calls["double"], expected.model_calls["double"]
    assert remote_calls.rows_asked == local_calls.rows_asked == 40
    assert remote_calls.rows_sent == local_calls.rows_sent
    assert remote_calls.dedup_hits == local_calls.dedup_hits


def test_a_million_rows_in_pipelined_blocks_come_back_in_order(
    clients: tuple[ChalkClient, ChalkClient], server: Server
) -> None:
    local, _ = clients
    ids = pa.array(range(MILLION), pa.int64())
    table = pa.table({"reading.id": ids, "reading.x": pc.multiply(ids, 0.25)})
    outputs = ["reading.doubled"]
    # Blocks of about 2 MiB: nine of them, eight in flight at once.
    remote = ApiServerClient(server.url, block_bytes=2 << 20)

    expected = local.offline_query(table, outputs, show_progress=False).to_arrow()
    found = pa.concat_tables(list(remote.offline_blocks(graph_of([Reading]), [table], outputs)))
    remote.close()

    assert found.equals(expected)
    assert found.num_rows == MILLION


def test_a_model_replica_killed_mid_query_loses_and_repeats_no_row(
    project: Path, server: Server
) -> None:
    """One row (x = 777) makes the model write a marker and sleep: the replica holding that
    chunk is killed then, and the engine sends the chunk again to the other replica."""
    for marker in project.glob(".chalk/images/*/rootfs/app/slow-*"):
        marker.unlink()
    wait_for(lambda: len(replica_pids(project, "double")) == 2, what="two ready replicas")
    ids = pa.array(range(MILLION), pa.int64())
    x = pc.if_else(pc.equal(ids, 600_000), 777.0, pc.cast(ids, pa.float64()))
    table = pa.table({"reading.id": ids, "reading.x": x})
    found: list[pa.Table] = []
    calls: dict[str, object] = {}

    def query() -> None:
        client = ApiServerClient(server.url)
        try:
            blocks = client.offline_blocks(graph_of([Reading]), [table], ["reading.doubled"],
                                           model_calls=calls)  # type: ignore[arg-type]  # fmt: skip
            found.extend(blocks)
        finally:
            client.close()

    thread = threading.Thread(target=query)
    thread.start()
    marker = wait_for(
        lambda: next(iter(project.glob(".chalk/images/*/rootfs/app/slow-*")), None),
        what="the slow chunk at a replica",
        timeout_s=60,
    )
    pid = int(marker.name.removeprefix("slow-"))
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=120)

    result = pa.concat_tables(found)
    assert not alive(pid)
    assert result.column("reading.id").equals(pa.chunked_array([ids]))
    assert result.column("reading.doubled").to_pylist() == pc.multiply(x, 2.0).to_pylist()
    assert calls["double"].retries >= 1  # type: ignore[attr-defined]
    # Leave the next tests two replicas.
    wait_for(
        lambda: len(found_pids := replica_pids(project, "double")) == 2 and pid not in found_pids,
        what="the killed replica restarted",
        timeout_s=60,
    )


@pytest.fixture(scope="module")
def two_workers(project: Path) -> Iterator[Server]:
    running = start_server(project, "--workers", "2")
    yield running
    running.stop()


def test_a_server_worker_killed_mid_query_loses_and_repeats_no_row(two_workers: Server) -> None:
    """The blocks in flight on the killed worker lose their connection: the client sends
    them again, and the other worker answers."""
    workers = wait_for(lambda: len(found := _workers(two_workers)) == 2 and found,
                       what="two server workers")  # fmt: skip
    ids = pa.array(range(MILLION), pa.int64())
    table = pa.table({"reading.id": ids, "reading.x": pc.cast(ids, pa.float64())})
    client = ApiServerClient(two_workers.url, block_bytes=1 << 19)
    found = []
    try:
        for block in client.offline_blocks(graph_of([Reading]), [table], ["reading.doubled"]):
            if not found:
                workers[0].kill()
            found.append(block)
    finally:
        client.close()

    result = pa.concat_tables(found)
    assert _dead(workers[0])
    assert result.column("reading.id").equals(pa.chunked_array([ids]))
    assert result.column("reading.doubled").equals(
        pa.chunked_array([pc.multiply(table.column("reading.x"), 2.0).combine_chunks()])
    )


def _workers(server: Server) -> list[psutil.Process]:
    """The server's worker processes (multiprocessing's resource tracker is a child too)."""
    children = psutil.Process(server.process.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # killed, not yet reaped
    except psutil.NoSuchProcess:
        return True


def post_block(
    server: Server, body: bytes, *, query: str = "?output=reading.loud", **headers: str
) -> tuple[int, dict[str, object]]:
    reply = server.http.post(
        f"/v1/query/offline{query}",
        content=body,
        headers={"content-type": ARROW_STREAM, **headers},
    )
    return reply.status_code, reply.json()


def arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


NAMES = pa.table({"reading.id": [1], "reading.name": ["bob"]})


@pytest.mark.parametrize(
    ("body", "query", "headers", "status", "code", "named"),
    [
        pytest.param(b"not arrow", "?output=reading.loud", {}, 400, "INVALID_ARROW",
                     "the body is not an Arrow IPC stream", id="not_arrow"),
        pytest.param(arrow(NAMES), "", {}, 400, "INVALID_QUERY", "expected ?output=",
                     id="no_output"),
        pytest.param(arrow(NAMES), "?output=reading.loud&use_cache=0", {}, 400, "INVALID_QUERY",
                     "use_cache='0' in the URL: expected true or false", id="use_cache_0"),
        pytest.param(arrow(NAMES), "?output=reading.loud&use_cache=no", {}, 400, "INVALID_QUERY",
                     "use_cache='no' in the URL: expected true or false", id="use_cache_no"),
        pytest.param(arrow(NAMES), "?output=reading.nope", {}, 400, "INVALID_QUERY",
                     "there is no feature 'reading.nope'", id="unknown_output"),
        pytest.param(arrow(pa.table({"reading.id": [1], "reading.x": ["many"]})),
                     "?output=reading.doubled", {}, 400, "INVALID_QUERY",
                     "reading.x: the input column of type string", id="wrong_type"),
        pytest.param(arrow(NAMES), "?output=reading.loud",
                     {FINGERPRINTS_HEADER: json.dumps({"reading.loud": "0" * 32})}, 409,
                     "FEATURE_MISMATCH", "reading.loud is defined differently", id="mismatch"),
        pytest.param(arrow(NAMES), "?output=reading.loud",
                     {"content-type": "application/json"}, 415, "UNSUPPORTED_MEDIA_TYPE",
                     f"expected {ARROW_STREAM}", id="not_arrow_type"),
    ],
)  # fmt: skip
def test_a_bad_block_is_a_json_error(
    server: Server,
    body: bytes,
    query: str,
    headers: dict[str, str],
    status: int,
    code: str,
    named: str,
) -> None:
    found_status, answer = post_block(server, body, query=query, **headers)

    assert found_status == status
    errors = answer["errors"]
    assert isinstance(errors, list)
    assert errors[0]["code"] == code
    assert named in errors[0]["message"]


def test_a_block_answers_arrow_with_its_model_calls(server: Server) -> None:
    table = pa.table({"reading.id": [3, 1], "reading.x": [1.0, 2.5]})

    reply = server.http.post(
        "/v1/query/offline?output=reading.doubled&output=reading.id",
        content=arrow(table),
        headers={"content-type": ARROW_STREAM},
    )

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == ARROW_STREAM
    with pa.ipc.open_stream(reply.content) as reader:
        answer = reader.read_all()
    assert answer.to_pydict() == {"reading.id": [3, 1], "reading.doubled": [2.0, 5.0]}
    assert json.loads(reply.headers[MODEL_CALLS_HEADER])["double"]["rows"] == 2


@pytest.mark.parametrize(
    ("outputs", "error", "match"),
    [
        pytest.param(["reading.nope"], QueryError, "there is no feature 'reading.nope'",
                     id="unknown_feature"),
        pytest.param(["reading.doubled"], ModelCallError, "negative input", id="model_failure"),
    ],
)  # fmt: skip
def test_errors_are_the_in_process_ones(
    clients: tuple[ChalkClient, ChalkClient], outputs: list[str], error: type[Exception], match: str
) -> None:
    local, remote = clients
    table = pa.table({"reading.id": [1, 2], "reading.x": [1.0, -1.0]})

    with pytest.raises(error, match=match):
        local.offline_query(table, outputs, show_progress=False)
    with pytest.raises(error, match=match):
        remote.offline_query(table, outputs, show_progress=False)


def test_a_feature_defined_differently_is_a_409_naming_it(server: Server) -> None:
    changed = reading_with_loud_redefined()
    client = ApiServerClient(server.url)
    try:
        with pytest.raises(FeatureMismatchError, match=r"reading\.loud is defined differently"):
            list(client.offline_blocks(changed, [NAMES], ["reading.loud"]))
    finally:
        client.close()
