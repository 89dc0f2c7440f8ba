"""Images in a project's local image store without building one: index rows whose snapshot is
an empty folder, for tests that register models (registration checks the image exists)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from chalk.catalog import open_catalog
from chalk.catalog.records import LocalImage
from chalk.common.config import find_project


def store_images(root: Path, *tags: str) -> None:
    """Put each tag into the local image store of the project at ``root`` (one image each)."""
    catalog = open_catalog(find_project(root))
    for tag in tags:
        digest = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
        rootfs = root / ".chalk" / "images" / digest / "rootfs"
        rootfs.mkdir(parents=True, exist_ok=True)
        image = LocalImage(
            digest=digest,
            snapshot_path=str(rootfs),
            entrypoint=("chalk-remote-call", "--handler", "model.handler"),
            cmd=(),
            env={},
            workdir="/",
            exposed_port=None,
            created_at=dt.datetime.now(dt.UTC),
        )
        catalog.images.save(image, [tag])
