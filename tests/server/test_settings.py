"""``chalk serve``'s settings and error table, without a server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import chalk.server.run
from chalk.catalog.errors import NoReadyReplicaError, UnknownGroupError, UnreachableGroupError
from chalk.cli import main
from chalk.engine import holds
from chalk.engine.errors import ModelHandlerError, ModelUnavailableError
from chalk.engine.query import QueryError
from chalk.features import GraphError
from chalk.server.errors import ApiError, api_error, on_graph
from chalk.server.graphs import NoGraphError
from chalk.server.settings import (
    DEFAULT_HOLD_TIMEOUT_S,
    DEFAULT_MAX_HELD_CALLS,
    ServerSettings,
    ServerSettingsError,
    check_bindable,
    read_token,
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"host": "0.0.0.0"}, "refuses to listen on 0.0.0.0 without a token",
                     id="wildcard_without_token"),
        pytest.param({"workers": 0}, "--workers is out of range: expected 1 to 256",
                     id="no_workers"),
        pytest.param({"max_body_bytes": 0}, "--max-body-bytes is below its floor",
                     id="no_body"),
        pytest.param({"deadline_s": 0}, "--deadline is out of range", id="no_deadline"),
        pytest.param({"port": 65536}, "--port must be from 0 to 65535", id="port_too_high"),
    ],
)  # fmt: skip
def test_settings_it_refuses_name_the_flag(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ServerSettingsError, match=message):
        ServerSettings(project_dir="/p", **changes)  # type: ignore[arg-type]


def test_a_token_allows_any_address() -> None:
    assert ServerSettings(project_dir="/p", host="0.0.0.0", token="t").host == "0.0.0.0"


def test_a_token_file_is_read_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n")

    assert read_token(tmp_path / "token") == "abc"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(None, "cannot read it", id="missing"),
        pytest.param(" \n", "is empty", id="empty"),
    ],
)
def test_a_token_file_that_holds_no_token_is_refused(
    tmp_path: Path, text: str | None, message: str
) -> None:
    if text is not None:
        (tmp_path / "token").write_text(text)

    with pytest.raises(ServerSettingsError, match=message):
        read_token(tmp_path / "token")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        pytest.param(QueryError("q"), 400, "INVALID_QUERY", id="query"),
        pytest.param(GraphError("g"), 400, "UNKNOWN_FEATURE", id="graph"),
        pytest.param(UnknownGroupError("u"), 404, "UNKNOWN_GROUP", id="group"),
        pytest.param(NoReadyReplicaError("n"), 503, "MODEL_UNAVAILABLE", id="no_replica"),
        pytest.param(UnreachableGroupError("u"), 503, "MODEL_UNAVAILABLE", id="unreachable"),
        pytest.param(
            ModelUnavailableError("h", group="g", waited_s=60.0, status="Idle", reason=""),
            503, "MODEL_UNAVAILABLE", id="held_too_long",
        ),
        pytest.param(NoGraphError("n"), 503, "NO_GRAPH", id="no_graph"),
        pytest.param(
            ModelHandlerError("h", kind="ValueError", remote_message="m", remote_traceback="",
                              endpoint="e"),
            502, "MODEL_HANDLER_ERROR", id="handler",
        ),
    ],
)  # fmt: skip
def test_each_error_class_has_its_status(error: Exception, status: int, code: str) -> None:
    found = api_error(error)

    assert found is not None
    assert (found.status, found.code, found.message) == (status, code, str(error))


def test_an_error_of_no_known_class_is_left_to_the_caller() -> None:
    assert api_error(KeyError("x")) is None


def test_a_port_in_use_is_refused_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ServerSettingsError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_bindable("127.0.0.1", port)


def test_an_error_naming_a_feature_of_the_graph_fills_its_feature() -> None:
    unavailable = NoReadyReplicaError("reading.doubled: scaling group 'double' has no replica")

    found = on_graph(unavailable, 4, {"reading.doubled"})
    other = on_graph(QueryError("the query has no outputs: expected one"), 4, {"reading.x"})

    assert isinstance(found, ApiError)
    assert (found.code, found.feature, found.graph_version) == (
        "MODEL_UNAVAILABLE",
        "reading.doubled",
        4,
    )
    assert isinstance(other, ApiError)
    assert other.feature is None


@pytest.fixture
def in_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "chalk.yaml").write_text("project: p\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_one_error_line(
    in_a_project: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", port])

    assert exited.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: --port must be from 0 to 65535 (0: any free port), got {port}"
    ]


@pytest.mark.parametrize(
    ("host", "shown"), [("127.0.0.1", "http://127.0.0.1:"), ("::1", "http://[::1]:")]
)
def test_serve_prints_the_address_it_binds(
    in_a_project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    shown: str,
) -> None:
    served: list[ServerSettings] = []
    monkeypatch.setattr(chalk.server.run, "serve", served.append)

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--host", host, "--port", "0"])

    assert exited.value.code == 0
    (settings,) = served
    assert settings.port != 0
    assert f"on {shown}{settings.port} (" in capsys.readouterr().out


def test_the_hold_defaults_are_the_engines() -> None:
    # Repeated in the settings so that `chalk serve --help` loads no engine.
    assert (DEFAULT_HOLD_TIMEOUT_S, DEFAULT_MAX_HELD_CALLS) == (
        holds.DEFAULT_HOLD_TIMEOUT_S,
        holds.DEFAULT_MAX_HELD_CALLS,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hold_timeout_s": -1.0}, r"--hold-timeout is out of range: expected 0 s to 3600 s"),
        ({"max_held_calls": -1}, r"--max-held-calls is out of range: expected 0 calls to 1000000"),
    ],
)
def test_hold_bounds_out_of_range_are_refused_naming_the_flag(
    changes: dict[str, float], message: str
) -> None:
    with pytest.raises(ServerSettingsError, match=message):
        ServerSettings(project_dir="/srv", **changes)  # type: ignore[arg-type]
