"""Bearer auth of ``chalk serve`` when it has a token: the header, or the dashboard's session
cookie (set by ``POST /login``), on every path but the probes and the login form.

``chalk.server.app`` wraps its app in ``BearerAuth``; a dashboard page asked for without
either is sent to the login form (``?next=`` the page, to come back to after), any other
request is answered the usual 401 JSON.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Final

import orjson
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chalk.server.dashboard.routes import (
    LOGIN_CSS,
    SESSION_COOKIE,
    is_page,
    login_location,
    session_value,
)
from chalk.server.errors import ApiError

__all__ = ["OPEN_PATHS", "BearerAuth"]

# Paths a load balancer probes, and the login form with its stylesheet: open even when a
# token is required.
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz", "/login", LOGIN_CSS})


class BearerAuth:
    """Requires ``Authorization: Bearer <token>`` (the scheme in any case) or the session
    cookie, each compared in constant time; ``refused(method, path, seconds)`` counts and logs
    each 401."""

    def __init__(
        self, app: ASGIApp, token: str, refused: Callable[[str, str, float], None]
    ) -> None:
        self._app = app
        self._expected = token.encode()
        self._session = session_value(token).encode()
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self._app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and is_page(scope["path"]):
            query = scope.get("query_string", b"").decode("latin-1")
            where = login_location(scope["path"], query)
            await RedirectResponse(where, status_code=303)(scope, receive, send)
            return
        started = time.perf_counter()
        error = ApiError(
            401,
            "UNAUTHENTICATED",
            f"{scope['path']} needs a bearer token: expected the header 'Authorization: Bearer "
            f"<token>' with the token of chalk serve --token-file (browsers: log in at /login)",
        )
        response = Response(orjson.dumps(error.body()), 401, media_type="application/json")
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)
        self._refused(scope["method"], scope["path"], time.perf_counter() - started)

    def _allowed(self, scope: Scope) -> bool:
        return any(self._admits(name, value) for name, value in scope["headers"])

    def _admits(self, name: bytes, value: bytes) -> bool:
        if name == b"cookie":
            return self._has_session(value)
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            # RFC 7235: the scheme is case-insensitive.
            return scheme.lower() == b"bearer" and hmac.compare_digest(
                token.strip(), self._expected
            )
        return False

    def _has_session(self, header: bytes) -> bool:
        wanted = SESSION_COOKIE.encode()
        for part in header.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == wanted and hmac.compare_digest(value, self._session):
                return True
        return False
