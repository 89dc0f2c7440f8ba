"""Every endpoint of a real ``chalk serve`` over HTTP, and each bad request it answers 4xx."""

from __future__ import annotations

import base64
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest

from chalk.server.models import ErrorResponse, InvokeResponse, OnlineQueryResponse
from tests.deploy.local.conftest import alive, wait_for
from tests.server.conftest import (
    ROW_JSON,
    Reading,
    Server,
    apply,
    query_body,
    replica_pids,
    start_server,
)


def post(server: Server, path: str, body: Any) -> httpx.Response:
    return server.http.post(path, json=body)


def values(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["field"]: item["value"] for item in data}


def test_an_online_query_answers_every_type_as_json(server: Server) -> None:
    reply = post(server, "/v1/query/online", query_body())

    assert reply.status_code == 200, reply.text
    body = OnlineQueryResponse.model_validate(reply.json()).model_dump()
    assert body["errors"] == []
    assert values(reply.json()["data"]) == {
        "reading.id": 7,
        "reading.doubled": 2.5,
        "reading.loud": "BOB",
        "reading.same_flag": True,
        "reading.same_blob": base64.b64encode(b"\x00\xffhi").decode(),
        "reading.same_at": "2024-05-01T12:30:00+00:00",
        "reading.same_on": "2024-02-29",
        "reading.same_tags": ["a", "b"],
        "reading.same_maybe": None,
    }
    meta = reply.json()["meta"]
    assert meta["graph_version"] >= 1
    assert meta["execution_duration_s"] > 0
    assert len(meta["query_id"]) == 32


def test_several_rows_answer_one_data_list_per_row(server: Server) -> None:
    rows = [{**ROW_JSON, "reading.id": n, "reading.x": float(n)} for n in range(3)]

    reply = post(server, "/v1/query/online", {"rows": rows, "outputs": ["reading.doubled"]})

    assert reply.status_code == 200, reply.text
    assert [values(row) for row in reply.json()["data"]] == [
        {"reading.id": n, "reading.doubled": 2.0 * n} for n in range(3)
    ]


def test_many_rows_answer_as_a_few_do(server: Server) -> None:
    # Past the values a query runs on the event loop with (rows times features): on a thread.
    rows = [{**ROW_JSON, "reading.id": n, "reading.x": float(n)} for n in range(600)]

    reply = post(server, "/v1/query/online", {"rows": rows, "outputs": ["reading.doubled"]})

    assert reply.status_code == 200, reply.text
    assert [values(row) for row in reply.json()["data"]] == [
        {"reading.id": n, "reading.doubled": 2.0 * n} for n in range(600)
    ]


def test_a_model_is_invoked_with_columns_named_by_its_input_schema(server: Server) -> None:
    reply = post(server, "/v1/models/double/invoke", {"inputs": {"x": [1.0, 2.5, None]}})

    assert reply.status_code == 200, reply.text
    InvokeResponse.model_validate(reply.json())
    assert reply.json()["outputs"] == [2.0, 5.0, None]
    assert reply.json()["meta"]["model_name"] == "double"
    assert reply.json()["meta"]["serving_versions"] == [
        {"model_name": "double", "model_version": 1}
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "named"),
    [
        pytest.param(
            "/v1/query/online",
            query_body(outputs=["reading.dubled"]),
            400,
            "UNKNOWN_FEATURE",
            "did you mean 'reading.doubled'",
            id="unknown_output",
        ),
        pytest.param(
            "/v1/query/online",
            {"inputs": {**ROW_JSON, "reading.nmae": "x"}, "outputs": ["reading.loud"]},
            400,
            "UNKNOWN_FEATURE",
            "'reading.nmae'",
            id="unknown_input",
        ),
        pytest.param(
            "/v1/query/online",
            query_body(**{"reading.x": "many"}),
            400,
            "INVALID_TYPE",
            "reading.x: the input does not fit its type double",
            id="wrong_type",
        ),
        pytest.param(
            "/v1/query/online",
            query_body(**{"reading.at": "yesterday"}),
            400,
            "INVALID_TYPE",
            "reading.at: expected an ISO 8601 timestamp",
            id="not_a_timestamp",
        ),
        pytest.param(
            "/v1/query/online",
            query_body(**{"reading.blob": "not base64!"}),
            400,
            "INVALID_TYPE",
            "reading.blob: expected base64 text",
            id="not_base64",
        ),
        pytest.param(
            "/v1/query/online",
            {"inputs": {"reading.x": 1.0}, "outputs": ["reading.doubled"]},
            400,
            "MISSING_PRIMARY_KEY",
            "lacks the primary key reading.id",
            id="missing_primary_key",
        ),
        pytest.param(
            "/v1/query/online",
            {"outputs": ["reading.loud"]},
            400,
            "INVALID_REQUEST",
            "expected exactly one of 'inputs' (one row) or 'rows'",
            id="no_inputs",
        ),
        pytest.param(
            "/v1/query/online",
            {"inputs": ROW_JSON, "outputs": "reading.loud"},
            400,
            "INVALID_REQUEST",
            "outputs: Input should be a valid array",
            id="outputs_not_a_list",
        ),
        *(
            pytest.param(
                "/v1/query/online",
                {"inputs": ROW_JSON, "outputs": ["reading.loud"], "use_cache": loose},
                400,
                "INVALID_REQUEST",
                "use_cache: Input should be a valid boolean",
                id=f"use_cache_{name}",
            )
            for name, loose in (("no", "no"), ("false_text", "false"), ("yes", "yes"), ("one", 1))
        ),
        pytest.param(
            "/v1/models/nope/invoke",
            {"inputs": {"x": [1.0]}},
            404,
            "UNKNOWN_GROUP",
            "there is no scaling group named 'nope'",
            id="unknown_group",
        ),
        pytest.param(
            "/v1/models/double/invoke",
            {"inputs": {"text": ["a"]}},
            400,
            "INVALID_INPUT",
            "expected columns x: double, got text",
            id="wrong_model_column",
        ),
        pytest.param(
            "/v1/models/double/invoke",
            {"inputs": {"x": ["a"]}},
            400,
            "INVALID_TYPE",
            "input 'x' of scaling group 'double': the input does not fit its type double",
            id="wrong_model_type",
        ),
    ],
)
def test_a_bad_request_is_a_4xx_naming_what_is_wrong(
    server: Server, path: str, body: Any, status: int, code: str, named: str
) -> None:
    reply = post(server, path, body)

    assert reply.status_code == status, reply.text
    ErrorResponse.model_validate(reply.json())
    (error,) = reply.json()["errors"]
    assert error["code"] == code
    assert named in error["message"]


def test_malformed_json_is_a_400(server: Server) -> None:
    reply = server.http.post("/v1/query/online", content=b'{"inputs": {')

    assert reply.status_code == 400
    assert reply.json()["errors"][0]["code"] == "MALFORMED_JSON"
    assert "not valid JSON" in reply.json()["errors"][0]["message"]


@pytest.fixture(scope="module")
def small(project: Path) -> Iterator[Server]:
    """A server with a body limit of 1 KiB and a deadline of half a second."""
    running = start_server(project, "--max-body-bytes", "1024", "--deadline", "0.5")
    yield running
    running.stop()


def test_a_body_over_the_limit_is_a_413(small: Server) -> None:
    reply = post(small, "/v1/query/online", query_body(**{"reading.name": "x" * 5000}))

    assert reply.status_code == 413
    assert reply.json()["errors"][0]["code"] == "BODY_TOO_LARGE"
    assert "expected at most 1024" in reply.json()["errors"][0]["message"]


def test_a_request_past_its_deadline_is_a_504(small: Server) -> None:
    reply = post(small, "/v1/query/online", query_body(**{"reading.x": 999.0}))

    assert reply.status_code == 504, reply.text
    # No call was held meanwhile: the message says no more.
    assert reply.json()["errors"][0]["message"] == (
        "the request took longer than its deadline of 0.5 s (chalk serve --deadline)"
    )
    # The query given up on leaves nothing behind that a next one would trip over.
    assert post(small, "/v1/query/online", query_body()).status_code == 200


def test_a_model_failure_is_a_5xx_naming_the_group_and_the_remote_error(server: Server) -> None:
    reply = post(server, "/v1/query/online", query_body(**{"reading.x": -1.0}))
    invoked = post(server, "/v1/models/double/invoke", {"inputs": {"x": [-1.0]}})

    assert reply.status_code == 502, reply.text
    assert invoked.status_code == 502, invoked.text
    assert reply.json()["meta"]["graph_version"] >= 1
    for answer in (reply, invoked):
        message = answer.json()["errors"][0]["message"]
        assert "double" in message
        assert "negative input" in message


def test_an_unknown_path_is_a_json_404(server: Server) -> None:
    reply = server.http.get("/v1/nothing")

    assert reply.status_code == 404
    assert "is not served" in reply.json()["errors"][0]["message"]


def test_probes_say_healthy_and_ready(server: Server) -> None:
    assert server.http.get("/healthz").json() == {"status": "ok"}
    ready = server.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_the_openapi_document_describes_the_answers(server: Server) -> None:
    document = server.http.get("/openapi.json").json()
    answer = post(server, "/v1/query/online", query_body()).json()
    schema = {
        "$ref": "#/components/schemas/OnlineQueryResponse",
        "components": document["components"],
    }

    jsonschema.validate(answer, schema)
    assert set(document["paths"]) >= {"/v1/query/online", "/v1/models/{group}/invoke"}


def test_metrics_count_queries_and_model_calls(server: Server) -> None:
    post(server, "/v1/query/online", query_body())
    post(server, "/v1/query/online", query_body(outputs=["reading.nope"]))

    text = server.http.get("/metrics").text

    assert 'chalk_server_requests_total{endpoint="query_online",outcome="ok"}' in text
    assert 'chalk_server_requests_total{endpoint="query_online",outcome="client_error"}' in text
    assert 'chalk_server_model_calls_total{group="double"}' in text
    assert 'chalk_server_model_rows_asked_total{group="double"}' in text
    assert "chalk_server_request_duration_seconds_bucket" in text
    assert 'chalk_server_model_chunk_queries_bucket{group="double",le="1.0"}' in text
    assert 'chalk_server_model_queue_wait_seconds_count{group="double"}' in text
    assert 'chalk_server_model_chunks_left_total{group="double",reason="slot_free"}' in text
    calls = _sample(text, 'chalk_server_model_calls_total{group="double"}')
    timed = _sample(text, 'chalk_server_model_call_duration_seconds_count{group="double"}')
    assert calls == timed >= 1


def _sample(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels as written) in Prometheus text."""
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


def test_a_newly_applied_graph_is_served_without_a_restart(server: Server, project: Path) -> None:
    before = post(server, "/v1/query/online", query_body()).json()["meta"]["graph_version"]

    version = apply(project, Reading, extra={"twice_loud": "concat(_.loud, _.loud)"})

    def answered() -> dict[str, Any] | None:
        reply = post(server, "/v1/query/online", query_body(outputs=["reading.twice_loud"]))
        return reply.json() if reply.status_code == 200 else None

    found = wait_for(answered, what="the new graph")
    assert version > before
    assert found["meta"]["graph_version"] == version
    assert values(found["data"])["reading.twice_loud"] == "BOBBOB"


def test_a_replica_killed_during_requests_costs_no_request(server: Server, project: Path) -> None:
    pids = wait_for(
        lambda: (found := replica_pids(project, "double")) and len(found) == 2 and found,
        what="two ready replicas",
    )
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal answered
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while not stop.is_set():
                reply = http.post("/v1/query/online", json=query_body(outputs=["reading.doubled"]))
                if reply.status_code != 200:
                    failures.append(reply.text)
                answered += 1

    threads = [threading.Thread(target=stream) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: answered >= 20, what="requests before the kill")
    os.kill(pids[0], signal.SIGKILL)
    counted = answered
    wait_for(lambda: answered >= counted + 60, what="requests after the kill", timeout_s=60)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert not alive(pids[0])


def raw_query(server: Server, inputs: str) -> httpx.Response:
    """A query of ``reading.loud`` whose inputs are this JSON text, sent as it is."""
    body = '{"inputs": {"reading.name": "bob", ' + inputs + '}, "outputs": ["reading.loud"]}'
    return server.http.post(
        "/v1/query/online", content=body, headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize(
    ("inputs", "feature", "named"),
    [
        pytest.param('"reading.id": 1.9', "reading.id", "expected an integer, got 1.9",
                     id="fraction_for_int"),
        pytest.param('"reading.id": true', "reading.id", "expected an integer, got true",
                     id="bool_for_int"),
        pytest.param('"reading.id": 1, "reading.x": false', "reading.x",
                     "expected a number, got false", id="bool_for_float"),
        pytest.param('"reading.id": 99999999999999999999999', "reading.id",
                     "expected an integer from -9223372036854775808 to 9223372036854775807",
                     id="int_out_of_range"),
        pytest.param('"reading.id": 1, "reading.x": 1e400', "reading.x",
                     "expected a finite number", id="float_overflow"),
        pytest.param('"reading.id": 1, "reading.x": Infinity', "reading.x",
                     "expected a finite number", id="infinity"),
        pytest.param('"reading.id": 1, "reading.x": NaN', "reading.x",
                     "expected a finite number", id="nan"),
        pytest.param('"reading.id": 1, "reading.flag": 1', "reading.flag",
                     "expected true or false, got 1", id="int_for_bool"),
        pytest.param('"reading.id": 1, "reading.tags": ["a", 2]', "reading.tags",
                     "expected a string, got 2", id="int_in_a_string_list"),
    ],
)  # fmt: skip
def test_a_value_not_of_its_features_type_is_a_400_naming_the_feature(
    server: Server, inputs: str, feature: str, named: str
) -> None:
    reply = raw_query(server, inputs)

    assert reply.status_code == 400, reply.text
    (error,) = reply.json()["errors"]
    assert (error["code"], error["feature"]) == ("INVALID_TYPE", feature)
    assert error["message"].startswith(f"{feature}: the input does not fit its type")
    assert named in error["message"]


def test_a_null_primary_key_is_a_400_naming_it(server: Server) -> None:
    reply = raw_query(server, '"reading.id": null')

    assert reply.status_code == 400, reply.text
    (error,) = reply.json()["errors"]
    assert (error["code"], error["feature"]) == ("INVALID_VALUE", "reading.id")
    assert "reading.id is null in row 0" in error["message"]
    assert "primary key" in error["message"]


def test_a_wrong_method_is_a_405_naming_the_allowed_ones(server: Server) -> None:
    reply = server.http.get("/v1/query/online")

    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    (error,) = reply.json()["errors"]
    assert error["code"] == "METHOD_NOT_ALLOWED"
    assert error["message"] == "GET is not allowed on /v1/query/online: expected POST"


def test_a_trailing_slash_is_a_json_404_naming_the_path_without_it(server: Server) -> None:
    reply = post(server, "/v1/query/online/", query_body())

    assert reply.status_code == 404
    (error,) = reply.json()["errors"]
    assert error["code"] == "NOT_FOUND"
    assert "expected /v1/query/online, without the trailing slash" in error["message"]


@pytest.mark.parametrize(
    ("body", "feature"),
    [
        pytest.param({"outputs": ["reading.loud"]}, None, id="the_body"),
        pytest.param({"inputs": ROW_JSON, "outputs": "reading.loud"}, "outputs", id="a_field"),
    ],
)
def test_a_request_error_names_a_field_only_when_there_is_one(
    server: Server, body: Any, feature: str | None
) -> None:
    reply = post(server, "/v1/query/online", body)

    assert reply.status_code == 400
    assert reply.json()["errors"][0]["feature"] == feature


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        pytest.param(None, 200, id="none"),
        pytest.param("application/json; charset=utf-8", 200, id="json_with_charset"),
        pytest.param("application/x-www-form-urlencoded", 200, id="curl_default"),
        pytest.param("application/xml", 415, id="xml"),
        pytest.param("text/plain", 415, id="text"),
    ],
)
def test_a_body_that_is_not_said_to_be_json_is_a_415(
    server: Server, content_type: str | None, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = orjson.dumps(query_body(outputs=["reading.loud"]))

    reply = server.http.post("/v1/query/online", content=body, headers=headers)

    assert reply.status_code == status, reply.text
    if status == 415:
        (error,) = reply.json()["errors"]
        assert error["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert error["message"] == (
            f"the body's Content-Type is {content_type}: expected application/json"
        )


def test_each_failed_request_is_one_log_line_without_its_body(server: Server) -> None:
    post(server, "/v1/query/online", query_body(outputs=["reading.logged_nope"]))
    post(server, "/v1/query/online", query_body(**{"reading.x": -1.0}))
    server.http.get("/v1/logged-nothing")
    expected = [
        "INFO chalk.server: POST /v1/query/online answered 400 UNKNOWN_FEATURE",
        "WARNING chalk.server: POST /v1/query/online answered 502 MODEL_HANDLER_ERROR",
        "INFO chalk.server: GET /v1/logged-nothing answered 404 NOT_FOUND",
    ]

    def logged() -> bool:
        return all(line in server.output_so_far() for line in expected)

    wait_for(logged, what="the failed requests' log lines")
    assert "logged_nope" not in server.output_so_far()
