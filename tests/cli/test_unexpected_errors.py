"""An error no part meant for the user still reaches them as one line, never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalk import cli


def _broken(args: argparse.Namespace) -> int:
    return int({}["missing"])  # a bug: KeyError


def test_an_unexpected_error_is_one_line_saying_it_is_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CHALK_DEBUG", raising=False)

    code, message = cli._run(_broken, argparse.Namespace())

    assert code == 1
    assert message is not None
    assert message.startswith("unexpected KeyError at test_unexpected_errors.py:")
    assert "a bug in scalegroup" in message
    assert "CHALK_DEBUG=1" in message
    assert "\n" not in message


def test_chalk_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHALK_DEBUG", "1")

    with pytest.raises(KeyError):
        cli._run(_broken, argparse.Namespace())


def _pipe_broken(args: argparse.Namespace) -> int:
    raise BrokenPipeError(32, "Broken pipe")  # a socket's, say: stdout is fine


def test_a_broken_pipe_that_is_not_stdout_is_still_a_bug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CHALK_DEBUG", raising=False)

    code, message = cli._run(_pipe_broken, argparse.Namespace())

    assert code == 1
    assert message is not None
    assert message.startswith("unexpected BrokenPipeError at test_unexpected_errors.py:")


def test_a_reader_that_closed_stdout_ends_the_command_quietly(tmp_path: Path) -> None:
    reading, writing = os.pipe()
    os.close(reading)  # `chalk ... | head -1` once head has its line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "chalk.cli", "init", str(tmp_path / "fraud")],
            stdout=writing,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        os.close(writing)

    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell reports `yes | head -1`'s yes
