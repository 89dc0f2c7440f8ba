"""The dashboard's JSON routes (``/api/dashboard/*``), its login form and session cookie, and
``Dashboard``: what they share in one worker (the series scraper or the Prometheus source).

``chalk.server.app`` mounts ``dashboard_routes`` and starts and stops ``Dashboard`` in its
lifespan; catalog reads run on a thread so a slow catalog never holds up the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from html import escape
from typing import Any, Final
from urllib.parse import parse_qs, quote

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from chalk.catalog import Catalog
from chalk.catalog.errors import NotFoundError
from chalk.common.config import Project
from chalk.deploy.backends import backend_for
from chalk.server.dashboard.election import ScrapeElection
from chalk.server.dashboard.prometheus import NO_PROMETHEUS_NOTE, PrometheusError, PrometheusSeries
from chalk.server.dashboard.series import (
    STEP_S,
    WINDOW_S,
    Scraper,
    SeriesStore,
    catalog_targets,
    empty_series,
)
from chalk.server.dashboard.views import (
    Live,
    graph_document,
    group_document,
    models_document,
    overview_document,
    rfc3339,
)
from chalk.server.errors import ApiError

__all__ = [
    "DASHBOARD_ENDPOINTS",
    "SESSION_COOKIE",
    "Dashboard",
    "dashboard_routes",
    "is_page",
    "login_location",
    "login_routes",
    "safe_next",
    "session_value",
]

SESSION_COOKIE: Final = "chalk_session"
# The metrics' endpoint label of each dashboard path (a group's paths share theirs).
DASHBOARD_ENDPOINTS: Final = {
    "/api/dashboard/overview": "dashboard_overview",
    "/api/dashboard/groups/{name}": "dashboard_group",
    "/api/dashboard/groups/{name}/series": "dashboard_series",
    "/api/dashboard/models": "dashboard_models",
    "/api/dashboard/graph": "dashboard_graph",
    "/login": "login",
}
_NO_SERIES: Final[dict[str, Any]] = {"group": empty_series(), "replicas": {}}
_PAGE_PATHS: Final = frozenset({"/", "/models", "/graph"})
_PAGE_PREFIXES: Final = ("/groups/", "/static/dashboard/")
# The dashboard's stylesheet (served without a token, ``auth.OPEN_PATHS``) and a few lines
# of the form's own; the hidden username lets a password manager file the token, and keeps
# Chromium from logging a DOM note about a password field without one.
LOGIN_CSS: Final = "/static/dashboard/app.css"
_LOGIN_FORM: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scalegroup: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
<style>.login{{max-width:24rem;margin:3rem auto;padding:16px 20px;background:var(--panel,#fff);
border:1px solid var(--line,#d9dee5);border-radius:6px}}
.login input,.login button{{font:inherit;padding:.4rem;width:100%;margin:.3rem 0}}
.login button{{background:var(--accent,#1f5fbf);color:#fff;border:0;border-radius:4px}}
.error{{color:var(--bad,#b3261e)}}</style></head>
<body><header class="top"><a class="brand" href="/">scalegroup</a></header>
<main class="login"><h1>Log in</h1>{error}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<input type="text" name="username" value="chalk" autocomplete="username" hidden>
<label for="token">Token (the content of chalk serve --token-file)</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<button type="submit">Log in</button></form></main></body></html>
"""

Wrap = Callable[
    [str, Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]
]


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: an HMAC of it, never the token itself."""
    return hmac.new(token.encode(), b"chalk-dashboard-session", hashlib.sha256).hexdigest()


def is_page(path: str) -> bool:
    """Whether ``path`` is one of the dashboard's pages or assets (a browser's request, which
    is sent to the login form rather than answered 401)."""
    return path in _PAGE_PATHS or path.startswith(_PAGE_PREFIXES)


def safe_next(path: str | None) -> str:
    """Where a login goes on: ``path`` when it is a path of this server (``/`` then anything
    but another ``/`` or a backslash), else ``/`` (never another site).

    Examples
    --------
    >>> safe_next("/groups/ner?x=1"), safe_next("//evil.example"), safe_next("https://x")
    ('/groups/ner?x=1', '/', '/')
    """
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in path):
        return "/"
    return path


def login_location(path: str, query: str) -> str:
    """The login form's address that comes back to ``path`` (with its ``query``) after."""
    asked = path if not query else f"{path}?{query}"
    return "/login" if asked == "/" else f"/login?next={quote(asked, safe='')}"


class Dashboard:
    """One worker's dashboard: locally a ``Scraper`` filling a ``SeriesStore`` (in the one
    worker that wins the election), on Kubernetes a ``PrometheusSeries`` when one is named."""

    def __init__(self, project: Project, catalog: Catalog) -> None:
        self.project = project
        self.catalog = catalog
        # One backend for every poll (on Kubernetes it holds the API client).
        self.backend = backend_for(project)
        self.store = SeriesStore()
        self._scraper: Scraper | None = None
        self._election: ScrapeElection | None = None
        self._prometheus: PrometheusSeries | None = None

    async def start(self, *, workers: int = 1) -> None:
        config = self.project.config
        if config.backend == "kubernetes":
            url = config.kubernetes.prometheus_url
            if url is not None:
                self._prometheus = PrometheusSeries(url, config.kubernetes.namespace)
            return
        self._election = ScrapeElection(self.project.state_dir, workers=workers)
        if self._election.scrapes:
            targets = partial(catalog_targets, self.catalog)
            self._scraper = Scraper(targets, self.store, on_pass=self._election.publish)
            self._scraper.start()

    async def stop(self) -> None:
        if self._scraper is not None:
            await self._scraper.stop()
        if self._election is not None:
            self._election.close()
        if self._prometheus is not None:
            await self._prometheus.aclose()

    def _local_store(self) -> SeriesStore:
        if self._election is None or self._election.scrapes:
            return self.store
        return self._election.read()

    def live(self) -> Live:
        """What the series know now (another worker's snapshot may be read: call on a thread)."""
        if self.project.config.backend == "kubernetes":
            if self._prometheus is None:
                return Live("none", NO_PROMETHEUS_NOTE)
            return Live("prometheus")
        store = self._local_store()
        return Live("local", None, store.calls_per_second(), store.in_flight())

    async def live_now(self, groups: Sequence[str], *, pods_of: str | None = None) -> Live:
        """``live()``; on Kubernetes with Prometheus named, with the calls per second of
        ``groups`` and the figures of ``pods_of``'s pods asked of it now (those it does not
        answer stay unknown, the note says why)."""
        if self._prometheus is None or self.project.config.backend != "kubernetes":
            return await run_in_threadpool(self.live)
        found = await self._prometheus.instant(groups, pods_of=pods_of)
        return Live(
            "prometheus",
            found.error,
            found.calls_per_second,
            found.in_flight,
            found.cpu_millicores,
            found.memory_bytes,
        )

    async def series(self, name: str, since: float | None) -> dict[str, Any]:
        now = time.time()
        head = {"stepSeconds": STEP_S, "windowSeconds": WINDOW_S}
        if self.project.config.backend != "kubernetes":
            store = await run_in_threadpool(self._local_store)
            return {"source": "local", **head, **store.group_series(name, since)}
        if self._prometheus is None:
            return {"source": "none", "note": NO_PROMETHEUS_NOTE, **head, **_NO_SERIES}
        try:
            found = await self._prometheus.group_series(name, now=now, since=since)
        except PrometheusError as error:
            return {
                "source": "prometheus",
                "note": str(error),
                **head,
                "group": {"t": []},
                "replicas": {},
            }
        return {"source": "prometheus", "note": None, **head, **found}


def dashboard_routes(dashboard: Dashboard, wrap: Wrap) -> list[BaseRoute]:
    """The ``/api/dashboard/*`` routes; ``wrap`` gives each its error shape and metrics."""

    async def overview(_request: Request) -> Response:
        names = await run_in_threadpool(_group_names, dashboard.catalog)
        live = await dashboard.live_now(names)
        return _json(
            await run_in_threadpool(
                partial(overview_document, backend=dashboard.backend),
                dashboard.project,
                dashboard.catalog,
                live,
            )
        )

    async def group(request: Request) -> Response:
        name = request.path_params["name"]
        await run_in_threadpool(_known_group, dashboard.catalog, name)  # before any query
        live = await dashboard.live_now([name], pods_of=name)
        return _json(
            await run_in_threadpool(
                partial(group_document, backend=dashboard.backend),
                dashboard.project,
                dashboard.catalog,
                name,
                live,
            )
        )

    async def series(request: Request) -> Response:
        name = request.path_params["name"]
        await run_in_threadpool(_known_group, dashboard.catalog, name)
        since = _since(request.query_params.get("since"))
        answer = await dashboard.series(name, since)
        return _json({"generatedAt": rfc3339(dashboard.catalog.clock()), **answer})

    async def models(_request: Request) -> Response:
        return _json(
            await run_in_threadpool(
                partial(models_document, backend=dashboard.backend),
                dashboard.project,
                dashboard.catalog,
            )
        )

    async def graph(_request: Request) -> Response:
        return _json(await run_in_threadpool(graph_document, dashboard.catalog))

    handlers = {
        "/api/dashboard/overview": overview,
        "/api/dashboard/groups/{name}": group,
        "/api/dashboard/groups/{name}/series": series,
        "/api/dashboard/models": models,
        "/api/dashboard/graph": graph,
    }
    return [
        Route(path, wrap(DASHBOARD_ENDPOINTS[path], handler), methods=["GET"])
        for path, handler in handlers.items()
    ]


def login_routes(token: str | None, wrap: Wrap) -> list[BaseRoute]:
    """``GET /login`` (the form; ``?next=`` the page asked for) and ``POST /login`` (form
    fields ``token`` and ``next``: sets the HttpOnly session cookie and goes to ``next`` when
    it is a path of this server, else to ``/``; a wrong token gets the form again, 401)."""

    async def form(request: Request) -> Response:
        return HTMLResponse(_login_form(request.query_params.get("next"), error=""))

    async def log_in(request: Request) -> Response:
        body = await request.body()
        fields = parse_qs(body.decode(errors="replace"))
        given = fields.get("token", [""])[0].strip()
        after = safe_next(fields.get("next", [""])[0])
        if token is None:
            return RedirectResponse(after, status_code=303)
        if not hmac.compare_digest(given.encode(), token.encode()):
            error = '<p class="error" role="alert">That token is not this server\'s.</p>'
            return HTMLResponse(_login_form(after, error=error), status_code=401)
        response = RedirectResponse(after, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    endpoint = DASHBOARD_ENDPOINTS["/login"]
    return [
        Route("/login", wrap(endpoint, form), methods=["GET"]),
        Route("/login", wrap(endpoint, log_in), methods=["POST"]),
    ]


def _login_form(after: str | None, *, error: str) -> str:
    return _LOGIN_FORM.format(css=LOGIN_CSS, error=error, next=escape(safe_next(after)))


def _group_names(catalog: Catalog) -> list[str]:
    return [group.name for group in catalog.groups.list()]


def _known_group(catalog: Catalog, name: str) -> None:
    try:
        catalog.groups.get(name)
    except NotFoundError as error:
        raise ApiError(404, "UNKNOWN_GROUP", str(error)) from None


def _since(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"since={text!r}: expected a time in unix seconds, e.g. 1767225600",
        ) from None


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
