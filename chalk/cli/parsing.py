"""The ``chalk`` command's argument parser class: a flag that takes one value is an error when
given twice, never "last wins" (issue 24), and a number flag's bad value gets our wording, not
argparse's "invalid int value". ``chalk.cli.build_parser`` builds every parser and subparser
with it; repeatable flags say so with ``action="append"``.
"""

from __future__ import annotations

import argparse
from typing import Any

from chalk.common.arguments import register_number_types

__all__ = ["ChalkArgumentParser"]

# Where a parse keeps the flags it has stored, on its namespace (no command reads it).
_GIVEN = "_chalk_flags_given"


class _StoreOnce(argparse._StoreAction):
    """``store``, refusing a second value for the same flag."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given: dict[str, Any] = namespace.__dict__.setdefault(_GIVEN, {})
        if option_string is not None and self.dest in given:
            raise argparse.ArgumentError(
                self,
                f"given twice ({given[self.dest]!r} and {values!r}): expected it once; give "
                f"the value you mean alone",
            )
        given[self.dest] = values
        setattr(namespace, self.dest, values)


class ChalkArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose plain flags may be given once, and whose ``type=int``
    and ``type=float`` flags say what they expected of a bad value.

    Examples
    --------
    >>> parser = ChalkArgumentParser(prog="chalk", exit_on_error=False)
    >>> _ = parser.add_argument("--replicas", type=int)
    >>> parser.parse_args(["--replicas", "2"]).replicas
    2
    >>> parser.parse_args(["--replicas", "2", "--replicas", "3"])
    Traceback (most recent call last):
    ...
    argparse.ArgumentError: argument --replicas: given twice (2 and 3): expected it once; give \
the value you mean alone
    >>> parser.parse_args(["--replicas", "two"])
    Traceback (most recent call last):
    ...
    argparse.ArgumentError: argument --replicas: expected a whole number, got 'two'
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        register_number_types(self)
