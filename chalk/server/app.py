"""The ASGI app of ``chalk serve``: routes, the JSON error shape, bearer auth, limits.

Handlers are thin: read and validate the body, run the library function (a query on a
query thread; its model calls, and invoke's, on this server's event loop), answer JSON.
``create_app`` builds one app per worker process.
"""

from __future__ import annotations

import asyncio
import hmac
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
from starlette.types import ASGIApp, Receive, Scope, Send

from chalk.catalog import Catalog, open_catalog
from chalk.common.config import find_project
from chalk.engine.calls import ModelCaller
from chalk.engine.recorder import CallRecorder
from chalk.server.errors import ApiError, api_error, error_body, on_graph
from chalk.server.graphs import ActiveGraph, NoGraphError
from chalk.server.invoke import Schemas, invoke
from chalk.server.metrics import ServerMetrics
from chalk.server.models import InvokeRequest, OnlineQueryRequest
from chalk.server.openapi import openapi_document
from chalk.server.queries import run_online_query
from chalk.server.settings import ServerSettings

__all__ = ["app_from_env", "create_app"]

_LOG = logging.getLogger("chalk.server")
# Paths a load balancer probes: open even when a token is required.
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
M = TypeVar("M", bound=BaseModel)
# Queries running at once per worker (each mostly waits on its model calls).
_QUERY_THREADS = 32


class _State:
    """What one worker's requests share: the catalog, the graph, one ModelCaller, metrics."""

    def __init__(self, settings: ServerSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.catalog: Catalog = open_catalog(find_project(Path(settings.project_dir)))
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
        """The model calls run on the server's own loop: a query thread hands its calls to
        the loop that also answers HTTP, with no third thread between them."""
        self._caller = ModelCaller(self.catalog, loop=loop, deadline_s=self.settings.deadline_s)

    async def stop(self) -> None:
        if self._caller is not None:
            await self._caller.aclose()
        self.queries.shutdown(wait=False, cancel_futures=True)


def create_app(settings: ServerSettings, *, registry: CollectorRegistry | None = None) -> ASGIApp:
    """The server's ASGI app for ``settings``; figures go to ``registry`` (a new one if None)."""
    state = _State(settings, registry or CollectorRegistry())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            await state.stop()

    routes = [
        Route("/v1/query/online", _endpoint(state, "query_online", _query), methods=["POST"]),
        Route("/v1/models/{group}/invoke", _endpoint(state, "invoke", _invoke), methods=["POST"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _endpoint(state, "readyz", _readyz), methods=["GET"]),
        Route("/metrics", _endpoint(state, "metrics", _metrics), methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )
    if settings.token is None:
        return app
    return _BearerAuth(app, settings.token)


def app_from_env() -> ASGIApp:
    """``create_app`` with the settings ``chalk serve`` left for its workers (an app factory)."""
    return create_app(ServerSettings.from_env())


_Handler = Callable[[_State, Request], Awaitable[Response]]


def _endpoint(
    state: _State, name: str, handler: _Handler
) -> Callable[[Request], Awaitable[Response]]:
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
            cause = getattr(error, "orig", None) or error
            found = ApiError(503, "CATALOG_UNAVAILABLE", f"the catalog failed: {cause}")
        else:
            _LOG.exception("%s %s failed", request.method, request.url.path)
            found = ApiError(
                500,
                "INTERNAL_ERROR",
                f"the server failed on {request.url.path}: {type(error).__name__}: {error}",
            )
    return _json(found.body(), found.status)


async def _query(state: _State, request: Request) -> Response:
    query = _parse(OnlineQueryRequest, await _body(request, state.settings.max_body_bytes))

    def run() -> Any:
        loaded = state.graph.current()
        state.metrics.graph_version.set(loaded.version)
        try:
            return run_online_query(loaded, query, state.caller)
        except Exception as error:
            raise on_graph(error, loaded.version, loaded.graph.features) from None

    loop = asyncio.get_running_loop()
    outcome = await _within_deadline(state, loop.run_in_executor(state.queries, run))
    state.metrics.called(outcome.model_calls)
    return _json(outcome.body)


async def _invoke(state: _State, request: Request) -> Response:
    body = _parse(InvokeRequest, await _body(request, state.settings.max_body_bytes))
    recorder = CallRecorder()
    group = request.path_params["group"]
    try:
        answer = await _within_deadline(
            state, invoke(group, body, state.schemas, state.caller, recorder)
        )
    finally:
        state.metrics.called(recorder)
    return _json(answer)


async def _healthz(_request: Request) -> Response:
    return _json({"status": "ok"})


async def _readyz(state: _State, _request: Request) -> Response:
    try:
        loaded = await run_in_threadpool(state.graph.current)
    except NoGraphError as error:
        return _json({"status": "not_ready", "reason": str(error)}, 503)
    except sa_exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        reason = f"the catalog cannot be read: {cause}"
        return _json({"status": "not_ready", "reason": reason}, 503)
    return _json({"status": "ready", "graph_version": loaded.version})


async def _metrics(state: _State, _request: Request) -> Response:
    text = await run_in_threadpool(state.metrics.exposition)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def _openapi(_request: Request) -> Response:
    return _json(openapi_document())


async def _http_error(request: Request, error: HTTPException) -> Response:
    message = (
        f"{request.method} {request.url.path} is not served: expected one of POST "
        f"/v1/query/online, POST /v1/models/<group>/invoke, GET /healthz, /readyz, /metrics, "
        f"/openapi.json"
    )
    return _json(error_body([ApiError(error.status_code, "NOT_FOUND", message)]), error.status_code)


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` bytes (declared or read)."""
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
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"{where}: {first['msg']}: expected the body of {model.__name__} in /openapi.json",
            feature=where,
        ) from None


async def _within_deadline(state: _State, work: Awaitable[Any]) -> Any:
    try:
        return await asyncio.wait_for(work, state.settings.deadline_s)
    except TimeoutError:
        raise ApiError(
            504,
            "DEADLINE_EXCEEDED",
            f"the request took longer than its deadline of {state.settings.deadline_s:g} s "
            f"(chalk serve --deadline)",
        ) from None


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class _BearerAuth:
    """Requires ``Authorization: Bearer <token>`` on every path but the probes; compared in
    constant time. (The dashboard's login cookie will be a second way in, here.)"""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS or self._allowed(scope):
            await self._app(scope, receive, send)
            return
        error = ApiError(
            401,
            "UNAUTHENTICATED",
            f"{scope['path']} needs a bearer token: expected the header 'Authorization: Bearer "
            f"<token>' with the token of chalk serve --token-file",
        )
        response = _json(error.body(), 401)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False
