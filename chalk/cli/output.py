"""Formats command results: ``-o json``, ``-o yaml``, or a human table (rich).

Our documents print with camelCase keys, as kubectl prints objects, the stored ``spec`` included;
maps keyed by the user's own names (env, tags, metadata, labels) print as written.
"""

from __future__ import annotations

import argparse
import json
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
    from rich.console import Console  # noqa: PLC0415 - loaded when used
    from rich.table import Table  # noqa: PLC0415

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
