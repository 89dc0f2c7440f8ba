"""ChalkClient's scaling group part: list, get and delete groups made through the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import ConflictError, NotFoundError, open_catalog
from chalk.catalog.specs import GroupSpec
from chalk.client import ChalkClient
from chalk.common.config import find_project
from chalk.deploy.groups import check_model_image
from chalk.deploy.local import daemon
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph


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


def test_delete_scaling_group_called_by_the_applied_features_needs_force(
    client: ChalkClient,
) -> None:
    text = FeatureDef("doc", "text", pa.large_string())
    tags = FeatureDef(
        "doc", "tags", pa.large_string(), expression='catalog_call("model.ner", _.text)'
    )
    graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (text, tags))])
    open_catalog(client.project).graphs.apply(graph.to_json())

    with pytest.raises(
        ConflictError, match=r"called by the applied features doc\.tags: .*force=True"
    ):
        client.delete_scaling_group("ner")
    deleted = client.delete_scaling_group("ner", force=True)

    assert deleted.deleted_at is not None
    assert daemon.controller_pid(client.project) is None  # deleting started no controller


def test_a_kubernetes_project_registers_a_registry_image_unchecked(tmp_path: Path) -> None:
    (tmp_path / "chalk.yaml").write_text("project: demo\nbackend: kubernetes\n")
    local = tmp_path / "local"
    local.mkdir()
    (local / "chalk.yaml").write_text("project: demo\n")

    check_model_image(find_project(tmp_path), open_catalog("sqlite://"), "m", "gcr.io/x/m:1")
    with pytest.raises(NotFoundError, match=r"cannot register model 'm': image 'gcr.io/x/m:1'"):
        check_model_image(find_project(local), open_catalog("sqlite://"), "m", "gcr.io/x/m:1")
