"""The ``chalk`` command: parses arguments, calls the packages, formats output.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``run=<function(args) -> exit code>`` as a default. Library code never prints or exits; this
package does both. Exit codes: 0 success, 1 failure, 2 usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy import exc as sa_exc

from chalk import __version__
from chalk.cli.apply import register as register_apply
from chalk.cli.controller import register as register_controller
from chalk.cli.image import register as register_image
from chalk.cli.init import register as register_init
from chalk.cli.model import register as register_model
from chalk.cli.query import register as register_query
from chalk.cli.scaling_group import register as register_scaling_group
from chalk.cli.serve import register as register_serve
from chalk.common.errors import ChalkError

__all__ = ["build_parser", "main"]

_COMMANDS = (
    register_init,
    register_model,
    register_image,
    register_controller,
    register_scaling_group,
    register_query,
    register_apply,
    register_serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser of ``chalk`` with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="chalk", description="Deploy ML models as scaling groups and call them from features."
    )
    parser.add_argument("--version", action="version", version=f"scalegroup {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``chalk`` console script."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        sys.exit(2)
    try:
        code = run(args)
    except KeyboardInterrupt:
        # What was stored stays stored (every write is one transaction); no traceback.
        print("interrupted", file=sys.stderr)
        code = 130
    except ChalkError as error:
        # Every part raises its errors on purpose for the user: one line, never a traceback.
        print(f"error: {error}", file=sys.stderr)
        code = 1
    except sa_exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        print(f"error: the catalog failed: {cause}", file=sys.stderr)
        code = 1
    sys.exit(code)
