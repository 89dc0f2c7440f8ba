"""Reading local replicas' logs: real files appended by real processes, replicas as catalog rows."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.records import Replica
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.deploy.groups import pin_image
from chalk.deploy.local.log_reader import ReplicaLog, replica_logs
from chalk.deploy.local.logs import replica_log, rotate
from chalk.deploy.logs import LogLine, LogQuery, UnknownReplicaError
from tests.deploy.local.conftest import save_image
from tests.support.log_follower import Follower

# Appends its arguments' lines to the file named first, as a replica writes its log: each
# line flushed on its own; "@json NAME" writes a JSON line stamped now (as our runtime does).
APPENDER = """
import datetime, json, sys, time
with open(sys.argv[1], "a") as log:
    for text in sys.argv[2:]:
        if text.startswith("@json "):
            now = datetime.datetime.now(datetime.UTC).isoformat()
            text = json.dumps({"timestamp": now, "message": text[6:]})
        log.write(text + "\\n")
        log.flush()
        time.sleep(0.002)
"""


def append(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", APPENDER, str(path), *lines], check=True)


@pytest.fixture
def group(catalog: Catalog, project: Project) -> ScalingGroup:
    """Group ``web`` with replicas ``web-a`` and ``web-b`` as the controller records them."""
    save_image(catalog, project, "web:latest", entrypoint=("true",), exposed_port=8000)
    spec = pin_image(catalog, GroupSpec(image="web:latest"), port_given=False)
    created = catalog.groups.create("web", spec.to_dict(), backend="local")
    for replica_id in ("web-a", "web-b"):
        add_replica(catalog, created, replica_id)
    return created


def add_replica(catalog: Catalog, group: ScalingGroup, replica_id: str) -> None:
    catalog.state.save_replica(
        Replica(group_id=group.id, replica_id=replica_id, revision=1, state="Running")
    )


@pytest.fixture
def logs_dir(project: Project) -> Path:
    return project.state_dir / "logs"


def log_of(logs_dir: Path, replica_id: str) -> Path:
    return replica_log(logs_dir, "web", replica_id)


def read(catalog: Catalog, group: ScalingGroup, logs_dir: Path, **query: object) -> list[str]:
    lines = replica_logs(catalog, group, logs_dir, LogQuery(**query))  # type: ignore[arg-type]
    return [f"[{line.replica}] {message(line)}" for line in lines]


def stamped(message: str, at: dt.datetime) -> str:
    """A JSON log line as our runtime writes it, stamped ``at``."""
    return json.dumps({"timestamp": at.isoformat(), "message": message})


def message(line: LogLine) -> str:
    """A JSON line's message; any other line as it is."""
    if line.text.startswith("{"):
        return str(json.loads(line.text)["message"])
    return line.text


def test_lines_with_their_own_time_interleave_as_they_were_written(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    for i in range(6):
        append(log_of(logs_dir, "web-a" if i % 2 == 0 else "web-b"), f"@json m{i}")

    assert read(catalog, group, logs_dir) == [
        "[web-a] m0",
        "[web-b] m1",
        "[web-a] m2",
        "[web-b] m3",
        "[web-a] m4",
        "[web-b] m5",
    ]


def test_lines_without_a_time_are_never_placed_before_they_were_written(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    append(log_of(logs_dir, "web-b"), "b plain 1", "@json b stamped")
    time.sleep(0.05)
    append(log_of(logs_dir, "web-a"), "a plain 1", "a plain 2")
    time.sleep(0.05)
    append(log_of(logs_dir, "web-b"), "Traceback (most recent call last):", "b plain 2")

    assert read(catalog, group, logs_dir) == [
        # takes the time of the stamped line after it
        "[web-b] b plain 1",
        "[web-b] b stamped",
        # untimed to the end of their file: the time it last changed
        "[web-a] a plain 1",
        "[web-a] a plain 2",
        "[web-b] Traceback (most recent call last):",
        "[web-b] b plain 2",
    ]


def test_a_rotated_part_is_read_before_the_file(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    log = log_of(logs_dir, "web-a")
    append(log, *(f"line {i}" for i in range(5)))
    assert rotate(log, max_bytes=10)
    append(log, "line 5", "line 6")

    assert read(catalog, group, logs_dir, replica="web-a") == [
        f"[web-a] line {i}" for i in range(7)
    ]


def test_following_reads_the_lines_a_rotation_cut_off_once(logs_dir: Path) -> None:
    path = log_of(logs_dir, "web-a")
    append(path, "line 0")
    log = ReplicaLog("web-a", path)
    first = log.read_existing()
    append(path, "line 1", "line 2")
    assert rotate(path, max_bytes=5)
    append(path, "line 3")

    later = log.read_new()

    assert [line.text for line in first + later] == [f"line {i}" for i in range(4)]
    assert log.read_new() == []


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        pytest.param(2, ["[web-a] a3", "[web-b] b3", "[web-a] a4", "[web-b] b4"], id="per-replica"),
        pytest.param(0, [], id="none"),
    ],
)
def test_tail_counts_lines_per_replica(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path, tail: int, expected: list[str]
) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for name, offset in (("a", 0), ("b", 1)):
        moments = (start + dt.timedelta(seconds=2 * i + offset) for i in range(5))
        append(
            log_of(logs_dir, f"web-{name}"),
            *(stamped(f"{name}{i}", at) for i, at in enumerate(moments)),
        )

    assert read(catalog, group, logs_dir, tail=tail) == expected


def test_since_leaves_out_older_lines(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    append(log_of(logs_dir, "web-a"), stamped("two hours ago", two_hours_ago), "@json just now")

    assert read(catalog, group, logs_dir, since=dt.timedelta(minutes=10)) == ["[web-a] just now"]


def test_an_unknown_replica_is_an_error_listing_the_replicas(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    with pytest.raises(UnknownReplicaError, match=r"'web' has no replica 'web-z'.*web-a, web-b"):
        read(catalog, group, logs_dir, replica="web-z")


def test_following_picks_up_replicas_that_join_and_drops_those_that_leave(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    append(log_of(logs_dir, "web-a"), "a before")
    follower = Follower(
        replica_logs(
            catalog, group, logs_dir, LogQuery(follow=True), poll_s=0.05, members_every_s=0.1
        )
    )
    follower.wait_for("[web-a] a before")

    add_replica(catalog, group, "web-c")
    append(log_of(logs_dir, "web-c"), "c started")
    append(log_of(logs_dir, "web-a"), "a last words")
    catalog.state.remove_replica(group.id, "web-a")
    follower.wait_for("[web-c] c started", "[web-a] a last words")
    time.sleep(0.3)  # a few membership checks: web-a is no longer read
    append(log_of(logs_dir, "web-a"), "a after it left")
    append(log_of(logs_dir, "web-b"), "b still here")
    follower.wait_for("[web-b] b still here")

    assert "[web-a] a after it left" not in follower.seen
    assert follower.seen.count("[web-c] c started") == 1


def test_following_a_group_outlasts_its_replicas_until_it_is_deleted(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    follower = Follower(
        replica_logs(
            catalog, group, logs_dir, LogQuery(follow=True), poll_s=0.05, members_every_s=0.1
        )
    )
    for replica_id in ("web-a", "web-b"):  # scaled to zero
        catalog.state.remove_replica(group.id, replica_id)
    time.sleep(0.3)
    add_replica(catalog, group, "web-c")  # started again by demand
    append(log_of(logs_dir, "web-c"), "c serving")
    follower.wait_for("[web-c] c serving")

    catalog.groups.delete("web")

    assert follower.ended.wait(10)


def test_a_last_line_without_its_newline_is_printed(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    log = log_of(logs_dir, "web-a")
    log.parent.mkdir(parents=True)
    log.write_text("complete\nkilled mid-li")

    assert read(catalog, group, logs_dir) == ["[web-a] complete", "[web-a] killed mid-li"]


def test_following_one_replica_ends_when_it_leaves(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    follower = Follower(
        replica_logs(
            catalog,
            group,
            logs_dir,
            LogQuery(replica="web-b", follow=True),
            poll_s=0.05,
            members_every_s=0.1,
        )
    )
    append(log_of(logs_dir, "web-b"), "b working")
    append(log_of(logs_dir, "web-a"), "a working")
    follower.wait_for("[web-b] b working")

    catalog.state.remove_replica(group.id, "web-b")

    assert follower.ended.wait(10)
    assert follower.seen == ["[web-b] b working"]
