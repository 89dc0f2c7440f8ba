"""The dashboard's JSON on a real ``chalk serve`` of a running project (conftest's): the
overview, a group's detail with its rollout, models, graph and a group's series."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.server.conftest import ROW_JSON
from tests.server.dashboard.conftest import Served


def _until(fetch: Callable[[], Any], ok: Callable[[Any], bool], *, within_s: float = 30) -> Any:
    """``fetch()`` again until ``ok`` holds of its answer (the controller and the scraper work
    on their own clocks); the last answer."""
    give_up = time.monotonic() + within_s
    answer = fetch()
    while not ok(answer) and time.monotonic() < give_up:
        time.sleep(0.2)
        answer = fetch()
    return answer


def _get(served: Served, path: str, **params: Any) -> Any:
    reply = served.server.http.get(path, params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_overview_lists_the_groups_broken_first_with_the_reason(served: Served) -> None:
    overview = _until(
        lambda: _get(served, "/api/dashboard/overview"),
        lambda o: (
            [g["name"] for g in o["groups"]] == ["wobbly", "double"] and o["groups"][0]["broken"]
        ),
    )

    wobbly, double = overview["groups"]
    assert (overview["backend"], overview["project"]) == ("local", "dashboard")
    assert overview["graphVersion"] == 1
    assert overview["series"] == {"source": "local", "note": None}
    assert overview["generatedAt"].endswith("Z")
    assert wobbly["brokenReason"].startswith(
        ("rollout to v2 failing: CrashLoopBackOff: replica wobbly", "rollout to v2 failing: ")
    )
    assert wobbly["brokenReason"].endswith("; v1 serves")
    assert "exit code 1" in wobbly["brokenReason"] or "weights" in wobbly["brokenReason"]
    assert double == double | {
        "status": "Ready",
        "broken": False,
        "brokenReason": None,
        "readyReplicas": 1,
        "desiredReplicas": 1,
        "image": "double:v1",
        "model": "double",
        "modelVersion": 1,
        "servingModelVersion": 1,
        "tags": {},
        "resources": {"cpu": "1", "memory": "1Gi", "gpu": None},
    }
    assert double["autoscaling"]["min"] == double["autoscaling"]["max"] == 1
    assert (wobbly["model"], wobbly["modelVersion"], wobbly["image"]) == (
        "double",
        2,
        "double:crash",
    )
    assert wobbly["servingModelVersion"] == 1  # the old version's replica is the ready one


def test_invoking_a_group_mid_failing_rollout_names_the_version_that_answered(
    served: Served,
) -> None:
    _until(
        lambda: _get(served, "/api/dashboard/groups/wobbly"),
        lambda d: d["rollout"] is not None,
    )

    reply = served.server.http.post("/v1/models/wobbly/invoke", json={"inputs": {"x": [2.0]}})

    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"] == [4.0]
    assert reply.json()["meta"] | {"execution_duration_s": 0} == {
        "group": "wobbly",
        "model_name": "double",
        "model_version": 1,
        "serving_versions": [{"model_name": "double", "model_version": 1}],
        "execution_duration_s": 0,
    }


def test_a_group_shows_its_replicas_events_and_both_revisions_of_its_rollout(
    served: Served,
) -> None:
    detail = _until(
        lambda: _get(served, "/api/dashboard/groups/wobbly"),
        lambda d: d["rollout"] is not None and any(r["restarts"] for r in d["replicas"]),
    )

    assert detail["rollout"] == {
        "inProgress": True,
        "revisions": [
            {"revision": 1, "modelVersion": 1, "image": "double:v1", "readyReplicas": 1,
             "replicas": 1, "role": "old"},
            {"revision": 2, "modelVersion": 2, "image": "double:crash", "readyReplicas": 0,
             "replicas": 1, "role": "new"},
        ],
    }  # fmt: skip
    old = next(r for r in detail["replicas"] if r["revision"] == 1)
    new = next(r for r in detail["replicas"] if r["revision"] == 2)
    assert (old["state"], old["ready"], new["ready"]) == ("Running", True, False)
    assert old["endpoint"].startswith("127.0.0.1:")
    assert (old["cpuLimitMillicores"], old["memoryLimitBytes"]) == (1000, 2**30)
    assert old["ageSeconds"] >= 0
    assert old["startedAt"].endswith("Z")
    assert new["lastExit"].startswith("exit code 1")
    times = [event["at"] for event in detail["events"]]
    assert times == sorted(times, reverse=True)
    assert {"Warning", "Normal"} <= {event["type"] for event in detail["events"]}


def test_an_unknown_group_is_404_naming_it(served: Served) -> None:
    for path in ("/api/dashboard/groups/nope", "/api/dashboard/groups/nope/series"):
        reply = served.server.http.get(path)

        assert reply.status_code == 404
        assert reply.json()["errors"][0]["code"] == "UNKNOWN_GROUP"
        assert "'nope'" in reply.json()["errors"][0]["message"]


def test_models_list_each_version_with_its_schemas_and_the_groups_it_serves(
    served: Served,
) -> None:
    models = _until(
        lambda: _get(served, "/api/dashboard/models")["models"],
        lambda m: m[0]["versions"][0]["groups"] == ["double", "wobbly"],
    )

    assert [m["name"] for m in models] == ["double"]
    first, second = models[0]["versions"]
    assert first == first | {
        "version": 1,
        "image": "double:v1",
        "inputSchema": [{"name": "x", "type": "double"}],
        "outputSchema": [{"name": "y", "type": "double"}],
        "deterministic": True,
        "groups": ["double", "wobbly"],  # wobbly's version 1 replica serves
    }
    assert (second["version"], second["groups"]) == (2, [])


def test_the_graph_shows_classes_features_and_which_feature_calls_which_group(
    served: Served,
) -> None:
    graph = _get(served, "/api/dashboard/graph")

    assert (graph["applied"], graph["graphVersion"]) == (True, 1)
    assert graph["edges"] == [{"feature": "reading.doubled", "group": "double"}]
    (reading,) = graph["classes"]
    features = {f["name"]: f for f in reading["features"]}
    assert features["doubled"] == features["doubled"] | {
        "callsGroup": "double",
        "dependsOn": ["reading.x"],
    }
    assert features["loud"]["dependsOn"] == ["reading.name"]
    assert features["x"]["callsGroup"] is None


def test_series_gain_points_after_traffic(served: Served) -> None:
    def traffic_then_series() -> Any:
        for x in (1.0, 2.0, 3.0):
            body = {"inputs": {**ROW_JSON, "reading.x": x}, "outputs": ["reading.doubled"]}
            assert served.server.http.post("/v1/query/online", json=body).status_code == 200
        return _get(served, "/api/dashboard/groups/double/series")

    series = _until(
        traffic_then_series, lambda s: any(v and v > 0 for v in s["group"]["callsPerSecond"])
    )

    assert (series["source"], series["stepSeconds"], series["windowSeconds"]) == ("local", 2, 900)
    group = series["group"]
    assert len(group["t"]) == len(group["callsPerSecond"]) == len(group["p99Seconds"]) >= 1
    assert any(v is not None for v in group["p50Seconds"])
    (replica,) = series["replicas"].values()
    assert len(replica["t"]) >= 1
    later = _get(served, "/api/dashboard/groups/double/series", since=group["t"][-1])
    assert all(t > group["t"][-1] for t in later["group"]["t"])
    overview = _until(
        lambda: _get(served, "/api/dashboard/overview"),
        lambda o: any(g["callsPerSecond"] is not None for g in o["groups"]),
    )
    assert any(g["callsPerSecond"] is not None for g in overview["groups"])


def test_a_bad_since_is_400(served: Served) -> None:
    reply = served.server.http.get("/api/dashboard/groups/double/series", params={"since": "x"})

    assert reply.status_code == 400
    assert "unix seconds" in reply.json()["errors"][0]["message"]


def test_the_dashboard_endpoints_are_counted_in_the_metrics(served: Served) -> None:
    _get(served, "/api/dashboard/models")

    text = _until(
        lambda: served.server.http.get("/metrics").text,
        lambda t: 'endpoint="dashboard_models"' in t,
    )
    assert 'endpoint="dashboard_models"' in text
    assert isinstance(served.server.http, httpx.Client)
