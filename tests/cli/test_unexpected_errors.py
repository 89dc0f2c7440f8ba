"""An error no part meant for the user still reaches them as one line, never a traceback."""

from __future__ import annotations

import argparse

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
