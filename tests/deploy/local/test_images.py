"""Local images: snapshot builds, digests, tags, and the helpers replicas use."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from chalk.catalog.errors import ValidationError
from chalk.catalog.records import LocalImage
from chalk.catalog.specs import GroupSpec
from chalk.deploy.local.images import (
    FROM_UNUSED,
    RUN_NOT_EXECUTED,
    BuildError,
    BuildResult,
    DockerfileError,
    build_image,
    check_tag,
    image_argv,
    image_port,
    replica_cwd,
    replica_env,
    rootfs_path,
)
from chalk.deploy.local.launching import replica_argv

FILES = {
    "a.txt": "a\n",
    "b.txt": "b\n",
    "notes.md": "notes\n",
    "src/top.py": "top\n",
    "src/pkg/m.py": "m\n",
}


def make_context(root: Path, dockerfile: str, files: Mapping[str, str | bytes]) -> Path:
    context = root / "context"
    for name, content in {**files, "Dockerfile": dockerfile}.items():
        path = context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return context


def build(
    tmp_path: Path, dockerfile: str, files: Mapping[str, str | bytes] | None = None
) -> BuildResult:
    context = make_context(tmp_path, dockerfile, FILES if files is None else files)
    return build_image(context, store_dir=tmp_path / "images")


def snapshot_files(result: BuildResult) -> dict[str, str]:
    """Each file in the snapshot by container path, with its text."""
    rootfs = Path(result.image.snapshot_path)
    return {
        "/" + path.relative_to(rootfs).as_posix(): path.read_text()
        for path in sorted(rootfs.rglob("*"))
        if path.is_file()
    }


def outcomes(result: BuildResult) -> dict[int, str]:
    return {step.line: step.outcome for step in result.steps}


def snapshots(tmp_path: Path) -> list[str]:
    store = tmp_path / "images"
    return sorted(p.name for p in store.iterdir()) if store.exists() else []


def image(**changes: object) -> LocalImage:
    fields: dict[str, object] = {
        "digest": "sha256:" + "ab" * 32,
        "snapshot_path": "/p/.chalk/images/abab/rootfs",
        "entrypoint": (),
        "cmd": (),
        "env": {},
        "workdir": "/",
        "exposed_port": None,
        "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    fields.update(changes)
    return LocalImage(**fields)  # type: ignore[arg-type]


# --- image settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "env"),
    [
        pytest.param('ENV A=1 B="v 2"', {"A": "1", "B": "v 2"}, id="pairs"),
        pytest.param("ENV A v 1", {"A": "v 1"}, id="legacy"),
        pytest.param("ENV A=1\nENV A=2 B=$A", {"A": "2", "B": "1"}, id="previous_values"),
        pytest.param("ARG V=3\nENV X=v$V", {"X": "v3"}, id="arg"),
        pytest.param("ARG P=/a\nENV P=/b\nENV Q=$P", {"P": "/b", "Q": "/b"}, id="env_wins"),
        pytest.param("ENV D=${MISSING:-/default}", {"D": "/default"}, id="default"),
        pytest.param("ENV A=1 \\\n    B=2", {"A": "1", "B": "2"}, id="continuation"),
        pytest.param("ARG V\nENV X=[$V]", {"X": "[]"}, id="arg_without_value"),
    ],
)
def test_env(tmp_path: Path, lines: str, env: dict[str, str]) -> None:
    result = build(tmp_path, f"FROM python:3.11\n{lines}\n")

    assert result.image.env == env


@pytest.mark.parametrize(
    ("lines", "workdir"),
    [
        pytest.param("", "/", id="default"),
        pytest.param("WORKDIR /app", "/app", id="absolute"),
        pytest.param("WORKDIR /app\nWORKDIR src", "/app/src", id="relative_joins"),
        pytest.param("WORKDIR /a\nWORKDIR b/../c/", "/a/c", id="normalised"),
        pytest.param("ARG ROOT=/srv\nWORKDIR ${ROOT}/model", "/srv/model", id="arg"),
        pytest.param("ENV APP=/opt/x\nWORKDIR $APP", "/opt/x", id="env"),
    ],
)
def test_workdir(tmp_path: Path, lines: str, workdir: str) -> None:
    result = build(tmp_path, f"FROM python:3.11\n{lines}\n")

    assert result.image.workdir == workdir
    assert rootfs_path(result.image, workdir).is_dir()


@pytest.mark.parametrize(
    ("lines", "entrypoint", "cmd"),
    [
        pytest.param(
            'ENTRYPOINT ["serve", "--port", "80"]', ("serve", "--port", "80"), (), id="ep"
        ),
        pytest.param('CMD ["python", "app.py"]', (), ("python", "app.py"), id="cmd"),
        pytest.param(
            "CMD python app.py --port $PORT",
            (),
            ("/bin/sh", "-c", "python app.py --port $PORT"),
            id="shell_form",
        ),
        pytest.param(
            "ENTRYPOINT serve \\\n  --fast",
            ("/bin/sh", "-c", "serve   --fast"),
            (),
            id="shell_form_continued",
        ),
        pytest.param(
            'ENTRYPOINT ["tini", "--"]\nCMD ["serve"]', ("tini", "--"), ("serve",), id="both"
        ),
        pytest.param("CMD ['serve']", (), ("/bin/sh", "-c", "['serve']"), id="single_quotes"),
        pytest.param('CMD ["a"]\nCMD ["b"]', (), ("b",), id="last_wins"),
    ],
)
def test_entrypoint_and_cmd(
    tmp_path: Path, lines: str, entrypoint: tuple[str, ...], cmd: tuple[str, ...]
) -> None:
    result = build(tmp_path, f"FROM python:3.11\n{lines}\n")

    assert (result.image.entrypoint, result.image.cmd) == (entrypoint, cmd)


def test_a_json_mistake_in_exec_form_is_pointed_out(tmp_path: Path) -> None:
    result = build(tmp_path, "FROM python:3.11\nCMD ['serve']\n")

    assert "write double quotes for exec form" in outcomes(result)[2]


@pytest.mark.parametrize(
    ("lines", "port"),
    [
        pytest.param("", None, id="none"),
        pytest.param("EXPOSE 8000", 8000, id="plain"),
        pytest.param("EXPOSE 8080/tcp", 8080, id="protocol"),
        pytest.param("EXPOSE 7000 7001/udp", 7000, id="first_of_many"),
        pytest.param("EXPOSE 7000\nEXPOSE 9000", 7000, id="first_instruction"),
        pytest.param("ARG PORT=6000\nEXPOSE $PORT", 6000, id="arg"),
    ],
)
def test_expose(tmp_path: Path, lines: str, port: int | None) -> None:
    result = build(tmp_path, f"FROM python:3.11\n{lines}\n")

    assert result.image.exposed_port == port


def test_labels_are_kept_and_change_the_digest(tmp_path: Path) -> None:
    first = build(tmp_path, 'FROM x\nLABEL owner="nlp team" "tier"=gold\n')
    second = build(tmp_path, 'FROM x\nLABEL owner="nlp team" tier=silver\n')

    assert first.labels == {"owner": "nlp team", "tier": "gold"}
    assert first.image.digest != second.image.digest


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("EXPOSE http", r"Dockerfile:2: EXPOSE takes PORT\[/PROTOCOL\]", id="expose"),
        pytest.param("ENV A", r"Dockerfile:2: ENV A has no value", id="env_no_value"),
        pytest.param("ENV A=1 B", r"Dockerfile:2: ENV takes NAME=VALUE pairs", id="env_pair"),
        pytest.param('ENV A="x', r"Dockerfile:2: a double quote is not closed", id="quote"),
        pytest.param("WORKDIR", r"Dockerfile:2: WORKDIR needs a path", id="workdir"),
        pytest.param("CMD", r"Dockerfile:2: CMD needs arguments", id="cmd"),
        pytest.param("COPY a.txt", r"Dockerfile:2: COPY needs a source and a dest", id="copy"),
        pytest.param("COPY --mode=1 a /b", r"Dockerfile:2: unknown flag --mode", id="flag"),
        pytest.param("ARG 1x=2", r"Dockerfile:2: ARG takes NAME\[=default\]", id="arg"),
    ],
)
def test_instruction_errors_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        build(tmp_path, f"FROM python:3.11\n{line}\n")

    assert snapshots(tmp_path) == []


# --- what the build says --------------------------------------------------------------


def test_from_is_not_used_and_run_is_not_executed(tmp_path: Path) -> None:
    result = build(tmp_path, "FROM python:3.11-slim\nRUN pip install -r requirements.txt\n")

    assert outcomes(result) == {1: FROM_UNUSED, 2: RUN_NOT_EXECUTED}
    assert "the project's Python runs the image" in FROM_UNUSED
    assert result.steps[1].instruction == "RUN pip install -r requirements.txt"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param("USER nobody", "the user who runs the controller", id="user"),
        pytest.param("VOLUME /data", "mounts no volumes", id="volume"),
        pytest.param("HEALTHCHECK CMD curl -f localhost", "gRPC health check", id="healthcheck"),
        pytest.param('SHELL ["/bin/bash", "-c"]', "/bin/sh -c", id="shell"),
        pytest.param("STOPSIGNAL SIGINT", "SIGTERM", id="stopsignal"),
        pytest.param("ONBUILD RUN make", "nothing builds on", id="onbuild"),
        pytest.param("COPY --from=builder /out /app/", "--from=builder copies from", id="from"),
        pytest.param("COPY --parents a.txt /x/", "COPY --parents", id="parents"),
        pytest.param("ADD https://example.com/m.bin /m", "ADD of a URL", id="add_url"),
        pytest.param("ADD data.tar.gz /data/", "ADD of the tar archive", id="add_archive"),
        pytest.param("COPY <<EOF /x\nhi\nEOF", "heredoc", id="copy_heredoc"),
    ],
)
def test_what_cannot_be_honoured_is_named(tmp_path: Path, line: str, reason: str) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    files: dict[str, str | bytes] = {**FILES, "data.tar.gz": archive.getvalue()}

    result = build(tmp_path, f"FROM python:3.11\n{line}\n", files)

    outcome = outcomes(result)[2]
    assert outcome.startswith("not honoured: ")
    assert reason in outcome
    assert snapshot_files(result) == {}


def test_only_the_last_stage_makes_the_image(tmp_path: Path) -> None:
    dockerfile = (
        "ARG PY=3.11\n"
        "FROM python:$PY AS builder\n"
        "ENV STAGE=builder\n"
        "COPY a.txt /a.txt\n"
        "FROM python:${PY}-slim\n"
        "ARG PY\n"
        "ENV STAGE=final PY=$PY\n"
        "COPY b.txt /b.txt\n"
    )

    result = build(tmp_path, dockerfile)

    said = outcomes(result)
    assert said[2] == FROM_UNUSED
    assert said[3] == said[4] == "skipped: not part of the last stage"
    assert said[5].startswith("not honoured: multi-stage builds")
    assert result.image.env == {"STAGE": "final", "PY": "3.11"}
    assert snapshot_files(result) == {"/b.txt": "b\n"}


def test_only_arg_may_come_before_from(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match=r"Dockerfile:1: ENV comes before FROM"):
        build(tmp_path, "ENV A=1\nFROM python:3.11\n")


def test_ignored_copy_flags_are_noted_and_the_copy_happens(tmp_path: Path) -> None:
    result = build(tmp_path, "FROM x\nCOPY --chown=app:app --chmod=600 a.txt /app/\n")

    assert outcomes(result)[2].startswith("copied 1 file; --chown ignored")
    assert "--chmod ignored" in outcomes(result)[2]
    assert snapshot_files(result) == {"/app/a.txt": "a\n"}


# --- COPY -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param("COPY a.txt /etc/conf.txt", {"/etc/conf.txt": "a\n"}, id="file_to_file"),
        pytest.param("COPY a.txt /app/", {"/app/a.txt": "a\n"}, id="file_into_folder"),
        pytest.param(
            "WORKDIR /app\nCOPY a.txt /app", {"/app/a.txt": "a\n"}, id="file_into_existing_folder"
        ),
        pytest.param(
            "COPY src /app", {"/app/top.py": "top\n", "/app/pkg/m.py": "m\n"}, id="folder_contents"
        ),
        pytest.param("COPY *.txt /app/", {"/app/a.txt": "a\n", "/app/b.txt": "b\n"}, id="glob"),
        pytest.param("COPY src/*/m.py /lib/", {"/lib/m.py": "m\n"}, id="glob_in_folder"),
        pytest.param(
            "COPY a.txt b.txt /app/", {"/app/a.txt": "a\n", "/app/b.txt": "b\n"}, id="two"
        ),
        pytest.param(
            "WORKDIR /app\nCOPY a.txt conf/x.txt", {"/app/conf/x.txt": "a\n"}, id="relative_dest"
        ),
        pytest.param("WORKDIR /app\nCOPY a.txt .", {"/app/a.txt": "a\n"}, id="dot"),
        pytest.param(
            'COPY ["notes.md", "/doc/read me.md"]', {"/doc/read me.md": "notes\n"}, id="json_form"
        ),
        pytest.param("ARG F=a\nCOPY $F.txt /${F}/", {"/a/a.txt": "a\n"}, id="arg"),
        pytest.param("COPY ../../a.txt /x", {"/x": "a\n"}, id="clamped_to_context"),
        pytest.param(
            "COPY a.txt /app/x\nCOPY b.txt /app/x", {"/app/x": "b\n"}, id="later_copy_overwrites"
        ),
        pytest.param("add a.txt /a", {"/a": "a\n"}, id="add_local_file"),
    ],
)
def test_copy(tmp_path: Path, lines: str, expected: dict[str, str]) -> None:
    result = build(tmp_path, f"FROM python:3.11\n{lines}\n")

    assert snapshot_files(result) == expected


def test_copy_of_the_whole_context_counts_its_files(tmp_path: Path) -> None:
    result = build(tmp_path, "FROM x\nCOPY . /app/\n")

    assert set(snapshot_files(result)) == {
        "/app/Dockerfile",
        "/app/a.txt",
        "/app/b.txt",
        "/app/notes.md",
        "/app/src/top.py",
        "/app/src/pkg/m.py",
    }
    assert outcomes(result)[2] == "copied 6 files"


def test_copy_keeps_modes_and_symlinks_inside_folders(tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM x\nCOPY bin /app/bin\n", {"bin/run": "#!/bin/sh\n"})
    (context / "bin" / "run").chmod(0o755)
    (context / "bin" / "alias").symlink_to("run")

    result = build_image(context, store_dir=tmp_path / "images")

    copied = Path(rootfs_path(result.image, "/app/bin"))
    assert (copied / "run").stat().st_mode & 0o777 == 0o755
    assert os.readlink(copied / "alias") == "run"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(
            "COPY missing.txt /app/",
            r"Dockerfile:3: COPY source 'missing.txt' is not in the build context .*: expected a",
            id="missing",
        ),
        pytest.param("COPY *.csv /data/", r"Dockerfile:3: COPY source '\*.csv'", id="no_match"),
        pytest.param(
            "COPY a.txt b.txt /app",
            r"Dockerfile:3: COPY of several sources needs a folder destination ending in '/'",
            id="several_sources",
        ),
        pytest.param(
            "COPY secret.key /app/",
            r"Dockerfile:3: COPY source 'secret.key' .*: \.dockerignore excludes it",
            id="dockerignored",
        ),
    ],
)
def test_a_failed_build_says_where_and_leaves_no_snapshot(
    tmp_path: Path, line: str, message: str
) -> None:
    files = {**FILES, "secret.key": "k", ".dockerignore": "*.key\n"}

    with pytest.raises(BuildError, match=message):
        build(tmp_path, f"FROM python:3.11\nCOPY a.txt /first/\n{line}\n", files)

    assert snapshots(tmp_path) == []


def test_copy_never_writes_through_a_symlink_out_of_the_snapshot(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    context = make_context(tmp_path, "FROM x\nCOPY links /\nCOPY a.txt /escape/\n", FILES)
    (context / "links").mkdir()
    (context / "links" / "escape").symlink_to(outside)

    with pytest.raises(BuildError, match=r"Dockerfile:3: .*passes through the symlink escape"):
        build_image(context, store_dir=tmp_path / "images")

    assert list(outside.iterdir()) == []


def test_dockerignore_is_honoured(tmp_path: Path) -> None:
    files = {
        **FILES,
        "build.log": "x",
        "src/debug.log": "kept: patterns are anchored at the context root",
        "src/pkg/__pycache__/m.pyc": "x",
        "data/big.bin": "x",
        "data/keep.txt": "kept",
        ".dockerignore": "# caches\n*.log\n**/__pycache__\ndata/\n!data/keep.txt\nDockerfile\n",
    }

    result = build(tmp_path, "FROM x\nCOPY . /app/\n", files)

    assert set(snapshot_files(result)) == {
        "/app/.dockerignore",
        "/app/a.txt",
        "/app/b.txt",
        "/app/notes.md",
        "/app/src/top.py",
        "/app/src/debug.log",
        "/app/src/pkg/m.py",
        "/app/data/keep.txt",
    }


def test_the_project_state_is_never_copied(tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM x\nCOPY . /app/\n", {"a.txt": "a"})
    (context / ".chalk" / "catalog.db").parent.mkdir()
    (context / ".chalk" / "catalog.db").write_text("db")

    result = build_image(context, store_dir=context / ".chalk" / "images")

    assert set(snapshot_files(result)) == {"/app/Dockerfile", "/app/a.txt"}


# --- digests --------------------------------------------------------------------------


def test_an_unchanged_context_rebuilds_to_the_same_digest(tmp_path: Path) -> None:
    dockerfile = 'FROM x\nWORKDIR /app\nCOPY . .\nCMD ["serve"]\n'
    context = make_context(tmp_path, dockerfile, FILES)

    first = build_image(context, store_dir=tmp_path / "images")
    second = build_image(context, store_dir=tmp_path / "images")

    assert first.image.digest == second.image.digest
    assert first.image.digest.startswith("sha256:")
    assert (first.reused, second.reused) == (False, True)
    assert snapshots(tmp_path) == [first.image.digest.removeprefix("sha256:")]
    assert first.image.snapshot_path == str(
        (tmp_path / "images" / snapshots(tmp_path)[0] / "rootfs").resolve()
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: (c / "a.txt").write_text("changed\n"), id="content"),
        pytest.param(lambda c: (c / "a.txt").chmod(0o755), id="mode"),
        pytest.param(lambda c: (c / "new.txt").write_text("new\n"), id="new_file"),
        pytest.param(lambda c: (c / "a.txt").rename(c / "z.txt"), id="renamed"),
        pytest.param(
            lambda c: (c / "Dockerfile").write_text('FROM x\nCOPY . /app/\nCMD ["b"]\n'),
            id="config",
        ),
    ],
)
def test_a_change_gives_a_new_digest(tmp_path: Path, change: Callable[[Path], object]) -> None:
    context = make_context(tmp_path, 'FROM x\nCOPY . /app/\nCMD ["a"]\n', FILES)
    (context / "a.txt").chmod(0o644)
    first = build_image(context, store_dir=tmp_path / "images")

    change(context)
    second = build_image(context, store_dir=tmp_path / "images")

    assert second.image.digest != first.image.digest
    assert Path(first.image.snapshot_path).is_dir()
    assert len(snapshots(tmp_path)) == 2


@pytest.mark.parametrize(
    ("context", "dockerfile", "message"),
    [
        pytest.param("nowhere", None, r"build context '.*nowhere' is not a folder", id="context"),
        pytest.param("empty", None, r"no Dockerfile in the build context", id="no_dockerfile"),
        pytest.param(
            "empty", "Other.Dockerfile", r"Dockerfile '.*Other.Dockerfile' not found", id="f"
        ),
    ],
)
def test_a_missing_context_or_dockerfile_is_a_build_error(
    tmp_path: Path, context: str, dockerfile: str | None, message: str
) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(BuildError, match=message):
        build_image(
            tmp_path / context,
            store_dir=tmp_path / "images",
            dockerfile=None if dockerfile is None else tmp_path / dockerfile,
        )


def test_another_dockerfile_can_be_named(tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM x\n", FILES)
    other = tmp_path / "serve.Dockerfile"
    other.write_text('FROM x\nCMD ["serve"]\n')

    result = build_image(context, store_dir=tmp_path / "images", dockerfile=other)

    assert result.image.cmd == ("serve",)


# --- tags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "normalized"),
    [
        pytest.param("ner", "ner:latest", id="bare"),
        pytest.param("ner:v1.2", "ner:v1.2", id="tagged"),
        pytest.param("team/ner-model_x:Prod", "team/ner-model_x:Prod", id="path"),
        pytest.param("localhost:5000/ner", "localhost:5000/ner:latest", id="registry_port"),
    ],
)
def test_check_tag_accepts(tag: str, normalized: str) -> None:
    assert check_tag(tag) == normalized


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("Ner", id="uppercase"),
        pytest.param("ner:", id="empty_tag"),
        pytest.param("ner:v 1", id="space"),
        pytest.param("ner@sha256:abc", id="digest"),
        pytest.param("-ner", id="leading_dash"),
        pytest.param("", id="empty"),
    ],
)
def test_check_tag_refuses(tag: str) -> None:
    with pytest.raises(ValidationError, match=r"image tag .* is not valid: expected name\[:tag\]"):
        check_tag(tag)


# --- helpers for replicas -------------------------------------------------------------


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "override", "argv"),
    [
        pytest.param(("serve",), ("--port", "80"), None, ["serve", "--port", "80"], id="both"),
        pytest.param((), ("python", "app.py"), None, ["python", "app.py"], id="cmd_alone"),
        pytest.param(("serve",), (), None, ["serve"], id="entrypoint_alone"),
        pytest.param(("serve",), ("--fast",), ["other", "x"], ["other", "x"], id="override"),
        pytest.param((), ("python", "app.py"), ["other"], ["other"], id="override_drops_cmd"),
        pytest.param(("serve",), ("--fast",), [], ["serve", "--fast"], id="empty_override"),
    ],
)
def test_image_argv(
    entrypoint: tuple[str, ...],
    cmd: tuple[str, ...],
    override: list[str] | None,
    argv: list[str],
) -> None:
    assert image_argv(image(entrypoint=entrypoint, cmd=cmd), override) == argv


def test_image_argv_of_an_image_without_a_command() -> None:
    with pytest.raises(ValidationError, match=r"image sha256:abababababab has no command"):
        image_argv(image(), None)


@pytest.mark.parametrize(
    ("exposed", "command", "argv", "port"),
    [
        pytest.param(7000, ("serve", "--port", "9000"), None, 7000, id="expose_wins"),
        pytest.param(None, ("serve", "--port", "9000"), None, 9000, id="port_flag"),
        pytest.param(None, ("serve", "--port=9001"), None, 9001, id="port_equals"),
        pytest.param(None, ("serve", "--port", "9000"), ["x", "--port", "9100"], 9100, id="argv"),
        pytest.param(None, ("serve", "--port", "http"), None, 8080, id="not_a_number"),
        pytest.param(None, ("serve",), None, 8080, id="default"),
    ],
)
def test_image_port(
    exposed: int | None, command: tuple[str, ...], argv: list[str] | None, port: int
) -> None:
    assert image_port(image(exposed_port=exposed, cmd=command), argv) == port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("/app", "{rootfs}/app", id="folder"),
        pytest.param("/app/model.py", "{rootfs}/app/model.py", id="file"),
        pytest.param("/app:/lib:/usr/lib", "{rootfs}/app:{rootfs}/lib:/usr/lib", id="list"),
        pytest.param("/usr/bin", "/usr/bin", id="absent"),
        pytest.param("fast", "fast", id="not_a_path"),
        pytest.param("http://host:80/app", "http://host:80/app", id="url"),
        pytest.param("/app/", "{rootfs}/app/", id="trailing_slash"),
    ],
)
def test_replica_env(tmp_path: Path, value: str, expected: str) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "model.py").write_text("")
    (tmp_path / "lib").mkdir()

    env = replica_env(image(snapshot_path=str(tmp_path), env={"VALUE": value}))

    assert env == {"VALUE": expected.format(rootfs=tmp_path)}


def test_replica_env_of_a_built_image(tmp_path: Path) -> None:
    result = build(tmp_path, "FROM x\nWORKDIR /app\nCOPY src .\nENV PYTHONPATH=/app:/opt/lib\n")

    env = replica_env(result.image)

    assert env == {"PYTHONPATH": f"{result.image.snapshot_path}/app:/opt/lib"}


@pytest.mark.parametrize(
    ("workdir", "relative"),
    [
        pytest.param("/", "", id="root"),
        pytest.param("/srv/model", "srv/model", id="nested"),
    ],
)
def test_replica_cwd_is_created_inside_the_snapshot(
    tmp_path: Path, workdir: str, relative: str
) -> None:
    cwd = replica_cwd(image(snapshot_path=str(tmp_path / "rootfs"), workdir=workdir))

    assert cwd == tmp_path / "rootfs" / relative
    assert cwd.is_dir()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/app/m.py", "app/m.py", id="absolute"),
        pytest.param("m.py", "work/m.py", id="relative_to_workdir"),
        pytest.param("/../../etc", "etc", id="stays_inside"),
        pytest.param("/", "", id="root"),
    ],
)
def test_rootfs_path(path: str, expected: str) -> None:
    found = rootfs_path(image(snapshot_path="/s/rootfs", workdir="/work"), path)

    assert found == Path("/s/rootfs") / expected


@pytest.mark.parametrize(
    "entrypoint",
    [
        pytest.param(("python", "/app/hello.py"), id="absolute"),
        pytest.param(("python", "hello.py"), id="relative_to_workdir"),
        pytest.param(("python", "/app/../app/hello.py"), id="unnormalised"),
    ],
)
def test_an_entrypoint_naming_an_image_path_runs_the_copied_file(
    tmp_path: Path, entrypoint: tuple[str, ...]
) -> None:
    result = build(
        tmp_path,
        "FROM python:3.11\nWORKDIR /app\nCOPY hello.py /app/\n",
        {"hello.py": "print('hello from the image')\n"},
    )
    spec = GroupSpec(image="hello:1", entrypoint=entrypoint)

    argv = replica_argv(result.image, spec, port=8080)
    ran = subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=replica_cwd(result.image),
        capture_output=True,
        text=True,
        check=False,
    )

    assert ran.stdout == "hello from the image\n", ran.stderr
    assert argv[1] in ("hello.py", str(rootfs_path(result.image, "/app/hello.py")))


def test_only_paths_that_exist_in_the_image_are_rewritten(tmp_path: Path) -> None:
    result = build(tmp_path, "FROM python:3.11\nCOPY hello.py /app/\n", {"hello.py": ""})
    spec = GroupSpec(
        image="hello:1",
        entrypoint=("/usr/bin/env", "python", "/app/hello.py", "--out=/app", "--log=/var/x"),
    )

    argv = replica_argv(result.image, spec, port=8080)

    app = rootfs_path(result.image, "/app")
    assert argv == ["/usr/bin/env", "python", f"{app}/hello.py", f"--out={app}", "--log=/var/x"]
