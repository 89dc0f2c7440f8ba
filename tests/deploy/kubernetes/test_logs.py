"""Pods' logs through the official client, against a stand-in API server on 127.0.0.1.

A test API server (our kube-apiserver, or kmock's emulator) has no kubelet and cannot run pods,
so it has no pod logs to serve. The stand-in here is a real HTTP server answering the two
requests ``chalk logs`` makes, in the API server's JSON shape: the pod list (by label selector)
and each pod's log (``timestamps``, ``tailLines``, ``sinceSeconds``, ``follow`` as a chunked
stream), with pods and lines the test sets.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kubernetes import client as kube_client

from chalk.catalog import open_catalog
from chalk.catalog.specs import GroupSpec
from chalk.cli import main
from chalk.deploy.errors import DeployError
from chalk.deploy.kubernetes.logs import pod_logs
from chalk.deploy.logs import LogLine, LogQuery
from tests.deploy.kubernetes.helpers import kube_project
from tests.support.log_follower import Follower

NAMESPACE = "shop"
SELECTOR = "app.kubernetes.io/name=web,chalk.ai/scaling-group=web"
START = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)


def at(seconds: float) -> str:
    """A kubelet timestamp ``seconds`` after START (RFC 3339, nanoseconds)."""
    return stamp(START + dt.timedelta(seconds=seconds))


def stamp(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S.%f}000Z"


def now(text: str) -> str:
    """A line as the kubelet sends it, written now."""
    return f"{stamp(dt.datetime.now(dt.UTC))} {text}"


class StandIn:
    """The pods the stand-in lists, their log lines, and the requests it was sent."""

    def __init__(self) -> None:
        self.pods: dict[str, list[str]] = {}  # pod -> lines already written, "<time> <text>"
        self.waiting: set[str] = set()  # pods whose container has not started
        self.listed: set[str] = set()
        self.followers: dict[str, list[queue.Queue[str | None]]] = {}  # open follow streams
        self.log_requests: list[tuple[str, dict[str, str]]] = []
        self.selectors: list[str] = []
        self.lock = threading.Lock()

    def add(self, pod: str, *lines: str, waiting: bool = False) -> None:
        with self.lock:
            self.pods[pod] = list(lines)
            self.listed.add(pod)
            if waiting:
                self.waiting.add(pod)

    def write(self, pod: str, line: str) -> None:
        """A new line of a pod: kept for later reads, sent to the streams following it."""
        with self.lock:
            self.pods[pod].append(line)
            for follower in self.followers.get(pod, []):
                follower.put(line)

    def follow(self, pod: str, since_s: int | None) -> tuple[list[str], queue.Queue[str | None]]:
        """The lines written in the last ``since_s`` seconds, and a queue of those to come."""
        pending: queue.Queue[str | None] = queue.Queue()
        with self.lock:
            self.followers.setdefault(pod, []).append(pending)
            return self.lines(pod, since_s), pending

    def lines(self, pod: str, since_s: int | None) -> list[str]:
        if since_s is None:
            return list(self.pods[pod])
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=since_s)
        return [line for line in self.pods[pod] if written(line) >= cutoff]

    def restart(self, pod: str) -> None:
        """The pod's container exits, ending the streams that follow it; a new one starts."""
        with self.lock:
            for follower in self.followers.pop(pod, []):
                follower.put(None)

    def end(self, pod: str) -> None:
        """The pod's container exits and the pod leaves the list."""
        with self.lock:
            self.listed.discard(pod)
        self.restart(pod)

    def requests_for(self, pod: str) -> list[dict[str, str]]:
        return [query for name, query in self.log_requests if name == pod]


def handler_for(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            parts = url.path.strip("/").split("/")
            if parts[:4] == ["api", "v1", "namespaces", NAMESPACE] and parts[4:] == ["pods"]:
                self._pod_list(query)
            elif parts[:5] == ["api", "v1", "namespaces", NAMESPACE, "pods"] and parts[6:] == [
                "log"
            ]:
                self._log(parts[5], query)
            else:
                self._json(404, status(404, f"{url.path} not found"))

        def _pod_list(self, query: dict[str, str]) -> None:
            stand_in.selectors.append(query.get("labelSelector", ""))
            with stand_in.lock:
                names = sorted(stand_in.listed)
            items = [{"metadata": {"name": n, "namespace": NAMESPACE}} for n in names]
            self._json(200, {"kind": "PodList", "apiVersion": "v1", "items": items})

        def _log(self, pod: str, query: dict[str, str]) -> None:
            stand_in.log_requests.append((pod, query))
            if pod not in stand_in.pods:
                self._json(404, status(404, f'pods "{pod}" not found'))
                return
            if pod in stand_in.waiting:
                message = f'container "web" in pod "{pod}" is waiting to start: ContainerCreating'
                self._json(400, status(400, message))
                return
            since_s = int(query["sinceSeconds"]) if "sinceSeconds" in query else None
            if query.get("follow") == "true":
                lines, pending = stand_in.follow(pod, since_s)
            else:
                with stand_in.lock:
                    lines, pending = stand_in.lines(pod, since_s), None
            if "tailLines" in query:
                lines = lines[max(0, len(lines) - int(query["tailLines"])) :]
            if pending is None:
                self._text("".join(f"{line}\n" for line in lines))
                return
            self._follow(lines, pending)

        def _follow(self, lines: list[str], pending: queue.Queue[str | None]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in lines:
                self._chunk(f"{line}\n")
            while (line := pending.get()) is not None:
                self._chunk(f"{line}\n")
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, text: str) -> None:
            data = text.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _json(self, code: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _text(self, text: str) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def written(line: str) -> dt.datetime:
    """The kubelet's time of a line."""
    return dt.datetime.fromisoformat(line.split(" ", 1)[0])


def status(code: int, message: str) -> dict[str, Any]:
    """A ``Status`` object, as the API server answers a refusal."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
    }


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    """The stand-in running on a free port; its state and its URL."""
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    for pod in list(state.followers):
        state.restart(pod)
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(stand_in: tuple[StandIn, str]) -> Iterator[kube_client.ApiClient]:
    configuration = kube_client.Configuration()
    configuration.host = stand_in[1]
    with kube_client.ApiClient(configuration) as client:
        yield client


def shown(lines: Iterator[LogLine]) -> list[str]:
    return [f"[{line.replica}] {line.text}" for line in lines]


def test_every_pods_lines_merge_by_the_kubelets_time(
    stand_in: tuple[StandIn, str], api: kube_client.ApiClient
) -> None:
    pods, _url = stand_in
    hour_ago = stamp(START - dt.timedelta(hours=1))
    pods.add(
        "web-1",
        f"{hour_ago} one: zeroth",
        f"{at(2)} one: second",
        f"{at(3)} one: third",
        f"{at(4)} one: fourth",
    )
    pods.add("web-2", f"{hour_ago} two: zeroth", f"{at(1)} two: first", f"{at(5)} two: fifth")
    pods.add("web-3", waiting=True)

    lines = pod_logs(api, NAMESPACE, "web", LogQuery(tail=2, since=dt.timedelta(minutes=10)))

    assert shown(lines) == [
        "[web-2] two: first",
        "[web-1] one: third",
        "[web-1] one: fourth",
        "[web-2] two: fifth",
    ]
    assert pods.selectors == [SELECTOR]
    assert pods.requests_for("web-1") == [
        {
            "container": "web",
            "follow": "false",
            "timestamps": "true",
            "tailLines": "2",
            "sinceSeconds": "600",
        }
    ]


def test_lines_carry_the_kubelets_time(
    stand_in: tuple[StandIn, str], api: kube_client.ApiClient
) -> None:
    pods, _url = stand_in
    pods.add("web-1", f"{at(1.5)} hello")

    [line] = pod_logs(api, NAMESPACE, "web", LogQuery())

    assert line.time == START + dt.timedelta(seconds=1.5)


@pytest.mark.parametrize(
    ("replica", "message"),
    [
        pytest.param("web-9", r"no replica 'web-9'; expected one of: web-1, web-2", id="unknown"),
        pytest.param(
            "web-2", r"'web-2'.*\(400 .*waiting to start: ContainerCreating", id="waiting"
        ),
    ],
)
def test_one_replica_that_cannot_be_read_is_an_error_naming_it(
    stand_in: tuple[StandIn, str], api: kube_client.ApiClient, replica: str, message: str
) -> None:
    pods, _url = stand_in
    pods.add("web-1", f"{at(0)} hello")
    pods.add("web-2", waiting=True)

    with pytest.raises(DeployError, match=message) as raised:
        list(pod_logs(api, NAMESPACE, "web", LogQuery(replica=replica)))

    assert "Traceback" not in str(raised.value)


def test_following_picks_up_pods_as_they_start_and_drops_those_that_leave(
    stand_in: tuple[StandIn, str], api: kube_client.ApiClient
) -> None:
    pods, _url = stand_in
    pods.add("web-1", f"{at(0)} one: old", f"{at(1)} one: recent")
    follower = Follower(
        pod_logs(api, NAMESPACE, "web", LogQuery(tail=1, follow=True), relist_s=0.1, batch_s=0.05)
    )
    follower.wait_for("[web-1] one: recent")

    pods.add("web-2", f"{at(2)} two: started")  # a roll's new pod
    pods.add("web-3", waiting=True)  # still pulling its image
    pods.write("web-1", f"{at(3)} one: draining")
    follower.wait_for("[web-2] two: started", "[web-1] one: draining")
    pods.end("web-1")
    pods.waiting.discard("web-3")
    pods.write("web-3", now("three: started"))  # written after it was first asked
    pods.write("web-2", f"{at(5)} two: serving")
    follower.wait_for("[web-3] three: started", "[web-2] two: serving")

    assert "[web-1] one: old" not in follower.seen
    assert [query.get("tailLines") for query in pods.requests_for("web-1")] == ["1"]
    assert [query.get("tailLines") for query in pods.requests_for("web-2")] == [None]
    assert follower.seen.count("[web-2] two: started") == 1


def test_following_reads_a_restarted_container_on_after_the_last_line_it_gave(
    stand_in: tuple[StandIn, str], api: kube_client.ApiClient
) -> None:
    pods, _url = stand_in
    pods.add("web-1", now("one: first run"))
    follower = Follower(
        pod_logs(api, NAMESPACE, "web", LogQuery(follow=True), relist_s=0.1, batch_s=0.05)
    )
    follower.wait_for("[web-1] one: first run")

    pods.restart("web-1")
    pods.write("web-1", now("one: second run"))
    follower.wait_for("[web-1] one: second run")

    assert follower.seen == ["[web-1] one: first run", "[web-1] one: second run"]
    [first, *again] = pods.requests_for("web-1")
    assert "sinceSeconds" not in first
    assert again
    assert all("sinceSeconds" in query for query in again)  # from its last line on


def test_following_one_pod_ends_with_its_stream(
    stand_in: tuple[StandIn, str], api: kube_client.ApiClient
) -> None:
    pods, _url = stand_in
    pods.add("web-1", f"{at(0)} one: hello")
    pods.add("web-2", f"{at(1)} two: hello")
    follower = Follower(
        pod_logs(api, NAMESPACE, "web", LogQuery(replica="web-1", follow=True), batch_s=0.05)
    )
    follower.wait_for("[web-1] one: hello")

    pods.write("web-1", f"{at(2)} one: bye")
    pods.end("web-1")

    assert follower.ended.wait(10)
    assert follower.seen == ["[web-1] one: hello", "[web-1] one: bye"]


def test_chalk_logs_reads_the_pods_of_a_kubernetes_project(
    stand_in: tuple[StandIn, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pods, url = stand_in
    pods.add("web-1", f"{at(0)} one: first", f"{at(2)} one: third")
    pods.add("web-2", f"{at(1)} two: second")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
                "users": [{"name": "stand-in", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}
                ],
                "current-context": "stand-in",
            }
        )
    )
    project = kube_project(tmp_path, monkeypatch, kubeconfig, "stand-in", NAMESPACE)
    spec = GroupSpec(image="ghcr.io/acme/web:1")
    open_catalog(project).groups.create("web", spec.to_dict(), backend="kubernetes")

    with pytest.raises(SystemExit) as exited:
        main(["logs", "web"])

    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    assert out.splitlines() == ["[web-1] one: first", "[web-2] two: second", "[web-1] one: third"]
