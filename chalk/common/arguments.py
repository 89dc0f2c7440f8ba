"""Number flags that say what they expected ("expected a whole number, got '1.5'") instead of
argparse's "invalid int value": ``register_number_types``, for the ``chalk`` and
``chalk-remote-call`` parsers."""

from __future__ import annotations

import argparse

__all__ = ["register_number_types"]


def register_number_types(parser: argparse.ArgumentParser) -> None:
    """Make ``parser``'s ``type=int`` and ``type=float`` flags use our wording (argparse looks a
    flag's ``type`` up in the parser's registry before calling it).

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
    >>> register_number_types(parser)
    >>> _ = parser.add_argument("--port", type=int)
    >>> parser.parse_args(["--port", "80"]).port
    80
    >>> parser.parse_args(["--port", "http"])
    Traceback (most recent call last):
    ...
    argparse.ArgumentError: argument --port: expected a whole number, got 'http'
    """
    parser.register("type", int, _whole_number)
    parser.register("type", float, _number)


def _whole_number(text: str) -> int:
    """A ``type=int`` flag's value.

    >>> _whole_number(" 3 ")
    3
    >>> _whole_number("1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a whole number, got '1.5'
    """
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    """A ``type=float`` flag's value (nan and inf pass: each flag's bounds name its range).

    >>> _number("0.5")
    0.5
    >>> _number("5ms")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a number, got '5ms'
    """
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
