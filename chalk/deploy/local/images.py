"""Local image builds: a Dockerfile's build context snapshotted into the project's image store.

``chalk image build`` calls ``build_image`` and ``check_tag``. The work is split by job:
``build_context`` (the files and .dockerignore), ``image_builder`` (the instructions),
``image_store`` (digest and snapshot), ``image_tags`` (tags); the Dockerfile types and the
replica helpers live in ``dockerfile`` and ``image_runtime``. ``build_image``, ``check_tag``
and what the CLI and the backends use of those modules are re-exported here.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chalk.catalog.records import LocalImage
from chalk.deploy.local.build_context import (
    BuildContext,
    context_root,
    dockerfile_path,
    read_dockerfile,
    read_dockerignore,
)
from chalk.deploy.local.dockerfile import (
    BuildError,
    DockerfileError,
    parse_dockerfile,
)
from chalk.deploy.local.image_builder import (
    FROM_UNUSED,
    RUN_NOT_EXECUTED,
    BuildStep,
    ImageBuilder,
)
from chalk.deploy.local.image_runtime import (
    image_argv,
    image_port,
    replica_cwd,
    replica_env,
    rootfs_path,
)
from chalk.deploy.local.image_store import image_digest, move_into_place
from chalk.deploy.local.image_tags import check_tag

__all__ = [
    "FROM_UNUSED",
    "RUN_NOT_EXECUTED",
    "BuildError",
    "BuildResult",
    "DockerfileError",
    "build_image",
    "check_tag",
    "image_argv",
    "image_port",
    "replica_cwd",
    "replica_env",
    "rootfs_path",
]


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A finished build: the image to record, a step per instruction, and the labels kept.

    ``reused`` is true when a snapshot of the same digest already existed and was kept.
    """

    image: LocalImage
    steps: tuple[BuildStep, ...]
    labels: dict[str, str]
    reused: bool


def build_image(context: Path, *, store_dir: Path, dockerfile: Path | None = None) -> BuildResult:
    """Snapshot ``context`` as its Dockerfile describes into ``store_dir/<digest hex>/rootfs``.

    COPY and ADD of local files are carried out; ENTRYPOINT, CMD, ENV, WORKDIR, EXPOSE and
    LABEL are recorded; FROM is not used and RUN not executed, and the steps say so, as they
    name every instruction the local backend cannot honour. ``.dockerignore`` is honoured.
    The digest covers the image's settings and every file's path, mode and content, so an
    unchanged context builds to the same digest (its snapshot is kept). A failed build
    leaves nothing in ``store_dir``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     context = Path(folder) / "model"
    ...     context.mkdir()
    ...     _ = (context / "model.py").write_text("def handler(event, context): ...\\n")
    ...     _ = (context / "Dockerfile").write_text(
    ...         "FROM python:3.11-slim\\nWORKDIR /app\\nCOPY model.py .\\n"
    ...         'ENTRYPOINT ["chalk-remote-call", "--handler", "model.handler"]\\n'
    ...     )
    ...     result = build_image(context, store_dir=Path(folder) / "images")
    ...     print(result.image.entrypoint, result.image.workdir)
    ...     print(*(f"{s.line} {s.outcome}" for s in result.steps), sep="\\n")
    ...     print((Path(result.image.snapshot_path) / "app" / "model.py").is_file())
    ('chalk-remote-call', '--handler', 'model.handler') /app
    1 not used: the project's Python runs the image
    2 working directory /app
    3 copied 1 file
    4 entrypoint ["chalk-remote-call", "--handler", "model.handler"]
    True
    """
    root = context_root(context)
    path = dockerfile_path(root, dockerfile)
    parsed = parse_dockerfile(read_dockerfile(path), path=str(path))
    if not parsed.instructions:
        # Docker refuses it too; stored, it would fail only when a group runs it.
        raise DockerfileError(
            f"{path} has no instructions: expected at least an ENTRYPOINT or CMD saying what "
            f'the image runs, e.g. ENTRYPOINT ["chalk-remote-call", "--handler", '
            f'"model.handler"]'
        )
    store = store_dir.resolve()
    store.mkdir(parents=True, exist_ok=True)
    files = BuildContext(root, read_dockerignore(root), skip=(store,))
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=store))
    try:
        rootfs = scratch / "rootfs"
        rootfs.mkdir()
        builder = ImageBuilder(parsed, files, rootfs)
        builder.run()
        digest = image_digest(builder.config, rootfs)
        final = store / digest.removeprefix("sha256:")
        scratch.chmod(0o755)
        reused = move_into_place(scratch, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    config = builder.config
    image = LocalImage(
        digest=digest,
        snapshot_path=str(final / "rootfs"),
        entrypoint=config.entrypoint,
        cmd=config.cmd,
        env=dict(config.env),
        workdir=config.workdir,
        exposed_port=config.exposed_port,
        created_at=dt.datetime.now(dt.UTC),
    )
    return BuildResult(image, tuple(builder.steps), dict(config.labels), reused)
