"""ChalkClient's registry part, used as the product documents use it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import ValidationError
from chalk.client import ChalkClient
from chalk.common import ConfigError
from tests.support.images import store_images


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    (tmp_path / "features").mkdir()
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.chdir(tmp_path / "features")
    store_images(tmp_path, "my-model-image:latest", "m:1", "m:2", "m:3", "dice:1", "d:2")
    return tmp_path


def test_the_product_documents_example_registers_version_1(project: Path) -> None:
    client = ChalkClient()

    registered = client.register_model_version(
        name="my-model",
        input_schema={"text": pa.large_string(), "language": pa.string()},
        output_schema={"entities": pa.large_string()},
        model_image="my-model-image:latest",
        aliases=["prod"],
        metadata={"owner": "nlp"},
    )

    assert (registered.model_name, registered.model_version) == ("my-model", 1)
    fetched = client.get_model_version("my-model", "prod")
    assert fetched.input_schema.names == ["text", "language"]
    assert fetched.metadata == {"owner": "nlp"}
    assert (project / ".chalk" / "catalog.db").exists()


def test_a_version_is_registered_non_deterministic_by_request_only(project: Path) -> None:
    client = ChalkClient()

    registered = client.register_model_version(
        "dice", {"x": pa.int64()}, {"y": pa.int64()}, "dice:1", deterministic=False
    )

    assert registered.deterministic is False
    assert client.get_model_version("dice").deterministic is False
    again = client.register_model_version("dice", {"x": pa.int64()}, {"y": pa.int64()}, "d:2")
    assert again.deterministic is True


def test_versions_list_in_order(project: Path) -> None:
    client = ChalkClient()
    for image in ("m:1", "m:2", "m:3"):
        client.register_model_version("m", {"x": pa.float64()}, {"y": pa.float64()}, image)

    assert [v.image for v in client.list_model_versions("m")] == ["m:1", "m:2", "m:3"]
    assert client.get_model_version("m").model_version == 3


def test_a_schema_value_that_is_not_an_arrow_type_names_the_field(project: Path) -> None:
    with pytest.raises(ValidationError, match="model 'm' input_schema field 'text' is not an"):
        ChalkClient().register_model_version("m", {"text": str}, {"y": pa.float64()}, "m:1")


def test_more_than_one_output_field_is_refused(project: Path) -> None:
    with pytest.raises(ValidationError, match="2 output fields"):
        ChalkClient().register_model_version(
            "m", {"x": pa.int64()}, {"a": pa.int64(), "b": pa.int64()}, "m:1"
        )


def test_no_project_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError, match="chalk init"):
        ChalkClient()


def test_a_model_call_deadline_must_be_positive(project: Path) -> None:
    expected = r"model_call_deadline_s is out of range: expected 0.001 s to 3600 s .*, got 0 s"
    with pytest.raises(ValueError, match=expected):
        ChalkClient(project_dir=project, model_call_deadline_s=0)
