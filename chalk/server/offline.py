"""Offline queries over HTTP: one block of input rows as an Arrow IPC stream in, the engine's
``run_query`` on the applied graph, the output features as an Arrow IPC stream out (rows in
input order). ``chalk.server.app`` calls ``run_offline_block`` on a query thread."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import orjson
import pyarrow as pa

from chalk.engine.calls import ModelCaller
from chalk.engine.query import input_table, run_query
from chalk.engine.recorder import CallRecorder, recording
from chalk.features.wire import ARROW_STREAM, FINGERPRINTS_HEADER
from chalk.server.errors import ApiError
from chalk.server.graphs import LoadedGraph
from chalk.server.queries import check_fingerprints

__all__ = ["OfflineOutcome", "fingerprints_of", "run_offline_block", "use_cache_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class OfflineOutcome:
    """A block's answer (an Arrow IPC stream) and what its model calls did."""

    body: bytes
    model_calls: CallRecorder
    graph_version: int

    def model_calls_json(self) -> str:
        groups = {name: found.to_json() for name, found in self.model_calls.groups().items()}
        return orjson.dumps(groups).decode()


def fingerprints_of(header: str | None) -> dict[str, str]:
    """The fingerprints a request's header carries (none when it has no header).

    Examples
    --------
    >>> fingerprints_of('{"doc.n": "ab12"}'), fingerprints_of(None)
    ({'doc.n': 'ab12'}, {})
    """
    if not header:
        return {}
    try:
        found = orjson.loads(header)
    except orjson.JSONDecodeError:
        found = None
    if not isinstance(found, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in found.items()
    ):
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"the header {FINGERPRINTS_HEADER} is {header[:80]!r}: expected a JSON object "
            f"mapping feature names to their fingerprints",
        )
    return found


def use_cache_of(parameter: str | None) -> bool:
    """A request's ``?use_cache=`` (true when not given).

    Examples
    --------
    >>> use_cache_of(None), use_cache_of("false"), use_cache_of("true")
    (True, False, True)
    """
    if parameter is None:
        return True
    value = parameter.strip().lower()
    if value not in _BOOLEANS:
        raise ApiError(
            400,
            "INVALID_QUERY",
            f"use_cache={parameter!r} in the URL: expected true or false",
        )
    return _BOOLEANS[value]


# Only the words: "0", "no" or "off" would each need a rule to guess right.
_BOOLEANS = {"true": True, "false": False}


def run_offline_block(
    loaded: LoadedGraph,
    body: bytes,
    outputs: Sequence[str],
    fingerprints: Mapping[str, str],
    caller: ModelCaller,
    *,
    use_cache: bool = True,
    recorder: CallRecorder | None = None,
) -> OfflineOutcome:
    """Answer one block on ``loaded``: check fingerprints, read the rows, run, encode; with
    ``use_cache=False`` the answer cache is neither read nor filled. Its model calls are
    recorded in ``recorder`` (a new one by default)."""
    if not outputs:
        raise ApiError(
            400,
            "INVALID_QUERY",
            "the query has no outputs: expected ?output=<feature> (repeatable) in the URL",
        )
    check_fingerprints(loaded, fingerprints)
    table = input_table(loaded.graph, _read_block(body), online=False)
    recorder = CallRecorder() if recorder is None else recorder
    with recording(recorder):
        result = run_query(loaded.graph, table, outputs, model_caller=caller, use_cache=use_cache)
    return OfflineOutcome(_write_block(result), recorder, loaded.version)


def _read_block(body: bytes) -> pa.Table:
    try:
        with pa.ipc.open_stream(body) as reader:
            table = reader.read_all()
    except (pa.ArrowInvalid, OSError) as error:
        raise ApiError(
            400,
            "INVALID_ARROW",
            f"the body is not an Arrow IPC stream ({error}): expected the input rows as one "
            f"Arrow IPC stream ({ARROW_STREAM}), columns named by feature",
        ) from None
    if not table.column_names:
        raise ApiError(400, "INVALID_QUERY", "the block has no columns: expected input features")
    return table


def _write_block(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())
