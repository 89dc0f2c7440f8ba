"""The dashboard behind a token: 401 JSON for the API, the login form, its HttpOnly cookie."""

from __future__ import annotations

import httpx
import pytest

from tests.server.dashboard.conftest import TOKEN, Served


@pytest.fixture
def anonymous(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.server.url, timeout=30, follow_redirects=False)


def test_the_api_without_the_token_is_401_json(anonymous: httpx.Client) -> None:
    reply = anonymous.get("/api/dashboard/overview")

    assert reply.status_code == 401
    assert reply.json()["errors"][0]["code"] == "UNAUTHENTICATED"


def test_a_page_without_the_token_goes_to_the_login_form(anonymous: httpx.Client) -> None:
    reply = anonymous.get("/")
    form = anonymous.get(reply.headers["location"])
    css = anonymous.get("/static/dashboard/app.css")

    assert (reply.status_code, reply.headers["location"]) == (303, "/login")
    assert form.status_code == 200
    assert '<input id="token" name="token" type="password"' in form.text
    assert 'autocomplete="current-password"' in form.text
    assert 'name="username" value="chalk" autocomplete="username" hidden' in form.text
    assert '<link rel="stylesheet" href="/static/dashboard/app.css">' in form.text
    assert (css.status_code, css.headers["content-type"].split(";")[0]) == (200, "text/css")


def test_logging_in_goes_back_to_the_page_asked_for(anonymous: httpx.Client) -> None:
    asked = anonymous.get("/groups/wobbly", params={"tab": "series"})
    where = asked.headers["location"]
    form = anonymous.get(where)
    reply = anonymous.post("/login", data={"token": TOKEN, "next": form.url.params["next"]})

    assert (asked.status_code, where) == (303, "/login?next=%2Fgroups%2Fwobbly%3Ftab%3Dseries")
    assert 'name="next" value="/groups/wobbly?tab=series"' in form.text
    assert (reply.status_code, reply.headers["location"]) == (303, "/groups/wobbly?tab=series")
    assert anonymous.get("/groups/wobbly").status_code == 200


@pytest.mark.parametrize(
    "after", ["//evil.example/x", "https://evil.example/", "evil", "/\\evil.example", ""]
)
def test_logging_in_never_goes_off_this_server(anonymous: httpx.Client, after: str) -> None:
    reply = anonymous.post("/login", data={"token": TOKEN, "next": after})

    assert (reply.status_code, reply.headers["location"]) == (303, "/")


def test_logging_in_sets_an_httponly_cookie_that_opens_the_api(anonymous: httpx.Client) -> None:
    reply = anonymous.post("/login", data={"token": TOKEN})
    cookie = reply.headers["set-cookie"]
    opened = anonymous.get("/api/dashboard/overview")

    assert (reply.status_code, reply.headers["location"]) == (303, "/")
    assert "chalk_session=" in cookie
    assert TOKEN not in cookie
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert opened.status_code == 200, opened.text
    assert opened.json()["groups"]


@pytest.mark.parametrize("token", ["wrong", "", TOKEN + "x"], ids=["wrong", "empty", "longer"])
def test_a_wrong_token_is_refused_and_sets_no_cookie(anonymous: httpx.Client, token: str) -> None:
    reply = anonymous.post("/login", data={"token": token})

    assert reply.status_code == 401
    assert "set-cookie" not in reply.headers
    assert "not this server" in reply.text
    assert anonymous.get("/api/dashboard/overview").status_code == 401


def test_a_forged_cookie_is_refused(anonymous: httpx.Client) -> None:
    anonymous.cookies.set("chalk_session", TOKEN)

    assert anonymous.get("/api/dashboard/overview").status_code == 401
