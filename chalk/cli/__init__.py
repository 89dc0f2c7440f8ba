"""The ``chalk`` command: parses arguments, calls the packages, formats output.

Subcommands arrive with the parts they drive (catalog, scaling groups, apply, query).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chalk import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser of ``chalk``."""
    parser = argparse.ArgumentParser(
        prog="chalk", description="Deploy ML models as scaling groups and call them from features."
    )
    parser.add_argument("--version", action="version", version=f"scalegroup {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``chalk`` console script."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        sys.exit(2)
