"""A project served by a real ``chalk serve`` on 127.0.0.1: a model group ``double`` (two
replicas of our runtime under the real local controller) and an applied graph with a feature
of every type. One project and one server for the whole package (they take seconds to start)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from chalk import functions as F
from chalk.catalog import open_catalog
from chalk.client import ChalkClient
from chalk.common.config import load_project
from chalk.features import ClassDef, FeatureDef, FeatureGraph, _, features, graph_of
from chalk.scaling import AutoScalingSpec
from tests.support.runtime_process import free_port

CHALK = str(Path(sys.executable).with_name("chalk"))

MODEL = """
import os
import time
import pyarrow.compute as pc

def handler(event, context):
    x = event["x"]
    if pc.any(pc.less(x, 0)).as_py():
        raise ValueError("negative input")
    if pc.any(pc.equal(x, 999.0)).as_py():
        time.sleep(3)  # longer than the deadline of the tests' small server
    if pc.any(pc.equal(x, 777.0)).as_py():
        open(f"slow-{os.getpid()}", "w").close()  # the test kills this replica now
        time.sleep(3)
    return pc.multiply(x, 2.0)
"""

DOCKERFILE = """FROM python:3.11-slim
WORKDIR /app
COPY model.py /app/model.py
EXPOSE 8080
ENTRYPOINT ["chalk-remote-call", "--handler", "model.handler", "--port", "8080"]
"""


@features
class Reading:
    id: int
    x: float
    name: str
    flag: bool
    blob: bytes
    at: dt.datetime
    on: dt.date
    tags: list[str]
    maybe: int | None
    doubled: float = F.catalog_call("model.double", _.x)
    loud: str = F.upper(_.name)
    same_flag: bool = _.flag
    same_blob: bytes = _.blob
    same_at: dt.datetime = _.at
    same_on: dt.date = _.on
    same_tags: list[str] = _.tags
    same_maybe: int | None = _.maybe


# One row of every input, as Python values.
ROW = {
    Reading.id: 7,
    Reading.x: 1.25,
    Reading.name: "bob",
    Reading.flag: True,
    Reading.blob: b"\x00\xffhi",
    Reading.at: dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
    Reading.on: dt.date(2024, 2, 29),
    Reading.tags: ["a", "b"],
    Reading.maybe: None,
}
# The same row as JSON.
ROW_JSON = {
    "reading.id": 7,
    "reading.x": 1.25,
    "reading.name": "bob",
    "reading.flag": True,
    "reading.blob": "AP9oaQ==",
    "reading.at": "2024-05-01T12:30:00+00:00",
    "reading.on": "2024-02-29",
    "reading.tags": ["a", "b"],
    "reading.maybe": None,
}
OUTPUTS = [
    "reading.doubled",
    "reading.loud",
    "reading.same_flag",
    "reading.same_blob",
    "reading.same_at",
    "reading.same_on",
    "reading.same_tags",
    "reading.same_maybe",
]


def chalk(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )


@dataclass
class Server:
    """A running ``chalk serve`` and an HTTP client of it."""

    process: subprocess.Popen[str]
    url: str
    http: httpx.Client
    seen: str = ""

    def output_so_far(self) -> str:
        """What it has written (stdout and stderr) so far, read without waiting."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        os.set_blocking(fd, False)
        try:
            while chunk := _read_ready(fd):
                self.seen += chunk.decode(errors="replace")
        finally:
            os.set_blocking(fd, True)
        return self.seen

    def stop(self) -> str:
        """Stop it (SIGTERM, then SIGKILL); its output."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        out, _ = self.process.communicate(timeout=10)
        return self.seen + out


def _read_ready(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


def start_server(root: Path, *args: str, token: str | None = None) -> Server:
    """``chalk serve`` in ``root`` on a free port, once its /healthz answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    process = subprocess.Popen(
        [CHALK, "serve", "--port", str(port), *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    server = Server(process, url, httpx.Client(base_url=url, headers=headers, timeout=60))
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise AssertionError(f"chalk serve exited: {server.stop()}")
        with contextlib.suppress(httpx.TransportError):
            if server.http.get("/healthz").status_code == 200:
                return server
        time.sleep(0.1)
    raise AssertionError(f"chalk serve did not answer within 60 s: {server.stop()}")


def apply(root: Path, *classes: type, extra: dict[str, str] | None = None) -> int:
    """What ``chalk apply`` stores for ``classes``, plus ``extra`` features (name: expression
    text, string-typed) in the first class; the new graph version."""
    graph = graph_of(list(classes)).to_json()
    for name, expression in (extra or {}).items():
        graph["classes"][0]["features"].append(
            {"name": name, "type": "large_string", "expression": expression}
        )
    catalog = open_catalog(load_project(root / "chalk.yaml"))
    return catalog.graphs.apply(graph).version


def replica_pids(root: Path, group: str) -> list[int]:
    catalog = open_catalog(load_project(root / "chalk.yaml"))
    found = catalog.groups.get(group)
    return [r.pid for r in catalog.state.replicas(found.id) if r.ready and r.pid is not None]


@pytest.fixture(scope="package")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose group ``double`` has two ready replicas and whose graph is applied."""
    root = tmp_path_factory.mktemp("served")
    (root / "chalk.yaml").write_text("project: served\n")
    context = root / "models"
    context.mkdir()
    (context / "model.py").write_text(MODEL)
    (context / "Dockerfile").write_text(DOCKERFILE)
    built = chalk(root, "image", "build", "models", "-t", "double:v1")
    assert built.returncode == 0, built.stderr
    client = ChalkClient(project_dir=root)
    try:
        client.register_model_version(
            name="double",
            input_schema={"x": pa.float64()},
            output_schema={"y": pa.float64()},
            model_image="double:v1",
        )
        client.deploy_model_version_to_scaling_group(
            name="double",
            model_name="double",
            model_version=1,
            scaling=AutoScalingSpec(min_replicas=2, max_replicas=2),
            wait=True,
        )
        apply(root, Reading)
        yield root
    finally:
        client.close()
        chalk(root, "down")


@pytest.fixture(scope="package")
def server(project: Path) -> Iterator[Server]:
    running = start_server(project)
    yield running
    running.stop()


def reading_with_loud_redefined() -> FeatureGraph:
    """Reading as a client would define it if its `loud` differed from the applied one."""
    applied = graph_of([Reading])
    return FeatureGraph.from_classes(
        [
            ClassDef(
                "Reading",
                "reading",
                tuple(
                    FeatureDef("reading", f.name, f.arrow_type, f.nullable, f.primary,
                               "lower(_.name)" if f.name == "loud" else f.expression)
                    for f in applied.classes[0].features
                ),
            )
        ]
    )  # fmt: skip


def query_body(outputs: Sequence[str] = OUTPUTS, **inputs: object) -> dict[str, object]:
    return {"inputs": {**ROW_JSON, **inputs}, "outputs": list(outputs)}
