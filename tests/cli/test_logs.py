"""``chalk logs`` on local replicas' log files: in this process through ``chalk.cli.main``, and
following as the real console script (Ctrl-C is a signal to a process)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.records import Replica
from chalk.catalog.specs import GroupSpec
from chalk.cli import main
from chalk.common.config import Project, load_project
from chalk.deploy.groups import pin_image
from chalk.deploy.local.logs import replica_log
from tests.deploy.local.conftest import RunningController, model_image, save_image, wait_for

CHALK = str(Path(sys.executable).with_name("chalk"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return load_project(tmp_path / "chalk.yaml")


@pytest.fixture
def catalog(project: Project) -> Catalog:
    return open_catalog(project)


def chalk(project: Project, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``chalk ARGS`` in ``project``: the exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}


def create(catalog: Catalog, name: str, spec: GroupSpec) -> str:
    pinned = pin_image(catalog, spec, port_given=False)
    return catalog.groups.create(name, pinned.to_dict(), backend="local").id


@pytest.fixture
def web(catalog: Catalog, project: Project) -> str:
    """Group ``web`` whose replica ``web-a`` has written two lines (no controller runs)."""
    save_image(catalog, project, "web:latest", entrypoint=("true",), exposed_port=8000)
    group_id = create(catalog, "web", GroupSpec(image="web:latest"))
    catalog.state.save_replica(
        Replica(group_id=group_id, replica_id="web-a", revision=1, state="Running")
    )
    log = replica_log(project.state_dir / "logs", "web", "web-a")
    log.parent.mkdir(parents=True)
    log.write_text("GET / 200\nGET /healthz 200\n")
    return group_id


@pytest.mark.usefixtures("web")
def test_lines_print_with_their_replica_and_time(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = chalk(project, capsys, "logs", "web", "--tail", "1", "--timestamps")

    assert code == 0, err
    assert re.fullmatch(r"\[web-a\] \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z GET /healthz 200\n", out)


@pytest.mark.usefixtures("web")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["nope"], r"'nope'", id="group"),
        pytest.param(
            ["web", "--replica", "web-z"],
            r"no replica 'web-z'; expected one of: web-a",
            id="replica",
        ),
    ],
)
def test_an_unknown_name_is_one_line_naming_it(
    project: Project, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = chalk(project, capsys, "logs", *args)

    assert code == 1
    assert out == ""
    assert re.fullmatch(rf"error: .*{message}.*\n", err)


def test_a_duration_it_cannot_read_is_a_usage_error(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = chalk(project, capsys, "logs", "web", "--since", "ten minutes")

    assert code == 2
    assert "expected a duration such as 30s, 10m or 1h, got 'ten minutes'" in err


class Follow:
    """``chalk logs GROUP -f`` in its own process, its output lines kept as they come."""

    def __init__(self, project: Project, group: str) -> None:
        self.process = subprocess.Popen(
            [CHALK, "logs", group, "-f"],
            cwd=project.root,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def replica_saying(self, text: str, *, other_than: str = "") -> str:
        """The replica of the first line containing ``text`` (not of ``other_than``)."""

        def found() -> str | None:
            for line in list(self.lines):
                replica, _, rest = line.partition("] ")
                if text in rest and replica[1:] != other_than:
                    return replica[1:]
            return None

        return str(wait_for(found, what=f"a line with {text!r} in {self.lines}"))

    def interrupt(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        _out, err = self.process.communicate(timeout=10)
        return self.process.returncode, err


def test_follow_picks_up_the_new_replica_of_a_roll_and_ends_quietly_on_ctrl_c(
    catalog: Catalog, project: Project
) -> None:
    model_image(catalog, project)
    create(catalog, "doubler", GroupSpec(image="model:latest", env={"FACTOR": "2"}))
    controller = RunningController(
        catalog,
        project,
        pass_interval_s=0.1,
        heartbeat_interval_s=0.5,
        ready_recheck_s=0.5,
        endpoint_drain_s=0.2,
    ).start()
    try:
        follow = Follow(project, "doubler")
        old = follow.replica_saying('"serving"')

        spec = GroupSpec.from_dict(catalog.groups.get("doubler").spec)
        catalog.groups.update("doubler", spec.with_changes(env={"FACTOR": "10"}).to_dict())

        new = follow.replica_saying('"serving"', other_than=old)
        assert follow.replica_saying('"stopped"') == old
        code, err = follow.interrupt()
    finally:
        controller.stop()

    assert new != old
    assert (code, err) == (130, "interrupted\n")


@pytest.mark.usefixtures("web")
def test_a_lines_own_time_prints_though_its_file_changed_earlier(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    log = replica_log(project.state_dir / "logs", "web", "web-a")
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=123_456)
    with log.open("a") as file:
        file.write(json.dumps({"timestamp": stamp.isoformat(), "message": "served"}) + "\n")
    earlier = stamp.timestamp() - 0.004  # a coarse mtime, before the line's own time
    os.utime(log, (earlier, earlier))

    code, out, err = chalk(project, capsys, "logs", "web", "--tail", "1", "--timestamps")

    assert code == 0, err
    assert out.startswith(f"[web-a] {stamp:%Y-%m-%dT%H:%M:%S.%fZ} {{")


@pytest.mark.usefixtures("web")
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--name", "web"], id="name"),
        pytest.param(["web", "--name", "web"], id="both-same"),
    ],
)
def test_the_group_may_be_given_as_name(
    project: Project, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = chalk(project, capsys, "logs", *args)

    assert (code, out, err) == (0, "[web-a] GET / 200\n[web-a] GET /healthz 200\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            [], r"expected a scaling group: chalk logs GROUP \(or --name GROUP\)", id="none"
        ),
        pytest.param(["web", "--name", "api"], r"two scaling groups given", id="two"),
        pytest.param(["web", "extra"], r"unrecognized arguments: extra", id="extra"),
        pytest.param(
            ["web", "--since", "-5m"],
            r"argument --since: expected a duration such as 30s, 10m or 1h \(how far back: "
            r"never negative\), got '-5m'",
            id="negative-since",
        ),
        pytest.param(
            ["web", "--since", "5000000d"],
            r"argument --since: the duration '5000000d' is out of range: expected 0 s to "
            r"31622400 s",
            id="since-days-overflow",
        ),
        pytest.param(
            ["web", "--since", "999999999999999999999s"],
            r"argument --since: the duration '999999999999999999999s' is out of range",
            id="since-seconds-overflow",
        ),
    ],
)
def test_a_usage_error_is_logs_own_usage_and_one_line(
    project: Project, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = chalk(project, capsys, "logs", *args)

    assert (code, out) == (2, "")
    assert err.startswith("usage: chalk logs ")
    assert re.search(rf"\nchalk logs: error: {message}", err), err
    assert "Traceback" not in err


def test_a_stopped_projects_group_prints_its_kept_logs_and_says_none_run(
    catalog: Catalog, project: Project, capsys: pytest.CaptureFixture[str], web: str
) -> None:
    catalog.state.remove_replica(web, "web-a")  # as `chalk down` leaves it

    code, out, err = chalk(project, capsys, "logs", "web", "-f")

    assert code == 0
    assert out == "[web-a] GET / 200\n[web-a] GET /healthz 200\n"
    assert err == (
        "note: scaling group 'web' runs no replicas now (no controller runs; "
        "`chalk up --detach` starts it); its replicas' logs kept in .chalk/logs/web/\n"
    )


def test_a_stopped_projects_group_without_logs_says_none_run(
    catalog: Catalog, project: Project, capsys: pytest.CaptureFixture[str], web: str
) -> None:
    catalog.state.remove_replica(web, "web-a")
    replica_log(project.state_dir / "logs", "web", "web-a").unlink()

    code, out, err = chalk(project, capsys, "logs", "web", "--replica", "web-z")

    assert code == 1
    assert "has no replica 'web-z'; expected one of: none (it runs no replica now)" in err

    code, out, err = chalk(project, capsys, "logs", "web")

    assert (code, out) == (0, "")
    assert "runs no replicas now" in err
    assert "no logs are kept in .chalk/logs/web/" in err


def test_a_gone_replicas_log_prints_with_a_note(
    project: Project, capsys: pytest.CaptureFixture[str], web: str
) -> None:
    old = replica_log(project.state_dir / "logs", "web", "web-9f1a4f")
    old.write_text("ValueError: model file is corrupt\n")

    code, out, err = chalk(project, capsys, "logs", "web", "--replica", "web-9f1a4f")

    assert (code, out) == (0, "[web-9f1a4f] ValueError: model file is corrupt\n")
    assert err == (
        "note: replica 'web-9f1a4f' of scaling group 'web' has gone; its log is kept in "
        ".chalk/logs/web/ for a week\n"
    )


def test_a_deleted_groups_kept_logs_print_with_a_note(
    catalog: Catalog, project: Project, capsys: pytest.CaptureFixture[str], web: str
) -> None:
    catalog.groups.delete("web")

    code, out, err = chalk(project, capsys, "logs", "web", "-f")

    assert (code, out) == (0, "[web-a] GET / 200\n[web-a] GET /healthz 200\n")
    assert re.fullmatch(
        r"note: scaling group 'web' was deleted at [\d-]+ [\d:]+ UTC; its replicas' logs are "
        r"kept in \.chalk/logs/web/ for a week\n",
        err,
    )


def test_a_deleted_group_without_kept_logs_is_an_error_saying_so(
    catalog: Catalog, project: Project, capsys: pytest.CaptureFixture[str], web: str
) -> None:
    catalog.groups.delete("web")
    replica_log(project.state_dir / "logs", "web", "web-a").unlink()

    code, out, err = chalk(project, capsys, "logs", "web")

    assert (code, out) == (1, "")
    assert re.fullmatch(r"error: scaling group 'web' was deleted at .*\n", err)
