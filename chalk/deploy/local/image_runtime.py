"""How a replica runs a local image: its command, port, environment and working directory.

The local controller and the group commands call these (through ``images`` or directly).
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from chalk.catalog.errors import ValidationError
from chalk.catalog.records import LocalImage

__all__ = [
    "DEFAULT_PORT",
    "argv_port",
    "clean_container_path",
    "image_argv",
    "image_port",
    "replica_args",
    "replica_cwd",
    "replica_env",
    "rootfs_path",
]

# The port of an image that neither EXPOSEs one nor passes --port to its command.
DEFAULT_PORT: Final = 8080


def image_argv(image: LocalImage, entrypoint_override: Sequence[str] | None) -> list[str]:
    """The command a replica runs, by Docker's rules.

    ENTRYPOINT followed by CMD; CMD alone when there is no ENTRYPOINT; an override (a
    group's entrypoint) replaces ENTRYPOINT and drops CMD, as ``command`` does on
    Kubernetes. An empty override counts as none. No command at all is a ``ValidationError``.

    Examples
    --------
    >>> image = _example_image(entrypoint=("python", "serve.py"), cmd=("--port", "9000"))
    >>> image_argv(image, None)
    ['python', 'serve.py', '--port', '9000']
    >>> image_argv(image, ["python", "other.py"])
    ['python', 'other.py']
    >>> image_argv(_example_image(), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: image ner:latest (sha256:0123456789ab) has no command...
    """
    if entrypoint_override:
        return list(entrypoint_override)
    argv = [*image.entrypoint, *image.cmd]
    if not argv:
        raise ValidationError(
            f"image {_image_name(image)} has no command: expected an ENTRYPOINT or CMD in its "
            f"Dockerfile, got neither; add one and rebuild, or give the group an entrypoint"
        )
    return argv


def image_port(image: LocalImage, argv: Sequence[str] | None = None) -> int:
    """The port an image serves: its EXPOSE, else the ``--port`` in ``argv`` (default: the
    image's own command), else 8080.

    Examples
    --------
    >>> image_port(_example_image(exposed_port=7000, cmd=("--port", "9000")))
    7000
    >>> image_port(_example_image(cmd=("serve", "--port=9000")))
    9000
    >>> image_port(_example_image(cmd=("serve",)), ["serve", "--port", "9100"])
    9100
    >>> image_port(_example_image())
    8080
    """
    if image.exposed_port is not None:
        return image.exposed_port
    command = [*image.entrypoint, *image.cmd] if argv is None else list(argv)
    port = argv_port(command)
    return DEFAULT_PORT if port is None else port


def rootfs_path(image: LocalImage, container_path: str) -> Path:
    """Where ``container_path`` lives in the image's snapshot (relative: to its WORKDIR).

    Examples
    --------
    >>> image = _example_image(workdir="/app")
    >>> rootfs_path(image, "/app/model.py").as_posix()
    '/p/.chalk/images/0123456789ab/rootfs/app/model.py'
    >>> rootfs_path(image, "data/../../etc").as_posix()
    '/p/.chalk/images/0123456789ab/rootfs/etc'
    """
    clean = clean_container_path(posixpath.join(image.workdir, container_path))
    return Path(image.snapshot_path).joinpath(*clean.split("/")[1:])


def replica_env(image: LocalImage) -> dict[str, str]:
    """The image's ENV for a replica: values naming container paths that exist in the
    snapshot point into it, also inside ``:``-separated lists; other values stay.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     rootfs = Path(folder)
    ...     (rootfs / "app").mkdir()
    ...     env = {"PYTHONPATH": "/app:/usr/lib/extra", "MODE": "fast"}
    ...     image = _example_image(snapshot_path=str(rootfs), env=env)
    ...     rewritten = replica_env(image)
    ...     rewritten["PYTHONPATH"] == f"{rootfs / 'app'}:/usr/lib/extra", rewritten["MODE"]
    (True, 'fast')
    """
    return {name: _rewrite_paths(image, value) for name, value in image.env.items()}


def replica_args(image: LocalImage, argv: Sequence[str]) -> list[str]:
    """A command line as a replica runs it: each argument naming a container path that exists
    in the snapshot (also as ``--flag=/path``) points into it, as ``replica_env`` does for
    the environment, so ``python /app/serve.py`` runs what ``COPY`` put at /app.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     rootfs = Path(folder)
    ...     (rootfs / "app").mkdir()
    ...     (rootfs / "app" / "serve.py").touch()
    ...     image = _example_image(snapshot_path=str(rootfs))
    ...     argv = replica_args(image, ["python", "/app/serve.py", "--config=/app", "/etc/x"])
    ...     argv == ["python", f"{rootfs}/app/serve.py", f"--config={rootfs}/app", "/etc/x"]
    True
    """
    return [_rewrite_arg(image, arg) for arg in argv]


def replica_cwd(image: LocalImage) -> Path:
    """A replica's working directory: the image's WORKDIR inside the snapshot (created when
    missing).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     image = _example_image(snapshot_path=folder, workdir="/srv/model")
    ...     cwd = replica_cwd(image)
    ...     cwd == Path(folder) / "srv" / "model", cwd.is_dir()
    (True, True)
    """
    cwd = rootfs_path(image, image.workdir)
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd


def clean_container_path(path: str) -> str:
    """An absolute, normalised container path; ``..`` stops at ``/``.

    The build places files and sets WORKDIR with it, so a path means the same when it runs.
    """
    return "/" + posixpath.normpath("/" + path).lstrip("/")


# --- helpers ---------------------------------------------------------------------------


def argv_port(argv: Sequence[str]) -> int | None:
    """The port of the first ``--port N`` or ``--port=N`` in ``argv``; None when there is none.

    Examples
    --------
    >>> argv_port(["serve", "--port=9000"]), argv_port(["serve"])
    (9000, None)
    """
    for index, arg in enumerate(argv):
        if arg == "--port" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--port="):
            value = arg.removeprefix("--port=")
        else:
            continue
        if value.isdigit() and 1 <= int(value) <= 65535:
            return int(value)
    return None


def _rewrite_paths(image: LocalImage, value: str) -> str:
    return ":".join(_rewrite_path(image, part) for part in value.split(":"))


def _rewrite_arg(image: LocalImage, arg: str) -> str:
    flag, equals, value = arg.partition("=")
    if equals and flag.startswith("-") and value.startswith("/"):
        return f"{flag}={_rewrite_path(image, value)}"
    return _rewrite_path(image, arg)


def _rewrite_path(image: LocalImage, part: str) -> str:
    if not part.startswith("/") or part.startswith("//"):
        return part
    path = rootfs_path(image, part)
    if not path.exists():
        return part
    return f"{path}/" if part.endswith("/") and part != "/" else str(path)


def _image_name(image: LocalImage) -> str:
    short = image.digest[: len("sha256:") + 12]
    return f"{image.tags[0]} ({short})" if image.tags else short


def _example_image(**changes: object) -> LocalImage:
    """An image record for the examples in the docstrings above."""
    fields: dict[str, object] = {
        "digest": "sha256:0123456789abcdef",
        "snapshot_path": "/p/.chalk/images/0123456789ab/rootfs",
        "entrypoint": (),
        "cmd": (),
        "env": {},
        "workdir": "/",
        "exposed_port": None,
        "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "tags": ("ner:latest",),
    }
    fields.update(changes)
    return LocalImage(**fields)  # type: ignore[arg-type]
