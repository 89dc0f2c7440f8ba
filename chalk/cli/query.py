"""``chalk query``: one online query against the active feature graph in the catalog."""

from __future__ import annotations

import argparse
import json
from typing import Any

from chalk.catalog import open_catalog
from chalk.catalog.config import find_project
from chalk.catalog.errors import NotFoundError, ValidationError
from chalk.cli.output import add_output_flag, emit, emit_table
from chalk.engine.calls import ModelCaller
from chalk.engine.query import input_table, run_query
from chalk.features.graph import FeatureGraph

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``chalk query``."""
    parser = subparsers.add_parser(
        "query", help="compute features for one row, with the graph `chalk apply` stored"
    )
    parser.add_argument(
        "--in",
        dest="inputs",
        action="append",
        required=True,
        metavar="FEATURE=VALUE",
        help='an input value (repeatable), e.g. --in document.text="Alice met Bob"',
    )
    parser.add_argument(
        "--out",
        dest="outputs",
        action="append",
        required=True,
        metavar="FEATURE",
        help="a feature to compute (repeatable), e.g. --out document.entities",
    )
    add_output_flag(parser)
    parser.set_defaults(run=_query)


def _query(args: argparse.Namespace) -> int:
    catalog = open_catalog(find_project())
    active = catalog.graphs.active()
    if active is None:
        raise NotFoundError(
            "no feature graph has been applied to this project: run `chalk apply` first"
        )
    graph = FeatureGraph.from_json(active.graph)
    values = dict(_pair(text) for text in args.inputs)
    with ModelCaller(catalog) as caller:
        table = run_query(
            graph, input_table(graph, values, online=True), args.outputs, model_caller=caller
        )
    row = {name: table.column(name)[0].as_py() for name in table.column_names}
    if args.output_format == "table":
        emit_table(["FEATURE", "VALUE"], [{"FEATURE": k, "VALUE": v} for k, v in row.items()])
    else:
        emit(row, args.output_format)
    return 0


def _pair(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValidationError(
            f"--in takes FEATURE=VALUE: expected e.g. --in document.id=1, got {text!r}"
        )
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw  # plain text needs no quotes: --in document.text=hello
    return name.strip(), value
