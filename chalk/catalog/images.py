"""The local image store's index: images by digest and the tags that point at them.

Reached as ``catalog.images``; ``chalk image build`` writes, the local backend reads. The
snapshot itself lives on disk under ``.chalk/images/<digest>/rootfs``.
"""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa

from chalk.catalog.errors import NotFoundError
from chalk.catalog.records import LocalImage
from chalk.catalog.schema import image_tags, images
from chalk.catalog.transactions import Transactions

__all__ = ["ImageStore", "normalize_tag"]

_SHORT_DIGEST = 12


def normalize_tag(reference: str) -> str:
    """``name`` means ``name:latest``; a digest reference (``name@sha256:...``) stays as given.

    Examples
    --------
    >>> normalize_tag("ner"), normalize_tag("ner:v2"), normalize_tag("localhost:5000/ner")
    ('ner:latest', 'ner:v2', 'localhost:5000/ner:latest')
    """
    if "@" in reference:
        return reference
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last else f"{reference}:latest"


class ImageStore:
    """Records images and moves tags between them."""

    def __init__(self, catalog: Transactions) -> None:
        self._catalog = catalog

    def save(self, image: LocalImage, tags: builtins.list[str]) -> LocalImage:
        """Record ``image`` (once per digest) and point each tag at it."""
        now = self._catalog.clock()
        normalized = [normalize_tag(tag) for tag in tags]
        with self._catalog.write() as connection:
            known = connection.execute(
                sa.select(images.c.digest).where(images.c.digest == image.digest)
            ).first()
            if known is None:
                connection.execute(
                    sa.insert(images).values(
                        digest=image.digest,
                        snapshot_path=image.snapshot_path,
                        entrypoint=list(image.entrypoint),
                        cmd=list(image.cmd),
                        env=image.env,
                        workdir=image.workdir,
                        exposed_port=image.exposed_port,
                        created_at=image.created_at,
                    )
                )
            for tag in normalized:
                connection.execute(sa.delete(image_tags).where(image_tags.c.tag == tag))
                connection.execute(
                    sa.insert(image_tags).values(tag=tag, digest=image.digest, updated_at=now)
                )
        return self.get(image.digest)

    def get(self, reference: str) -> LocalImage:
        """An image by tag (``name`` means ``name:latest``) or by digest (``sha256:...``)."""
        with self._catalog.read() as connection:
            digest = _digest_of(connection, reference)
            if digest is None:
                digest = connection.execute(
                    sa.select(image_tags.c.digest).where(
                        image_tags.c.tag == normalize_tag(reference)
                    )
                ).scalar()
            row = None
            if digest is not None:
                row = connection.execute(sa.select(images).where(images.c.digest == digest)).first()
            if row is None:
                fix = (
                    "see `chalk image list` for the digests in the store"
                    if "sha256:" in reference
                    else f"build it with `chalk image build DIR -t {normalize_tag(reference)}`"
                )
                raise NotFoundError(
                    f"image {reference!r} is not in this project's local image store: {fix}, "
                    f"or name a registry image on the kubernetes backend"
                )
            return _record(row, _tags_of(connection, row.digest))

    def list(self) -> builtins.list[LocalImage]:
        """Every image, newest first, with its tags."""
        with self._catalog.read() as connection:
            rows = connection.execute(sa.select(images).order_by(images.c.created_at.desc())).all()
            return [_record(row, _tags_of(connection, row.digest)) for row in rows]


def _digest_of(connection: sa.Connection, reference: str) -> str | None:
    """A digest reference (``sha256:<hex>``, ``name@sha256:<hex>``, or a unique prefix of at
    least 12 hex digits, as ``chalk image list`` shows) as a full digest; None for a tag."""
    if "sha256:" not in reference:
        return None
    wanted = "sha256:" + reference.split("sha256:", 1)[1]
    if len(wanted) - len("sha256:") < _SHORT_DIGEST:
        return wanted
    found = (
        connection.execute(
            sa.select(images.c.digest).where(images.c.digest.startswith(wanted, autoescape=True))
        )
        .scalars()
        .all()
    )
    return found[0] if len(found) == 1 else wanted


def _tags_of(connection: sa.Connection, digest: str) -> tuple[str, ...]:
    tags = connection.execute(
        sa.select(image_tags.c.tag).where(image_tags.c.digest == digest).order_by(image_tags.c.tag)
    ).scalars()
    return tuple(tags)


def _record(row: Any, tags: tuple[str, ...]) -> LocalImage:
    return LocalImage(
        digest=row.digest,
        snapshot_path=row.snapshot_path,
        entrypoint=tuple(row.entrypoint),
        cmd=tuple(row.cmd),
        env=dict(row.env),
        workdir=row.workdir,
        exposed_port=row.exposed_port,
        created_at=row.created_at,
        tags=tags,
    )
