"""``chalk serve`` with a bearer token (and two workers), and its refusal to listen off
loopback without one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chalk.client import ChalkClient
from tests.server.conftest import ROW, Reading, Server, chalk, query_body, start_server

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(f"{TOKEN}\n")
    running = start_server(project, "--token-file", str(token_file), "--workers", "2", token=TOKEN)
    yield running
    running.stop()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no_token"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong_token"),
        pytest.param({"Authorization": TOKEN}, id="not_bearer"),
    ],
)
@pytest.mark.parametrize(
    "path", ["/v1/query/online", "/v1/query/offline", "/metrics", "/openapi.json"]
)
def test_without_the_token_everything_but_the_probes_is_401(
    guarded: Server, headers: dict[str, str], path: str
) -> None:
    with httpx.Client(base_url=guarded.url, headers=headers) as http:
        reply = http.post(path, json=query_body()) if path.startswith("/v1") else http.get(path)

    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert "needs a bearer token" in reply.json()["errors"][0]["message"]


def test_the_probes_stay_open(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


def test_with_the_token_queries_run_and_metrics_sum_over_the_workers(guarded: Server) -> None:
    for _ in range(8):
        reply = guarded.http.post("/v1/query/online", json=query_body(outputs=["reading.loud"]))
        assert reply.status_code == 200, reply.text

    text = guarded.http.get("/metrics").text

    line = next(
        line
        for line in text.splitlines()
        if line.startswith('chalk_server_requests_total{endpoint="query_online",outcome="ok"}')
    )
    assert float(line.split()[-1]) == 8


def test_the_client_sends_the_token_from_the_environment(
    project: Path, guarded: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHALK_API_TOKEN", TOKEN)

    with ChalkClient(project_dir=project, api_server=guarded.url) as client:
        assert client.query(ROW, [Reading.loud]).get_feature_value(Reading.loud) == "BOB"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])
def test_an_address_off_loopback_needs_a_token(project: Path, host: str) -> None:
    result = chalk(project, "serve", "--host", host, "--port", "1", timeout=60)

    assert result.returncode == 1
    assert f"refuses to listen on {host} without a token" in result.stderr
    assert "--token-file" in result.stderr


def test_the_bearer_scheme_is_case_insensitive(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url, headers={"Authorization": f"bearer {TOKEN}"}) as http:
        assert http.get("/openapi.json").status_code == 200


def test_a_401_is_counted_as_a_client_error(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        assert http.post("/v1/query/online", json=query_body()).status_code == 401

    text = guarded.http.get("/metrics").text

    assert 'chalk_server_requests_total{endpoint="query_online",outcome="client_error"}' in text
