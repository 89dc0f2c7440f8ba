"""The local image store: an image's digest over its settings and files, and its snapshot
moved into place under that digest."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from chalk.deploy.local.image_builder import ImageConfig

__all__ = ["image_digest", "move_into_place"]


def image_digest(config: ImageConfig, rootfs: Path) -> str:
    """``sha256:`` of a canonical manifest: the image's settings and every path's content."""
    manifest = {
        "format": "scalegroup.local-image.v1",
        "config": {
            "entrypoint": list(config.entrypoint),
            "cmd": list(config.cmd),
            "env": config.env,
            "workdir": config.workdir,
            "exposedPort": config.exposed_port,
            "labels": config.labels,
        },
        "files": _manifest_entries(rootfs),
    }
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _manifest_entries(rootfs: Path) -> list[list[str | int]]:
    """Each path in rootfs as ``[container path, kind, ...]``: a file's mode bits and content
    hash, a symlink's target. Folder modes are left out: they follow the umask, not the
    context."""
    entries: list[list[str | int]] = []
    for folder, folders, files in os.walk(rootfs):
        for name in (*folders, *files):
            path = Path(folder) / name
            container_path = "/" + path.relative_to(rootfs).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries.append([container_path, "symlink", os.readlink(path)])
            elif stat.S_ISDIR(info.st_mode):
                entries.append([container_path, "folder"])
            else:
                entries.append([container_path, "file", stat.S_IMODE(info.st_mode), _sha256(path)])
    return sorted(entries, key=lambda entry: str(entry[0]))


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def move_into_place(scratch: Path, final: Path) -> bool:
    """Rename the finished build to its digest's folder; True when that snapshot existed."""
    if final.exists():
        return True
    try:
        scratch.rename(final)
    except OSError:
        if final.exists():  # a concurrent build of the same content got there first
            return True
        raise
    return False
