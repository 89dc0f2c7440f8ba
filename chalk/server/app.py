"""The ASGI app of ``chalk serve``: routes, the JSON error shape, bearer auth, limits.

Handlers are thin: read and validate the body, run the library function (a small query on
this server's event loop, a larger one on a query thread; model calls on the loop), answer
JSON.
``create_app`` builds one app per worker process. Over 500 lines: the routes and their
shared per-worker state read best together; request models and the dashboard are elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from pydantic import BaseModel
from pydantic import ValidationError as BodyError
from sqlalchemy import exc as sa_exc
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from chalk.catalog import Catalog, open_catalog
from chalk.common.config import find_project
from chalk.engine.cache import DEFAULT_MAX_BYTES, open_answer_store
from chalk.engine.calls import ModelCaller
from chalk.engine.holds import aside
from chalk.engine.recorder import CallRecorder
from chalk.features.wire import (
    ARROW_STREAM,
    FINGERPRINTS_HEADER,
    GRAPH_VERSION_HEADER,
    MAX_BODY_HEADER,
    MODEL_CALLS_HEADER,
)
from chalk.server.auth import BearerAuth
from chalk.server.dashboard.pages import page_routes
from chalk.server.dashboard.routes import (
    DASHBOARD_ENDPOINTS,
    Dashboard,
    dashboard_routes,
    login_routes,
)
from chalk.server.errors import ApiError, api_error, on_graph
from chalk.server.graphs import ActiveGraph, LoadedGraph, NoGraphError
from chalk.server.invoke import Schemas, invoke
from chalk.server.metrics import ServerMetrics
from chalk.server.models import InvokeRequest, OnlineQueryRequest
from chalk.server.offline import OfflineOutcome, fingerprints_of, run_offline_block, use_cache_of
from chalk.server.openapi import openapi_document
from chalk.server.queries import QueryOutcome, run_online_query, run_online_query_async
from chalk.server.settings import ServerSettings

__all__ = ["app_from_env", "create_app", "log_to_stderr"]

_LOG = logging.getLogger("chalk.server")
M = TypeVar("M", bound=BaseModel)
# Queries running at once per worker on threads (each mostly waits on its model calls).
_QUERY_THREADS = 32
# A query of at most this many values (rows times inputs and outputs) runs on the event loop
# (see _query): it holds the loop for about 2 ms at most (bench/README.md), and saves the
# handing of the query to a thread and of each model call back to the loop.
_LOOP_VALUES = 512
# The metrics' endpoint label of each path served (invoke's path has the group in it).
_ENDPOINTS = {
    "/v1/query/online": "query_online",
    "/v1/query/offline": "query_offline",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/openapi.json": "openapi",
    **DASHBOARD_ENDPOINTS,
}
# Body types read as JSON: none given, JSON, and what curl -d sends by default.
# How often each worker sets its demand gauges (scrapes are seconds apart).
_DEMAND_GAUGES_EVERY_S = 0.5
_JSON_MEDIA_TYPES = frozenset({"", "application/json", "application/x-www-form-urlencoded"})


class _State:
    """What one worker's requests share: the catalog, the graph, one ModelCaller, metrics."""

    def __init__(self, settings: ServerSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        project = find_project(Path(settings.project_dir))
        self.catalog: Catalog = open_catalog(project)
        cache_bytes = settings.answer_cache_bytes
        self.answers = open_answer_store(
            project.config.online_store,
            max_bytes=DEFAULT_MAX_BYTES if cache_bytes is None else cache_bytes,
        )
        self.dashboard = Dashboard(project, self.catalog)
        self.graph = ActiveGraph(self.catalog, ttl_s=settings.graph_ttl_s)
        self.schemas = Schemas(self.catalog)
        self.metrics = ServerMetrics(registry)
        self._caller: ModelCaller | None = None
        # Query threads: a plain executor hands work over faster than anyio's thread pool.
        self.queries = ThreadPoolExecutor(_QUERY_THREADS, thread_name_prefix="chalk-query")

    @property
    def caller(self) -> ModelCaller:
        if self._caller is None:
            raise RuntimeError("the server's model caller is made at startup (lifespan)")
        return self._caller

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The model calls run on the server's own loop, the one that answers HTTP: a small
        query runs there too, a larger one's thread hands its calls to it (no third thread)."""
        self._caller = ModelCaller(
            self.catalog,
            loop=loop,
            deadline_s=self.settings.deadline_s,
            hold_timeout_s=self.settings.hold_timeout_s,
            max_held_calls=self.settings.max_held_calls,
            answers=self.answers,
        )

    async def demand_gauges(self) -> None:
        """Keep the demand gauges at this worker's figures (each worker writes its own; the
        worker answering /metrics sums them), until cancelled."""
        while True:
            self.metrics.demand(self.caller.loads())
            await asyncio.sleep(_DEMAND_GAUGES_EVERY_S)

    def called(self, recorder: CallRecorder) -> None:
        """A request's model calls, and the answer cache's figures after it, in the metrics."""
        self.metrics.called(recorder)
        self.metrics.cached(self.answers.stats())

    async def stop(self) -> None:
        if self._caller is not None:
            await self._caller.aclose()
        else:
            await self.answers.aclose()
        self.queries.shutdown(wait=False, cancel_futures=True)


def create_app(settings: ServerSettings, *, registry: CollectorRegistry | None = None) -> ASGIApp:
    """The server's ASGI app for ``settings``; figures go to ``registry`` (a new one if None)."""
    state = _State(settings, registry or CollectorRegistry())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.start(asyncio.get_running_loop())
        await state.dashboard.start(workers=settings.workers)
        gauges = asyncio.create_task(state.demand_gauges())
        try:
            yield
        finally:
            gauges.cancel()
            await state.dashboard.stop()
            await state.stop()

    def wrap(name: str, handler: Callable[[Request], Awaitable[Response]]) -> _Endpoint:
        return _endpoint(state, name, lambda _state, request: handler(request))

    routes = [
        Route(
            "/v1/query/online",
            _endpoint(state, _ENDPOINTS["/v1/query/online"], _query),
            methods=["POST"],
        ),
        Route(
            "/v1/query/offline",
            _endpoint(state, _ENDPOINTS["/v1/query/offline"], _offline),
            methods=["POST"],
        ),
        Route("/v1/models/{group}/invoke", _endpoint(state, "invoke", _invoke), methods=["POST"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _endpoint(state, _ENDPOINTS["/readyz"], _readyz), methods=["GET"]),
        Route("/metrics", _endpoint(state, _ENDPOINTS["/metrics"], _metrics), methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        *dashboard_routes(state.dashboard, wrap),
        *login_routes(settings.token, wrap),
        *page_routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )
    # A path with a trailing slash is answered 404 naming the path without it (not a bare
    # redirect, which most HTTP clients do not follow for POST).
    app.router.redirect_slashes = False
    app.state.chalk = state
    if settings.token is None:
        return app

    def refused(method: str, path: str, seconds: float) -> None:
        state.metrics.answered(_endpoint_of(path), 401, seconds)
        _failed(method, path, 401, "UNAUTHENTICATED")

    return BearerAuth(app, settings.token, refused)


def app_from_env() -> ASGIApp:
    """``create_app`` with the settings ``chalk serve`` left for its workers (an app factory)."""
    log_to_stderr()
    return create_app(ServerSettings.from_env())


def log_to_stderr() -> None:
    """Let the server's log lines (a failed request each; INFO for 4xx) reach stderr."""
    if not _LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _LOG.addHandler(handler)
        _LOG.setLevel(logging.INFO)
        _LOG.propagate = False


def _failed(method: str, path: str, status: int, code: str) -> None:
    """One log line for a request answered ``status`` >= 400: INFO for 4xx, WARNING for 5xx
    (the body is not logged: it may hold personal data)."""
    level = logging.WARNING if status >= 500 else logging.INFO
    _LOG.log(level, "%s %s answered %d %s", method, path, status, code)


_Handler = Callable[[_State, Request], Awaitable[Response]]
_Endpoint = Callable[[Request], Awaitable[Response]]


def _endpoint(state: _State, name: str, handler: _Handler) -> _Endpoint:
    """``handler`` with its errors answered as JSON and its outcome and time counted."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await handler(state, request)
        except Exception as error:
            response = _error_response(error, request)
        state.metrics.answered(name, response.status_code, time.perf_counter() - started)
        return response

    return endpoint


def _error_response(error: Exception, request: Request) -> Response:
    found = api_error(error)
    if found is None:
        if isinstance(error, sa_exc.SQLAlchemyError):
            found = ApiError(
                503, "CATALOG_UNAVAILABLE", f"the catalog failed: {_catalog_cause(error)}"
            )
        else:
            _LOG.exception("%s %s failed", request.method, request.url.path)
            found = ApiError(
                500,
                "INTERNAL_ERROR",
                f"the server failed on {request.url.path}: {type(error).__name__}: {error}",
            )
    _failed(request.method, request.url.path, found.status, found.code)
    response = _json(found.body(), found.status)
    if found.status == 413:
        # So a client cutting its rows into blocks can learn the limit and cut again.
        state: _State = request.app.state.chalk
        response.headers[MAX_BODY_HEADER] = str(state.settings.max_body_bytes)
    return response


async def _query(state: _State, request: Request) -> Response:
    query = _parse(OnlineQueryRequest, await _body(request, state.settings.max_body_bytes))
    rows = [query.inputs] if query.rows is None else query.rows
    values = len(rows) * (len(rows[0] or {}) + len(query.outputs))
    fresh = state.graph.fresh() if values <= _LOOP_VALUES else None
    recorder = CallRecorder()
    if fresh is not None:
        outcome = await _within_deadline(state, _on_loop(state, fresh, query, recorder), recorder)
    else:
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(state.queries, _on_thread, state, query, recorder)
        outcome = await _within_deadline(state, work, recorder)
    state.called(outcome.model_calls)
    return _json(outcome.body)


async def _offline(state: _State, request: Request) -> Response:
    """One block of an offline query: Arrow IPC in and out, run on a query thread (the request
    holds its one block; the client pipelines the next ones)."""
    body = await _body(request, state.settings.max_body_bytes, media=ARROW_STREAM)
    outputs = request.query_params.getlist("output")
    fingerprints = fingerprints_of(request.headers.get(FINGERPRINTS_HEADER))
    use_cache = use_cache_of(request.query_params.get("use_cache"))
    recorder = CallRecorder()
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(
        state.queries, _offline_on_thread, state, body, outputs, fingerprints, use_cache, recorder
    )
    outcome: OfflineOutcome = await _within_deadline(state, work, recorder)
    state.called(outcome.model_calls)
    headers = {
        GRAPH_VERSION_HEADER: str(outcome.graph_version),
        MODEL_CALLS_HEADER: outcome.model_calls_json(),
    }
    return Response(outcome.body, media_type=ARROW_STREAM, headers=headers)


def _offline_on_thread(
    state: _State,
    body: bytes,
    outputs: list[str],
    fingerprints: dict[str, str],
    use_cache: bool,
    recorder: CallRecorder,
) -> OfflineOutcome:
    loaded = state.graph.current()
    state.metrics.graph_version.set(loaded.version)
    try:
        return run_offline_block(
            loaded,
            body,
            outputs,
            fingerprints,
            state.caller,
            use_cache=use_cache,
            recorder=recorder,
        )
    except Exception as error:
        raise on_graph(error, loaded.version, loaded.graph.features) from None


async def _on_loop(
    state: _State, loaded: LoadedGraph, query: OnlineQueryRequest, recorder: CallRecorder
) -> QueryOutcome:
    """A small query on the loop: no thread to hand it to, nor its model calls back from."""
    state.metrics.graph_version.set(loaded.version)
    try:
        return await run_online_query_async(loaded, query, state.caller, recorder)
    except Exception as error:
        raise on_graph(error, loaded.version, loaded.graph.features) from None


def _on_thread(state: _State, query: OnlineQueryRequest, recorder: CallRecorder) -> QueryOutcome:
    """A larger query (or one whose graph must be read again) on a query thread: its polars
    work would hold up every other request on the loop."""
    loaded = state.graph.current()
    state.metrics.graph_version.set(loaded.version)
    try:
        return run_online_query(loaded, query, state.caller, recorder)
    except Exception as error:
        raise on_graph(error, loaded.version, loaded.graph.features) from None


async def _invoke(state: _State, request: Request) -> Response:
    body = _parse(InvokeRequest, await _body(request, state.settings.max_body_bytes))
    recorder = CallRecorder()
    group = request.path_params["group"]
    try:
        answer = await _within_deadline(
            state, invoke(group, body, state.schemas, state.caller, recorder), recorder
        )
    finally:
        state.called(recorder)
    return _json(answer)


async def _healthz(_request: Request) -> Response:
    return _json({"status": "ok"})


async def _readyz(state: _State, _request: Request) -> Response:
    try:
        loaded = await run_in_threadpool(state.graph.current)
    except NoGraphError as error:
        return _json({"status": "not_ready", "reason": str(error)}, 503)
    except sa_exc.SQLAlchemyError as error:
        reason = f"the catalog cannot be read: {_catalog_cause(error)}"
        return _json({"status": "not_ready", "reason": reason}, 503)
    return _json({"status": "ready", "graph_version": loaded.version})


async def _metrics(state: _State, _request: Request) -> Response:
    state.metrics.demand(state.caller.loads())  # this worker's figures as of now
    state.metrics.cached(state.answers.stats())
    text = await run_in_threadpool(state.metrics.exposition)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def _openapi(_request: Request) -> Response:
    return _json(openapi_document())


async def _http_error(request: Request, error: HTTPException) -> Response:
    """The router's 404 and 405, in the API's error shape (and counted, and logged)."""
    path = request.url.path
    headers = {}
    if error.status_code == 405:
        allowed = sorted((error.headers or {}).get("Allow", "").replace(" ", "").split(","))
        headers["Allow"] = ", ".join(allowed)
        found = ApiError(
            405,
            "METHOD_NOT_ALLOWED",
            f"{request.method} is not allowed on {path}: expected {' or '.join(allowed)}",
        )
    else:
        found = ApiError(error.status_code, "NOT_FOUND", _not_served(request))
    state: _State = request.app.state.chalk
    state.metrics.answered(_endpoint_of(path), found.status, 0.0)
    _failed(request.method, path, found.status, found.code)
    response = _json(found.body(), found.status)
    response.headers.update(headers)
    return response


def _not_served(request: Request) -> str:
    path = request.url.path
    bare = path.rstrip("/")
    if bare != path and any(
        getattr(route, "path_regex", None) and route.path_regex.match(bare)
        for route in request.app.router.routes
    ):
        return f"{path} is not served: expected {bare}, without the trailing slash"
    return (
        f"{request.method} {path} is not served: expected one of POST /v1/query/online, POST "
        f"/v1/query/offline, POST /v1/models/<group>/invoke, GET /healthz, /readyz, /metrics, "
        f"/openapi.json, /api/dashboard/(overview|groups/<group>|models|graph)"
    )


def _catalog_cause(error: Exception) -> object:
    """What a failed catalog read says: the database driver's error, not SQLAlchemy's wrapper."""
    return getattr(error, "orig", None) or error


def _endpoint_of(path: str) -> str:
    """The endpoint label of ``path`` in the metrics ("unrouted" for a path not served)."""
    if path.startswith("/v1/models/") and path.endswith("/invoke"):
        return "invoke"
    if path.startswith("/api/dashboard/groups/"):
        return "dashboard_series" if path.endswith("/series") else "dashboard_group"
    return _ENDPOINTS.get(path, "unrouted")


async def _body(request: Request, limit: int, *, media: str = "application/json") -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (declared or read), and with
    415 when its Content-Type is not ``media`` (for JSON: none, and curl's default form type,
    are taken too)."""
    given = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        fits = given in _JSON_MEDIA_TYPES or given.endswith("+json")
    else:
        fits = given == media
    if not fits:
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"the body's Content-Type is {given or 'not given'}: expected {media}",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "BODY_TOO_LARGE",
        f"the body has {size} bytes or more: expected at most {limit} (chalk serve "
        f"--max-body-bytes); send several rows per request in smaller requests",
    )


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except BodyError as error:
        problems = error.errors(include_url=False)
        first = problems[0]
        if first["type"] == "json_invalid":
            raise ApiError(
                400, "MALFORMED_JSON", f"the body is not valid JSON: {first['msg']}"
            ) from None
        where = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"{where or 'the body'}: {first['msg']}: expected the body of {model.__name__} in "
            f"/openapi.json",
            feature=where,
        ) from None


async def _within_deadline(state: _State, work: Awaitable[Any], recorder: CallRecorder) -> Any:
    try:
        # A timeout on this task, not wait_for's task around ``work``: one loop turn less.
        async with asyncio.timeout(state.settings.deadline_s):
            return await work
    except TimeoutError:
        raise ApiError(
            504,
            "DEADLINE_EXCEEDED",
            f"the request took longer than its deadline of {state.settings.deadline_s:g} s "
            f"(chalk serve --deadline){_held_meanwhile(recorder)}",
        ) from None


def _held_meanwhile(recorder: CallRecorder) -> str:
    """What a 504 adds when the request's model calls were held for groups with no ready
    replica (at zero, starting), and never released: why it ran out of time. (A held call is
    bounded by the deadline too, but began after the request, so the request's timeout comes
    first: on the loop it cancels the call; a query thread's call waits on to its own bound.)"""
    held = recorder.still_held()
    if not held:
        return ""
    groups = ", ".join(f"scaling group {group!r}{aside(why)}" for group, why in held.items())
    return (
        f"; its model calls to {groups} were held waiting for a ready replica: expected one "
        f"within the deadline; raise --deadline (and --hold-timeout) for a group that wakes "
        f"from zero or starts slowly, or keep a replica ready (--min-replicas 1)"
    )


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
