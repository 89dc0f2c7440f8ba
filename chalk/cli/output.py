"""Formats command results: ``-o json``, ``-o yaml``, or a human table (rich on a terminal).

Our documents print with camelCase keys, as kubectl prints objects, the stored ``spec`` included;
maps keyed by the user's own names (env, tags, metadata, labels) print as written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

# Every parser imports this module for -o: YAML and rich are imported when a command prints.

__all__ = ["add_output_flag", "camel_case_keys", "emit", "emit_as_given", "emit_table"]

# Keys whose values are maps of the user's names: their keys are data, never restyled.
_KEYED_BY_USER: Final = frozenset({"env", "tags", "metadata", "labels"})


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


def emit(document: Any, fmt: str) -> None:
    """Print one of our documents (JSON-able) as JSON or YAML, its keys in camelCase.

    Examples
    --------
    >>> emit({"image_digest": None, "scaling": {"min_replicas": 1}}, "yaml")
    imageDigest: null
    scaling:
      minReplicas: 1
    """
    emit_as_given(camel_case_keys(document), fmt)


def emit_as_given(data: Any, fmt: str) -> None:
    """Print ``data`` as JSON or YAML with its keys as they are: feature names in a query's
    row, or Kubernetes objects (already in Kubernetes' own style)."""
    if fmt == "yaml":
        import yaml  # noqa: PLC0415 - loaded when used: parsers import this module

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Print rows as a table whose headers are ``columns`` (keys into each row)."""
    cells = [
        list(columns),
        *(["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows),
    ]
    plain = None if _maybe_terminal() else _plain_table(cells)
    if plain is not None:
        sys.stdout.write(plain)
        return
    from rich.console import Console  # noqa: PLC0415 - loaded when used
    from rich.table import Table  # noqa: PLC0415

    table = Table(box=None, pad_edge=False, header_style="bold")
    for index, column in enumerate(columns):
        # Only the last column wraps on a narrow terminal; the others keep their width.
        table.add_column(column, no_wrap=index < len(columns) - 1)
    for row in cells[1:]:
        table.add_row(*row)
    # Piped output is read by scripts and people alike: never wrap it at 80 columns.
    # Cells are data, never markup: "[/srv/model.bin]" or "timestamp[us]" print as written.
    console = Console(markup=False, emoji=False, highlight=False)
    if not console.is_terminal:
        console = Console(width=_PIPED_WIDTH, markup=False, emoji=False, highlight=False)
    console.print(table)


# Piped, a table of printable ASCII at most this wide is laid out by _plain_table exactly as rich
# lays it out (tests/cli/test_output.py compares them), without importing rich: a fifth of
# the time `chalk scaling-group list` spends past SQLAlchemy.
_PIPED_WIDTH: Final = 1_000


def _maybe_terminal() -> bool:
    """Whether rich might take stdout for a terminal: it is one, or the environment may say to
    treat it as one (rich reads TTY_COMPATIBLE and FORCE_COLOR)."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return True
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return isatty is None or bool(isatty())
    except ValueError:  # a closed stream: rich decides, and says so
        return True


def _plain_table(cells: Sequence[Sequence[str]]) -> str | None:
    """``cells`` (the header row first) in columns two spaces apart, each padded to its
    width; None when a cell is not printable ASCII or the table is wider than a pipe's."""
    if not cells[0] or not all(cell.isascii() and cell.isprintable() for r in cells for cell in r):
        return None
    widths = [max(len(row[index]) for row in cells) for index in range(len(cells[0]))]
    if sum(widths) + 2 * (len(widths) - 1) > _PIPED_WIDTH:
        return None
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + "\n"
        for row in cells
    )


def camel_case_keys(data: Any) -> Any:
    """``data`` with every mapping key in camelCase, except inside maps of the user's names.

    Examples
    --------
    >>> camel_case_keys({"port_from_image": True, "env": {"MODEL_NAME": "small"}})
    {'portFromImage': True, 'env': {'MODEL_NAME': 'small'}}
    """
    if isinstance(data, Mapping):
        return {
            _camel_case(key): value if key in _KEYED_BY_USER else camel_case_keys(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [camel_case_keys(item) for item in data]
    return data


def _camel_case(key: object) -> object:
    if not isinstance(key, str):
        return key
    first, *rest = key.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)
