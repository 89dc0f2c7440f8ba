"""Online queries over HTTP: JSON rows in, the engine's ``run_query`` on the applied graph,
JSON results out. A small request runs on the server's loop, its model calls awaited; a
larger one on a query thread. Either way through the process's one ``ModelCaller``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from chalk.engine.calls import ModelCaller
from chalk.engine.query import QueryError, input_table, run_query, run_query_async
from chalk.engine.recorder import CallRecorder, recording
from chalk.features import FeatureGraph
from chalk.features.wire import feature_fingerprint, value_from_json, value_to_json
from chalk.server.errors import ApiError
from chalk.server.graphs import LoadedGraph
from chalk.server.models import OnlineQueryRequest

__all__ = ["QueryOutcome", "check_fingerprints", "run_online_query", "run_online_query_async"]


class QueryOutcome:
    """A query's JSON answer and what its model calls did (for the metrics)."""

    __slots__ = ("body", "model_calls")

    def __init__(self, body: dict[str, Any], model_calls: CallRecorder) -> None:
        self.body = body
        self.model_calls = model_calls


def run_online_query(
    loaded: LoadedGraph,
    request: OnlineQueryRequest,
    caller: ModelCaller,
    recorder: CallRecorder | None = None,
) -> QueryOutcome:
    """Answer ``request`` on ``loaded``: check fingerprints and keys, decode, run, encode;
    its model calls recorded in ``recorder`` (a new one by default)."""
    started = time.perf_counter()
    table = _checked_inputs(loaded, request)
    recorder = CallRecorder() if recorder is None else recorder
    with recording(recorder):
        result = run_query(
            loaded.graph,
            table,
            request.outputs,
            model_caller=caller,
            use_cache=request.use_cache,
        )
    return _outcome(loaded, request, result, recorder, started)


async def run_online_query_async(
    loaded: LoadedGraph,
    request: OnlineQueryRequest,
    caller: ModelCaller,
    recorder: CallRecorder | None = None,
) -> QueryOutcome:
    """``run_online_query`` on the running loop (``caller``'s), its model calls awaited: for a
    small request, which then needs no query thread."""
    started = time.perf_counter()
    table = _checked_inputs(loaded, request)
    recorder = CallRecorder() if recorder is None else recorder
    with recording(recorder):
        result = await run_query_async(
            loaded.graph,
            table,
            request.outputs,
            model_caller=caller,
            use_cache=request.use_cache,
        )
    return _outcome(loaded, request, result, recorder, started)


def _checked_inputs(loaded: LoadedGraph, request: OnlineQueryRequest) -> pa.Table:
    rows = request.rows if request.rows is not None else [request.inputs or {}]
    check_fingerprints(loaded, request.fingerprints or {})
    table = _inputs(loaded.graph, rows)
    _check_keys(loaded.graph, table, request.outputs)
    return table


def _outcome(
    loaded: LoadedGraph,
    request: OnlineQueryRequest,
    result: pa.Table,
    recorder: CallRecorder,
    started: float,
) -> QueryOutcome:
    encoded = _rows(loaded.graph, result)
    meta: dict[str, Any] = {
        "query_id": uuid.uuid4().hex,
        "execution_duration_s": time.perf_counter() - started,
        "graph_version": loaded.version,
    }
    cached = _answer_cache(recorder)
    if cached:
        meta["answer_cache"] = cached
    body = {"data": encoded[0] if request.rows is None else encoded, "errors": [], "meta": meta}
    return QueryOutcome(body, recorder)


def _answer_cache(recorder: CallRecorder) -> dict[str, dict[str, int]]:
    """Per scaling group whose answers the query looked up: its cache hits, misses, errors,
    the bytes its answers take in the store after the query, and the store's evictions of its
    answers while the query ran."""
    return {
        group: {
            "hits": calls.cache_hits,
            "misses": calls.cache_misses,
            "errors": calls.cache_errors,
            "bytes": calls.cache_bytes,
            "evictions": calls.cache_evictions,
        }
        for group, calls in recorder.groups().items()
        if calls.cache_hits or calls.cache_misses or calls.cache_errors
    }


def check_fingerprints(loaded: LoadedGraph, fingerprints: Mapping[str, str]) -> None:
    problems = []
    for fqn, fingerprint in fingerprints.items():
        feature = loaded.graph.features.get(fqn)
        if feature is None:
            problems.append((fqn, f"the server's graph has no feature {fqn!r}"))
        elif feature_fingerprint(feature) != fingerprint:
            problems.append((fqn, f"{fqn} is defined differently on the server"))
    if problems:
        raise ApiError(
            409,
            "FEATURE_MISMATCH",
            f"{'; '.join(text for _, text in problems)} (applied graph version "
            f"{loaded.version}): expected the same feature definitions on both sides; run "
            f"`chalk apply` with your features, or update them to the applied ones",
            feature=problems[0][0],
        )


def _inputs(graph: FeatureGraph, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    names = list(rows[0])
    if not names:
        raise ApiError(400, "INVALID_QUERY", "the query has no inputs: expected features")
    values: dict[str, list[Any]] = {}
    for fqn in names:
        feature = graph.features.get(fqn)
        if feature is None:
            raise ApiError(400, "UNKNOWN_FEATURE", _unknown(graph, fqn, "input"), feature=fqn)
        values[fqn] = [
            _value(row, index, fqn, feature.arrow_type) for index, row in enumerate(rows)
        ]
    for index, row in enumerate(rows):
        extra = sorted(set(row) - set(names))
        if extra:
            raise ApiError(
                400,
                "INVALID_QUERY",
                f"row {index} has inputs the first row lacks ({', '.join(extra)}): expected "
                f"every row to give the same features",
                feature=extra[0],
            )
    columns = {}
    for fqn, column in values.items():
        try:
            columns[fqn] = input_table(graph, {fqn: column}, online=False).column(0)
        except QueryError as error:
            raise ApiError(400, "INVALID_TYPE", str(error), feature=fqn) from None
    return pa.table(columns)


def _value(row: Mapping[str, Any], index: int, fqn: str, arrow_type: pa.DataType) -> Any:
    if fqn not in row:
        raise ApiError(
            400,
            "INVALID_QUERY",
            f"row {index} lacks {fqn}: expected every row to give the same features",
            feature=fqn,
        )
    try:
        return value_from_json(row[fqn], arrow_type, what=fqn)
    except ValueError as error:
        raise ApiError(400, "INVALID_TYPE", str(error), feature=fqn) from None


def _check_keys(graph: FeatureGraph, table: pa.Table, outputs: Sequence[str]) -> None:
    """An online query is keyed: each output's class needs its primary key among the inputs,
    and a primary key given needs a value in every row."""
    inputs = table.column_names
    for fqn in inputs:
        column = table.column(fqn)
        if graph.features[fqn].primary and column.null_count:
            row = column.to_pylist().index(None)
            raise ApiError(
                400,
                "INVALID_VALUE",
                f"{fqn} is null in row {row}: expected a value, since it is the primary key "
                f"of its class",
                feature=fqn,
            )
    for fqn in outputs:
        feature = graph.features.get(fqn)
        if feature is None:
            raise ApiError(400, "UNKNOWN_FEATURE", _unknown(graph, fqn, "output"), feature=fqn)
        primary = graph.class_of(feature.namespace).primary_key
        if primary is not None and primary.fqn not in inputs:
            raise ApiError(
                400,
                "MISSING_PRIMARY_KEY",
                f"{fqn}: the query lacks the primary key {primary.fqn} of its class: expected "
                f"it among the inputs",
                feature=primary.fqn,
            )


def _unknown(graph: FeatureGraph, fqn: str, role: str) -> str:
    try:
        graph.feature(fqn)
    except ValueError as error:  # GraphError: names it, with the closest feature
        return f"unknown {role}: {error}"
    return f"unknown {role} {fqn!r}"


def _rows(graph: FeatureGraph, table: pa.Table) -> list[list[dict[str, Any]]]:
    columns = []
    for name in table.column_names:
        arrow_type = graph.features[name].arrow_type
        columns.append(
            (name, [value_to_json(value, arrow_type) for value in table.column(name).to_pylist()])
        )
    return [
        [{"field": name, "value": values[row], "error": None} for name, values in columns]
        for row in range(table.num_rows)
    ]
