"""``ChalkClient(api_server=...)``'s queries: a thin HTTP client of ``chalk serve``.

Online: each input as JSON by its feature's type. Offline: the rows cut into Arrow IPC blocks
of at most the server's body limit, several in flight at once, answers reassembled in order.
Either way with the fingerprint of every feature named that this process defines (the server
checks the other names); the server's JSON errors come back as the exceptions an in-process
query raises.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

import pyarrow as pa

from chalk.catalog.errors import NotFoundError, UnknownGroupError
from chalk.common.errors import ChalkError
from chalk.engine.errors import EngineError, ModelCallError
from chalk.engine.plan import PlanError
from chalk.engine.query import QueryError, feature_name
from chalk.engine.recorder import GroupCalls
from chalk.features import FeatureGraph
from chalk.features.wire import (
    ARROW_STREAM,
    FINGERPRINTS_HEADER,
    MAX_BODY_HEADER,
    MODEL_CALLS_HEADER,
    feature_fingerprint,
    value_from_json,
    value_to_json,
)

__all__ = [
    "API_SERVER_ENV",
    "API_TOKEN_ENV",
    "ApiServerClient",
    "ApiServerError",
    "FeatureMismatchError",
    "cut_blocks",
    "offline_table",
]

API_SERVER_ENV: Final = "CHALK_API_SERVER"
API_TOKEN_ENV: Final = "CHALK_API_TOKEN"
_TIMEOUT_S: Final = 60.0
# An offline block's most bytes (a server whose --max-body-bytes is lower says so in a 413),
# and how many blocks travel at once (each a request on its own keep-alive connection: some
# being answered while the next ones are sent and computed). Small blocks, many in flight:
# a block's round trip is mostly waiting (bench/README.md: 8 x 2 MiB beat 4 x 4 MiB by a
# third at 10M rows), and a million rows already fill the pipeline, so memory at a million
# rows is what it is at any larger size.
DEFAULT_BLOCK_BYTES: Final = 2 << 20
DEFAULT_BLOCKS_IN_FLIGHT: Final = 8
# Blocks are cut to this share of the limit by the rows' average size, then halved while
# their encoding passes it.
_BLOCK_FILL: Final = 0.85
# A block whose connection failed is sent again this many times, after these pauses (a
# server replica restarting): offline blocks only read, so sending one twice is harmless.
_BLOCK_RETRY_PAUSES_S: Final = (0.2, 1.0, 3.0)


# One block's answer: its rows, and what its model calls did per scaling group.
_Answer = tuple[pa.Table, dict[str, GroupCalls]]


class ApiServerError(ChalkError, RuntimeError):
    """The feature server answered an error no in-process query raises (auth, limits, ...)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class FeatureMismatchError(QueryError):
    """The server's applied graph lacks a feature the query names, or defines it differently."""


# The server's error codes as the exceptions the same failure raises in process.
_ERRORS: Final[dict[str, type[Exception]]] = {
    "INVALID_QUERY": QueryError,
    "INVALID_TYPE": QueryError,
    "INVALID_VALUE": QueryError,
    "UNKNOWN_FEATURE": QueryError,
    "MISSING_PRIMARY_KEY": QueryError,
    "INVALID_ARROW": QueryError,
    "INVALID_PLAN": PlanError,
    "ENGINE_ERROR": EngineError,
    "FEATURE_MISMATCH": FeatureMismatchError,
    "NO_GRAPH": NotFoundError,
    "UNKNOWN_GROUP": UnknownGroupError,
    "MODEL_HANDLER_ERROR": ModelCallError,
    "MODEL_UNAVAILABLE": ModelCallError,
    "MODEL_SIGNATURE_MISMATCH": ModelCallError,
    "MODEL_ERROR": ModelCallError,
}


class ApiServerClient:
    """Online queries sent to ``chalk serve`` at ``url`` (one keep-alive connection pool).

    ``token`` (default: ``$CHALK_API_TOKEN``) is sent as a bearer token. Thread-safe.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        blocks_in_flight: int = DEFAULT_BLOCKS_IN_FLIGHT,
    ) -> None:
        try:
            import httpx  # noqa: PLC0415 (an extra: scalegroup[server])
        except ImportError:
            raise ImportError(
                "ChalkClient(api_server=...) needs httpx: pip install 'scalegroup[server]'"
            ) from None
        token = token or os.environ.get(API_TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        limits = httpx.Limits(max_keepalive_connections=max(blocks_in_flight, 20))
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=_TIMEOUT_S, limits=limits
        )
        self._transport_errors = httpx.TransportError
        # A block whose request timed out is not sent again: the server was computing it.
        self._timeouts = httpx.TimeoutException
        self._block_bytes = block_bytes
        self._blocks_in_flight = blocks_in_flight
        self._lock = threading.Lock()

    def query(
        self,
        graph: FeatureGraph,
        inputs: Mapping[Any, Any],
        outputs: Sequence[Any],
        *,
        use_cache: bool = True,
    ) -> dict[str, Any]:
        """One row of ``outputs`` for ``inputs``, as plain Python values by fqn; with
        ``use_cache=False`` the server neither reads nor fills its answer cache.

        ``graph`` holds the features this process defines; a feature it lacks travels by its
        name alone (its value as JSON by its Python type) and comes back as its JSON value.
        """
        row = {}
        for key, value in inputs.items():
            fqn = feature_name(key)
            known = graph.features.get(fqn)
            row[fqn] = value_to_json(value, known.arrow_type if known is not None else None)
        wanted = [feature_name(output) for output in outputs]
        fingerprints = {
            fqn: feature_fingerprint(graph.features[fqn])
            for fqn in [*row, *wanted]
            if fqn in graph.features
        }
        body: dict[str, Any] = {"inputs": row, "outputs": wanted, "fingerprints": fingerprints}
        if not use_cache:
            body["use_cache"] = False
        try:
            reply = self._http.post("/v1/query/online", json=body)
        except self._transport_errors as error:
            raise self._unreachable(error) from None
        answer = _json(reply)
        if reply.status_code != 200:
            raise _error(self.url, reply.status_code, answer)
        return {item["field"]: _value(graph, item) for item in answer["data"]}

    def offline_blocks(
        self,
        graph: FeatureGraph,
        tables: Iterable[pa.Table],
        outputs: Sequence[Any],
        *,
        model_calls: dict[str, GroupCalls] | None = None,
        max_rows: int | None = None,
        use_cache: bool = True,
    ) -> Iterator[pa.Table]:
        """``outputs`` for the rows of ``tables`` (columns named by fqn), in their order.

        The rows are cut into blocks of at most the server's body limit, and at most
        ``blocks_in_flight`` blocks are sent and not yet handed back at once, so memory stays
        bounded however many rows ``tables`` yields. What the model calls did is added up
        into ``model_calls``. ``max_rows`` bounds a block's rows too. Closing the iterator
        early cancels the blocks not yet sent. ``use_cache=False`` (``?use_cache=false``): the
        server neither reads nor fills its answer cache.
        """
        wanted = [feature_name(output) for output in outputs]
        params = {"output": wanted}
        if not use_cache:
            params["use_cache"] = ["false"]
        pending: collections.deque[Future[_Answer]] = collections.deque()
        pool = ThreadPoolExecutor(self._blocks_in_flight, thread_name_prefix="chalk-offline")
        headers: dict[str, str] | None = None
        try:
            for block in cut_blocks(tables, self._block_target, max_rows=max_rows):
                if headers is None:
                    headers = self._offline_headers(graph, [*block.column_names, *wanted])
                if len(pending) >= self._blocks_in_flight:
                    yield _taken(pending.popleft(), model_calls)
                pending.append(pool.submit(self._send_block, block, params, headers))
            while pending:
                yield _taken(pending.popleft(), model_calls)
        finally:
            for future in pending:
                future.cancel()
            # Not waiting: on Ctrl-C the blocks being answered finish on their threads.
            pool.shutdown(wait=False, cancel_futures=True)

    def _block_target(self) -> int:
        with self._lock:
            return int(self._block_bytes * _BLOCK_FILL)

    def _offline_headers(self, graph: FeatureGraph, names: Sequence[str]) -> dict[str, str]:
        fingerprints = {
            fqn: feature_fingerprint(graph.features[fqn]) for fqn in names if fqn in graph.features
        }
        return {
            "content-type": ARROW_STREAM,
            FINGERPRINTS_HEADER: json.dumps(fingerprints, separators=(",", ":")),
        }

    def _send_block(
        self, block: pa.Table, params: dict[str, list[str]], headers: dict[str, str]
    ) -> _Answer:
        """One block's answer, halving the block while it is over the server's limit (the
        halves' answers concatenated), and sending it again when its connection failed."""
        body = _encoded(block).to_pybytes()
        with self._lock:
            limit = self._block_bytes
        if len(body) > limit and block.num_rows > 1:
            return self._halves(block, params, headers)
        for pause_s in (*_BLOCK_RETRY_PAUSES_S, None):
            try:
                reply, answer = self._post_block(body, params, headers)
                break
            except self._transport_errors as error:
                if pause_s is None or isinstance(error, self._timeouts):
                    raise self._unreachable(error) from None
                time.sleep(pause_s)
        if reply.status_code == 413 and MAX_BODY_HEADER in reply.headers and block.num_rows > 1:
            with self._lock:
                self._block_bytes = min(self._block_bytes, int(reply.headers[MAX_BODY_HEADER]))
            return self._halves(block, params, headers)
        if reply.status_code != 200:
            raise _error(self.url, reply.status_code, _json(reply))
        calls = _calls_from_json(reply.headers.get(MODEL_CALLS_HEADER) or "{}")
        with pa.ipc.open_stream(answer) as reader:
            return reader.read_all(), calls

    def _post_block(
        self, body: bytes, params: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[Any, bytes]:
        """The reply to one block, and its body (read for a 200, kept in the reply else).

        httpx's response and its stream refer to each other, so a response lives until the
        garbage collector runs, with its request: the block's bytes travel as an iterator and
        the answer is read as a stream, so neither waits there (memory would grow with the
        input, block after block, between collections)."""
        sized = {**headers, "content-length": str(len(body))}
        with self._http.stream(
            "POST", "/v1/query/offline", content=iter((body,)), params=params, headers=sized
        ) as reply:
            if reply.status_code != 200:
                reply.read()
                return reply, b""
            return reply, b"".join(reply.iter_bytes())

    def _halves(
        self, block: pa.Table, params: dict[str, list[str]], headers: dict[str, str]
    ) -> _Answer:
        middle = block.num_rows // 2
        first, first_calls = self._send_block(block.slice(0, middle), params, headers)
        second, second_calls = self._send_block(block.slice(middle), params, headers)
        _add_calls(first_calls, second_calls)
        return pa.concat_tables([first, second]), first_calls

    def _unreachable(self, error: Exception) -> ApiServerError:
        return ApiServerError(
            f"cannot reach the feature server at {self.url}: {error}: expected `chalk "
            f"serve` answering there ({API_SERVER_ENV} or ChalkClient(api_server=...))",
            status=0,
            code="UNREACHABLE",
        )

    def close(self) -> None:
        self._http.close()


def offline_table(graph: FeatureGraph, inputs: Any) -> pa.Table:
    """An offline query's inputs (a dict of lists, polars or Arrow) as an Arrow table named by
    fqn for the server: a feature this process defines typed as defined, another one as its
    values are (the server casts it, or says how it does not fit)."""
    if isinstance(inputs, pa.Table):
        return inputs.rename_columns([feature_name(name) for name in inputs.column_names])
    if hasattr(inputs, "to_arrow"):  # a polars DataFrame (polars loads only if used)
        return offline_table(graph, inputs.to_arrow())
    if not isinstance(inputs, Mapping) or not inputs:
        raise QueryError(
            "a query needs inputs: expected a dict such as {Document.id: [1, 2]}, a polars "
            "DataFrame or an Arrow table"
        )
    columns = {}
    for key, values in inputs.items():
        fqn = feature_name(key)
        known = graph.features.get(fqn)
        try:
            columns[fqn] = pa.array(values, known.arrow_type if known is not None else None)
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise QueryError(f"{fqn}: the input does not fit its type: {error}") from None
    return pa.table(columns)


def cut_blocks(
    tables: Iterable[pa.Table], target_bytes: Callable[[], int], *, max_rows: int | None = None
) -> Iterator[pa.Table]:
    """The rows of ``tables``, in order, in blocks of about ``target_bytes()`` bytes (by the
    rows' average size; small tables are gathered, large ones sliced) and at most ``max_rows``
    rows. No rows at all make one empty block: its answer still says which columns come back.

    Examples
    --------
    >>> tables = [pa.table({"x": list(range(5))}), pa.table({"x": [5, 6]})]
    >>> [block.num_rows for block in cut_blocks(tables, lambda: 1 << 20, max_rows=3)]
    [3, 3, 1]
    """
    held: list[pa.Table] = []
    held_rows = 0
    empty: pa.Table | None = None
    cut_any = False
    for table in tables:
        if table.num_rows == 0:
            empty = table if empty is None else empty
            continue
        rows_per_block = max(1, int(target_bytes() * table.num_rows / max(table.nbytes, 1)))
        if max_rows is not None:
            rows_per_block = min(rows_per_block, max_rows)
        start = 0
        while start < table.num_rows:
            piece = table.slice(start, max(1, rows_per_block - held_rows))
            start += piece.num_rows
            held.append(piece)
            held_rows += piece.num_rows
            if held_rows >= rows_per_block:
                cut_any = True
                yield _joined(held)
                held, held_rows = [], 0
    if held:
        yield _joined(held)
    elif not cut_any and empty is not None:
        yield empty


def _joined(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    schema = tables[0].schema
    return pa.concat_tables([table.cast(schema) for table in tables])


def _encoded(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _taken(future: Future[_Answer], model_calls: dict[str, GroupCalls] | None) -> pa.Table:
    table, calls = future.result()
    if model_calls is not None:
        _add_calls(model_calls, calls)
    return table


def _calls_from_json(text: str) -> dict[str, GroupCalls]:
    """A block's model calls as the server's header gives them."""
    return {name: GroupCalls.from_json(name, found) for name, found in json.loads(text).items()}


def _add_calls(into: dict[str, GroupCalls], calls: Mapping[str, GroupCalls]) -> None:
    """Add one block's model calls to ``into``."""
    for name, found in calls.items():
        before = into.get(name)
        into[name] = found if before is None else before.plus(found)


def _value(graph: FeatureGraph, item: Mapping[str, Any]) -> Any:
    known = graph.features.get(item["field"])
    if known is None:
        return item["value"]
    return value_from_json(item["value"], known.arrow_type, what=item["field"])


def _json(reply: Any) -> Any:
    try:
        return reply.json()
    except ValueError:
        return {"errors": [{"code": "NOT_JSON", "message": reply.text[:200]}]}


def _error(url: str, status: int, answer: Any) -> Exception:
    errors = answer.get("errors") if isinstance(answer, dict) else None
    first = errors[0] if errors else {"code": "UNKNOWN", "message": str(answer)[:200]}
    code, message = str(first.get("code")), str(first.get("message"))
    kind = _ERRORS.get(code)
    if kind is not None:
        return kind(message)
    return ApiServerError(f"{url} answered {status}: {message}", status=status, code=code)
