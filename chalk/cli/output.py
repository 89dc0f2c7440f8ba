"""Formats command results: ``-o json``, ``-o yaml``, or a human table (rich)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

__all__ = ["add_output_flag", "emit", "emit_table"]


def add_output_flag(parser: argparse.ArgumentParser, *, default: str = "table") -> None:
    """``-o/--output`` with the formats every listing command offers."""
    parser.add_argument(
        "-o",
        "--output-format",
        dest="output_format",
        choices=["table", "json", "yaml"],
        default=default,
        help=f"output format (default {default})",
    )


def emit(data: Any, fmt: str) -> None:
    """Print ``data`` (JSON-able) as JSON or YAML."""
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Print rows as a table whose headers are ``columns`` (keys into each row)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for index, column in enumerate(columns):
        # Only the last column wraps on a narrow terminal; the others keep their width.
        table.add_column(column, no_wrap=index < len(columns) - 1)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    # Piped output is read by scripts and people alike: never wrap it at 80 columns.
    # Cells are data, never markup: "[/srv/model.bin]" or "timestamp[us]" print as written.
    console = Console(markup=False, emoji=False, highlight=False)
    if not console.is_terminal:
        console = Console(width=1_000, markup=False, emoji=False, highlight=False)
    console.print(table)
