"""chalk-remote-call's flags and environment, parsed into a ServerConfig."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chalk.shim.cli import config_from_args


def test_defaults_match_the_reference() -> None:
    config = config_from_args(["--handler", "model.handler"], {})

    assert (config.port, config.host, config.workers) == (6666, "[::]", 10)
    assert (config.on_startup, config.on_shutdown, config.input_args) == (None, None, None)
    assert config.grace_period_s == 30.0
    assert config.server_core == "cython"


def test_environment_supplies_defaults_and_flags_win() -> None:
    env = {
        "CHALK_REMOTE_CALL_PORT": "7000",
        "CHALK_REMOTE_CALL_HOST": "127.0.0.1",
        "CHALK_REMOTE_CALL_METRICS_PORT": "9100",
        "CHALK_INPUT_ARGS": "text,lang",
    }

    from_env = config_from_args(["--handler", "m.h"], env)
    from_flags = config_from_args(["--handler", "m.h", "--port", "7100", "--host", "::1"], env)

    assert (from_env.port, from_env.host, from_env.metrics_port) == (7000, "127.0.0.1", 9100)
    assert from_env.input_args == ("text", "lang")
    assert (from_flags.port, from_flags.host) == (7100, "::1")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        pytest.param([], {}, "--handler", id="no_handler"),
        pytest.param(
            ["--handler", "m.h", "--port", "x"],
            {},
            "argument --port: expected a whole number, got 'x'",
            id="bad_port",
        ),
        pytest.param(["--handler", "m.h", "--workers", "0"], {}, "--workers", id="no_workers"),
        pytest.param(["--handler", "m.h"], {"CHALK_INPUT_ARGS": "a,,b"}, "empty", id="bad_args"),
        pytest.param(["--handler", "m.h", "--log-level", "LOUD"], {}, "--log-level", id="level"),
        pytest.param(["--handler", "m.h", "--server-core", "x"], {}, "--server-core", id="core"),
        pytest.param(
            ["--handler", "m.h"],
            {"CHALK_REMOTE_CALL_SERVER_CORE": "fast"},
            "CHALK_REMOTE_CALL_SERVER_CORE must be one of cython, grpcio, got 'fast'",
            id="core_variable",
        ),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        config_from_args(argv, env)

    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "core"),
    [
        pytest.param([], {"CHALK_REMOTE_CALL_SERVER_CORE": "grpcio"}, "grpcio", id="env"),
        pytest.param(["--server-core", "grpcio"], {}, "grpcio", id="flag"),
        pytest.param(
            ["--server-core", "cython"],
            {"CHALK_REMOTE_CALL_SERVER_CORE": "grpcio"},
            "cython",
            id="flag_wins",
        ),
    ],
)
def test_the_server_core_comes_from_flag_or_environment(
    argv: list[str], env: dict[str, str], core: str
) -> None:
    assert config_from_args(["--handler", "m.h", *argv], env).server_core == core


def test_a_bad_port_variable_names_the_variable() -> None:
    with pytest.raises(SystemExit, match="CHALK_REMOTE_CALL_PORT must be an integer"):
        config_from_args(["--handler", "m.h"], {"CHALK_REMOTE_CALL_PORT": "66a"})


def test_importing_the_cli_leaves_grpc_unloaded() -> None:
    # gRPC reads GRPC_EXPERIMENTS once, when it loads: main() must get to set it first.
    probe = "import sys, chalk.shim.cli; print('grpc' in sys.modules)"

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout

    assert loaded.strip() == "False"


@pytest.mark.parametrize(
    ("given", "seen"),
    [pytest.param(None, "ERROR", id="default"), pytest.param("INFO", "INFO", id="user_set")],
)
def test_grpc_logs_only_errors_unless_the_user_says_otherwise(given: str | None, seen: str) -> None:
    # gRPC's INFO lines (a GOAWAY on every rolling update) would land in users' programs.
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    if given is not None:
        env["GRPC_VERBOSITY"] = given
    probe = "import os, chalk.shim; print(os.environ['GRPC_VERBOSITY'])"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == seen
