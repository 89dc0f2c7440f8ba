"""The dashboard's page routes and assets, without a browser: every view's path answers the one
page, the assets it loads are in the package (none from another host), and each module it
imports exists."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from starlette.applications import Starlette

from chalk.server.dashboard.pages import STATIC_DIR, page_routes

# What a page or module loads: src/href attributes, and ES module imports.
_LOADED = re.compile(r'(?:src|href)="([^"]+)"|from "([^"]+)"|import\("([^"]+)"\)')


def _get(path: str) -> httpx.Response:
    """``GET path`` from an app of the page routes alone, in this process."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=Starlette(routes=page_routes()))
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as http:
            answer = await http.get(path)
            await answer.aread()
            return answer

    return asyncio.run(get())


@pytest.mark.parametrize(
    "path", ["/", "/groups/ner", "/models", "/graph"], ids=["groups", "group", "models", "graph"]
)
def test_every_view_answers_the_one_page(path: str) -> None:
    answer = _get(path)

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text == (STATIC_DIR / "index.html").read_text()


def test_assets_are_served_from_the_package_and_revalidated() -> None:
    script = _get("/static/dashboard/views/group.js")
    style = _get("/static/dashboard/app.css")
    missing = _get("/static/dashboard/nothing.js")

    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    assert style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404


def test_everything_the_page_loads_is_in_the_package_and_nothing_from_elsewhere() -> None:
    files = sorted(p for p in STATIC_DIR.rglob("*") if p.suffix in {".html", ".js", ".css"})
    loads: list[tuple[str, str]] = []
    for file in files:
        for match in _LOADED.finditer(file.read_text()):
            loads.append((file.name, next(group for group in match.groups() if group)))
    absent = []
    for file_name, target in loads:
        assert "://" not in target, f"{file_name} loads {target} from another host"
        if target.startswith("/static/dashboard/"):
            path = STATIC_DIR / target.removeprefix("/static/dashboard/")
        elif target.startswith("."):
            base = next(f for f in files if f.name == file_name).parent
            path = (base / target).resolve()
        else:
            continue  # an inline icon (data:), or one of the page's own links (/models)
        if not path.is_file():
            absent.append(f"{file_name} -> {target}")

    assert len(loads) > 10
    assert absent == []
