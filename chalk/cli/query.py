"""``chalk query``: one online query against the active feature graph in the catalog."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from chalk.cli.output import add_output_flag, emit_as_given, emit_table

# The catalog, pyarrow and the engine are imported where the query runs, so that
# `chalk query --help` loads none of them (see chalk.cli's docstring).
if TYPE_CHECKING:
    import pyarrow as pa

    from chalk.features.graph import FeatureGraph

__all__ = ["add_no_cache_flag", "register"]


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
        help=(
            'an input value (repeatable), e.g. --in document.text="Alice met Bob": text as '
            "given for string features, ISO 8601 for timestamps and dates, JSON otherwise"
        ),
    )
    parser.add_argument(
        "--out",
        dest="outputs",
        action="append",
        required=True,
        metavar="FEATURE",
        help="a feature to compute (repeatable), e.g. --out document.entities",
    )
    add_no_cache_flag(parser)
    add_output_flag(parser)
    parser.set_defaults(run=_query)


def add_no_cache_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-cache`` (``args.use_cache`` False): the query neither reads nor fills the answer
    cache, as ``use_cache=False`` in the API and HTTP."""
    parser.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="neither read nor fill the answer cache: every model call of a feature with "
        "max_staleness goes to the model",
    )


def _query(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.catalog.errors import NotFoundError, ValidationError  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.engine.cache import open_answer_store  # noqa: PLC0415
    from chalk.engine.calls import ModelCaller  # noqa: PLC0415
    from chalk.engine.query import input_table, run_query  # noqa: PLC0415
    from chalk.features.graph import FeatureGraph  # noqa: PLC0415

    project = find_project()
    catalog = open_catalog(project, create=False)
    active = catalog.graphs.active()
    if active is None:
        raise NotFoundError(
            "no feature graph has been applied to this project: run `chalk apply` first"
        )
    graph = FeatureGraph.from_json(active.graph)
    values: dict[str, Any] = {}
    for text in args.inputs:
        name, value = _pair(text, graph)
        if name in values:
            raise ValidationError(
                f"--in {name} is given twice ({name}={values[name]!r} and {name}={value!r}): "
                f"expected one value per feature"
            )
        values[name] = value
    answers = open_answer_store(project.config.online_store)
    with ModelCaller(catalog, answers=answers) as caller:
        table = run_query(
            graph,
            input_table(graph, values, online=True),
            args.outputs,
            model_caller=caller,
            use_cache=args.use_cache,
        )
    row = {name: table.column(name)[0].as_py() for name in table.column_names}
    if args.output_format == "table":
        emit_table(["FEATURE", "VALUE"], [{"FEATURE": k, "VALUE": v} for k, v in row.items()])
    else:
        emit_as_given(row, args.output_format)
    return 0


def _pair(text: str, graph: FeatureGraph) -> tuple[str, Any]:
    from chalk.catalog.errors import ValidationError  # noqa: PLC0415
    from chalk.features.graph import GraphError  # noqa: PLC0415

    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValidationError(
            f"--in takes FEATURE=VALUE: expected e.g. --in document.id=1, got {text!r}"
        )
    try:
        arrow_type = graph.feature(name).arrow_type
    except GraphError:
        arrow_type = None  # the query names the unknown feature, with suggestions
    return name, _value(name, raw, arrow_type)


def _value(name: str, raw: str, arrow_type: pa.DataType | None) -> Any:
    """The value of ``--in name=raw`` read as the feature's type asks, by the rules the feature
    server reads JSON with (``chalk.features.wire``): no fraction for an int, no boolean for a
    number, no number out of its type's range, no infinity."""
    import pyarrow as pa  # noqa: PLC0415

    from chalk.features.wire import value_from_json  # noqa: PLC0415

    if arrow_type is None:
        return _json_or_text(raw)  # the query names the unknown feature, with suggestions
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        # Text as given (12345, true and null are text too); a JSON string literal is
        # unquoted, so "..." keeps working.
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            return json.loads(raw)
        return raw
    if (
        pa.types.is_timestamp(arrow_type)
        or pa.types.is_date(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
    ):
        value: Any = raw  # ISO 8601 text, or base64 for bytes
    else:
        value = _json_or_text(raw)
    return value_from_json(value, arrow_type, what=f"--in {name}")


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # the query then says how it does not fit the feature's type
