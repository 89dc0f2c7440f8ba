"""Applied feature graphs and the local image index."""

from __future__ import annotations

import datetime as dt

import pytest

from chalk.catalog import Catalog, NotFoundError, open_catalog
from chalk.catalog.records import LocalImage


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    return open_catalog(catalog_url)


def _image(digest: str) -> LocalImage:
    return LocalImage(
        digest=digest,
        snapshot_path=f"/p/.chalk/images/{digest}/rootfs",
        entrypoint=("chalk-remote-call", "--handler", "model.handler"),
        cmd=("--port", "8080"),
        env={"PYTHONPATH": "/app"},
        workdir="/app",
        exposed_port=8080,
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def test_apply_numbers_graphs_and_keeps_one_active(catalog: Catalog) -> None:
    assert catalog.graphs.active() is None

    first = catalog.graphs.apply({"classes": ["document"]})
    second = catalog.graphs.apply({"classes": ["document", "request"]})

    assert (first.version, second.version) == (1, 2)
    active = catalog.graphs.active()
    assert active is not None
    assert (active.version, active.graph) == (2, {"classes": ["document", "request"]})
    assert [g.active for g in catalog.graphs.list()] == [False, True]


def test_activate_rolls_back_to_an_earlier_graph(catalog: Catalog) -> None:
    catalog.graphs.apply({"v": 1})
    catalog.graphs.apply({"v": 2})

    catalog.graphs.activate(1)

    active = catalog.graphs.active()
    assert active is not None
    assert active.graph == {"v": 1}
    with pytest.raises(NotFoundError, match="no applied feature graph version 7"):
        catalog.graphs.activate(7)


def test_images_are_found_by_tag_and_digest(catalog: Catalog) -> None:
    saved = catalog.images.save(_image("sha256:aaa"), ["ner", "ner:v1"])

    assert saved.tags == ("ner:latest", "ner:v1")
    assert catalog.images.get("ner").digest == "sha256:aaa"
    assert catalog.images.get("ner:latest") == catalog.images.get("sha256:aaa")
    assert catalog.images.get("ner").entrypoint == (
        "chalk-remote-call",
        "--handler",
        "model.handler",
    )


def test_rebuilding_a_tag_moves_it_and_keeps_the_old_image(catalog: Catalog) -> None:
    catalog.images.save(_image("sha256:aaa"), ["ner"])

    catalog.images.save(_image("sha256:bbb"), ["ner"])

    assert catalog.images.get("ner").digest == "sha256:bbb"
    assert catalog.images.get("sha256:aaa").tags == ()
    assert {image.digest for image in catalog.images.list()} == {"sha256:aaa", "sha256:bbb"}


def test_an_unknown_image_says_how_to_build_it(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match=r"chalk image build DIR -t ner:latest"):
        catalog.images.get("ner")


def test_digest_references_with_a_name_or_a_short_digest_resolve(catalog: Catalog) -> None:
    digest = "sha256:" + "ab12" * 16
    catalog.images.save(_image(digest), ["ner"])

    assert catalog.images.get(f"ner@{digest}").digest == digest
    assert catalog.images.get(digest[: len("sha256:") + 12]).digest == digest
    with pytest.raises(NotFoundError, match="see `chalk image list`"):
        catalog.images.get("sha256:" + "ff" * 32)
