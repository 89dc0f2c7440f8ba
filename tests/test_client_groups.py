"""ChalkClient's scaling group part: list, get and delete groups made through the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chalk.catalog import NotFoundError, open_catalog
from chalk.catalog.specs import GroupSpec
from chalk.client import ChalkClient
from chalk.common.config import find_project
from chalk.deploy.local import daemon


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ChalkClient:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    catalog = open_catalog(find_project(tmp_path))
    for name, tags in (("ner", {"team": "nlp"}), ("sentiment", {})):
        spec = GroupSpec(image=f"{name}:latest", tags=tags)
        catalog.groups.create(name, spec.to_dict(), backend="local")
    return ChalkClient(project_dir=tmp_path)


@pytest.fixture
def controller_stand_in(client: ChalkClient) -> Iterator[None]:
    """Hold the project's controller lock, so delete sees a controller and starts none."""
    with daemon._hold_lock(client.project):
        yield


def test_list_scaling_groups_oldest_first(client: ChalkClient) -> None:
    groups = client.list_scaling_groups()

    assert [(g.name, g.spec["image"], g.status) for g in groups] == [
        ("ner", "ner:latest", "Pending"),
        ("sentiment", "sentiment:latest", "Pending"),
    ]


def test_get_scaling_group_by_name(client: ChalkClient) -> None:
    group = client.get_scaling_group("ner")

    assert (group.name, group.tags, group.revision, group.deleted_at) == (
        "ner",
        {"team": "nlp"},
        1,
        None,
    )


def test_get_scaling_group_suggests_a_close_name(client: ChalkClient) -> None:
    with pytest.raises(
        NotFoundError, match=r"no scaling group named 'nre' \(did you mean 'ner'\?\)"
    ):
        client.get_scaling_group("nre")


@pytest.mark.usefixtures("controller_stand_in")
def test_delete_scaling_group_soft_deletes_it(client: ChalkClient) -> None:
    deleted = client.delete_scaling_group("ner")

    assert (deleted.name, deleted.status) == ("ner", "Deleted")
    assert deleted.deleted_at is not None
    assert [g.name for g in client.list_scaling_groups()] == ["sentiment"]
    with pytest.raises(NotFoundError, match="scaling group 'ner' was deleted at"):
        client.get_scaling_group("ner")


@pytest.mark.usefixtures("controller_stand_in")
def test_delete_scaling_group_twice_fails(client: ChalkClient) -> None:
    client.delete_scaling_group("ner")

    with pytest.raises(NotFoundError, match="scaling group 'ner' was deleted at"):
        client.delete_scaling_group("ner")
