"""Reading local replicas' logs: real files appended by real processes, replicas as catalog rows."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
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
from chalk.deploy.local.logs import previous_log, replica_log, rotate
from chalk.deploy.log_lines import restart_line
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


def test_a_read_between_a_rotations_copy_and_its_emptying_reads_each_line_once(
    logs_dir: Path,
) -> None:
    path = log_of(logs_dir, "web-a")
    append(path, "line 0")
    log = ReplicaLog("web-a", path)
    first = log.read_existing()
    append(path, "line 1", "line 2")
    shutil.copyfile(path, previous_log(path))  # rotate's copy is done, its truncate not yet

    during = log.read_new()
    append(path, "line 3")  # written after the copy: lost to the truncate (as copytruncate)
    os.truncate(path, 0)
    append(path, "line 4")
    after = log.read_new()

    assert [line.text for line in first + during + after] == [
        "line 0",
        "line 1",
        "line 2",
        "line 4",
    ]
    assert log.read_new() == []


def test_a_rotation_written_past_the_read_position_again_is_still_seen(logs_dir: Path) -> None:
    path = log_of(logs_dir, "web-a")
    append(path, "line 0")
    log = ReplicaLog("web-a", path)
    first = log.read_existing()
    append(path, "line 1")
    assert rotate(path, max_bytes=5)
    append(path, "a much longer line 2, past where the reader was")

    later = log.read_new()

    assert [line.text for line in first + later] == [
        "line 0",
        "line 1",
        "a much longer line 2, past where the reader was",
    ]


def test_reading_in_the_middle_of_a_rotation_reads_the_copy_once(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    path = log_of(logs_dir, "web-a")
    append(path, "line 0", "line 1")
    shutil.copyfile(path, previous_log(path))

    assert read(catalog, group, logs_dir, replica="web-a") == ["[web-a] line 0", "[web-a] line 1"]


def times_of(*texts: str, written_by: dt.datetime) -> list[dt.datetime]:
    log = ReplicaLog("web-a", Path("unused"))
    return [line.time for line in log._lines("".join(t + "\n" for t in texts).encode(), written_by)]


def test_a_lines_own_time_is_kept_though_the_file_changed_earlier() -> None:
    stamp = dt.datetime(2026, 5, 1, 12, 0, 0, 500_000, tzinfo=dt.UTC)
    coarse_mtime = stamp - dt.timedelta(milliseconds=4)

    assert times_of(stamped("serving", stamp), written_by=coarse_mtime) == [stamp]


def test_an_old_date_printed_after_a_timed_line_is_not_the_lines_time() -> None:
    fresh = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    read_at = fresh + dt.timedelta(seconds=5)

    times = times_of(
        stamped("starting", fresh),
        "Traceback (most recent call last):",
        "2020-01-01 00:00:00 row 17 of the input is bad",
        written_by=read_at,
    )

    # The old date is words the program printed: both lines take the time the file changed.
    assert times == [fresh, read_at, read_at]


def test_an_untimed_line_is_never_earlier_than_the_timed_line_before_it() -> None:
    later = dt.datetime(2026, 5, 1, 12, 0, 1, tzinfo=dt.UTC)
    coarse_mtime = later - dt.timedelta(milliseconds=4)

    times = times_of(stamped("serving", later), "plain after it", written_by=coarse_mtime)

    assert times == [later, later]


def test_a_leading_iso_time_not_older_than_the_line_before_is_its_time() -> None:
    start = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    then = start + dt.timedelta(seconds=3)

    times = times_of(
        stamped("starting", start),
        "plain",
        f"{then:%Y-%m-%dT%H:%M:%S}Z GET / 200",
        written_by=then + dt.timedelta(seconds=9),
    )

    assert times == [start, then, then]


def test_the_controllers_restart_line_separates_runs_and_bounds_their_times() -> None:
    restarted = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    now = restarted + dt.timedelta(seconds=2)

    times = times_of(
        "model file is corrupt",
        restart_line(restarted, 1, "exit code 3"),
        "2020-01-01 00:00:00 model file is corrupt",
        written_by=now,
    )

    assert times == [restarted, restarted, now]


def test_a_gone_replicas_kept_log_is_read_and_said_to_be_gone(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    append(log_of(logs_dir, "web-old"), "the real crash error")
    notes: list[str] = []

    lines = replica_logs(
        catalog, group, logs_dir, LogQuery(replica="web-old", follow=True), note=notes.append
    )

    assert [line.text for line in lines] == ["the real crash error"]
    assert notes == [
        "replica 'web-old' of scaling group 'web' has gone; its log is kept in "
        ".chalk/logs/web/ for a week"
    ]


def test_an_unknown_replica_lists_the_gone_ones_whose_logs_are_kept(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    append(log_of(logs_dir, "web-old"), "bye")

    with pytest.raises(UnknownReplicaError, match=r"web-a, web-b; gone, their logs kept: web-old$"):
        read(catalog, group, logs_dir, replica="web-z")


def test_with_no_controller_and_no_replicas_the_kept_logs_print_and_following_ends(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    append(log_of(logs_dir, "web-a"), "@json a served")
    append(log_of(logs_dir, "web-b"), "@json b served")
    for replica_id in ("web-a", "web-b"):  # `chalk down` stopped them
        catalog.state.remove_replica(group.id, replica_id)
    notes: list[str] = []

    lines = replica_logs(
        catalog, group, logs_dir, LogQuery(follow=True), note=notes.append, controller_runs=False
    )

    assert [f"[{line.replica}] {message(line)}" for line in lines] == [
        "[web-a] a served",
        "[web-b] b served",
    ]
    [note] = notes
    assert "runs no replicas now" in note
    assert "`chalk up --detach`" in note


def test_a_group_scaled_to_zero_says_it_runs_no_replicas(
    catalog: Catalog, group: ScalingGroup, logs_dir: Path
) -> None:
    for replica_id in ("web-a", "web-b"):
        catalog.state.remove_replica(group.id, replica_id)
    notes: list[str] = []

    lines = list(replica_logs(catalog, group, logs_dir, LogQuery(), note=notes.append))

    assert (lines, notes) == ([], ["scaling group 'web' runs no replicas now"])
