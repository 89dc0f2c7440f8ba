"""The dashboard's pages: ``/`` and every view's path answer the one ``index.html`` (the page
routes by its location), ``/static/dashboard/...`` its assets, all shipped in the package.
``chalk.server.app`` adds these routes beside the dashboard's JSON routes."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["STATIC_DIR", "page_routes"]

STATIC_DIR: Final = Path(__file__).with_name("static")
# The views the page knows (static/app.js routes the same paths).
_VIEW_PATHS: Final = ("/", "/groups/{name}", "/models", "/graph")
# Assets change with the package: a browser asks again instead of running an old page.
_NO_CACHE: Final = {"Cache-Control": "no-cache"}


async def _index(_request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)


class _Assets(StaticFiles):
    """The static folder, each answer marked no-cache (revalidated, then a 304)."""

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_NO_CACHE)
        return response


def page_routes() -> list[BaseRoute]:
    """The routes of the dashboard's page and its assets."""
    views: list[BaseRoute] = [Route(path, _index, methods=["GET"]) for path in _VIEW_PATHS]
    return [*views, Mount("/static/dashboard", app=_Assets(directory=STATIC_DIR))]
