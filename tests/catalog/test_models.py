"""The model registry on SQLite and PostgreSQL: numbering, aliases, schemas, bad input."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, ConflictError, NotFoundError, ValidationError, open_catalog
from chalk.catalog.models import parse_arrow_type, schema_from_mapping

TEXT_IN = pa.schema([("text", pa.large_string())])
ENTITIES_OUT = pa.schema([("entities", pa.large_string())])


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    return open_catalog(catalog_url)


def register(catalog: Catalog, name: str = "ner", **kwargs: object) -> object:
    arguments: dict[str, object] = {
        "input_schema": TEXT_IN,
        "output_schema": ENTITIES_OUT,
        "image": "ner:latest",
    }
    arguments.update(kwargs)
    return catalog.models.register(name, **arguments)  # type: ignore[arg-type]


def test_versions_are_numbered_from_one_per_model(catalog: Catalog) -> None:
    first = catalog.models.register(
        "ner", input_schema=TEXT_IN, output_schema=ENTITIES_OUT, image="ner:1"
    )
    second = catalog.models.register(
        "ner", input_schema=TEXT_IN, output_schema=ENTITIES_OUT, image="ner:2"
    )
    other = catalog.models.register(
        "sentiment", input_schema=TEXT_IN, output_schema=ENTITIES_OUT, image="s:1"
    )

    assert (first.model_version, second.model_version, other.model_version) == (1, 2, 1)
    assert catalog.models.get("ner").image == "ner:2"
    assert catalog.models.get("ner", 1).image == "ner:1"
    assert [v.model_version for v in catalog.models.list("ner")] == [1, 2]
    assert len(catalog.models.list()) == 3


def test_schemas_keep_field_order_and_types(catalog: Catalog) -> None:
    arguments = pa.schema(
        [
            ("zeta", pa.float64()),
            ("alpha", pa.list_(pa.int64())),
            ("when", pa.timestamp("us", tz="UTC")),
        ]
    )
    catalog.models.register("m", input_schema=arguments, output_schema=ENTITIES_OUT, image="m")

    stored = catalog.models.get("m")

    assert stored.input_schema.equals(arguments)
    assert stored.input_schema.names == ["zeta", "alpha", "when"]
    assert stored.output_schema.equals(ENTITIES_OUT)


def test_aliases_find_versions_and_are_unique_per_model(catalog: Catalog) -> None:
    register(catalog, aliases=["prod", "stable"])
    register(catalog, aliases=["canary"])
    register(catalog, name="other", aliases=["prod"])

    assert catalog.models.get("ner", "prod").model_version == 1
    assert catalog.models.get("ner", "canary").model_version == 2
    assert catalog.models.get("ner", "1").aliases == ("prod", "stable")
    with pytest.raises(
        ConflictError, match="alias 'prod' of model 'ner' already points to version 1"
    ):
        register(catalog, aliases=["prod"])
    assert [v.model_version for v in catalog.models.list("ner")] == [1, 2]


def test_metadata_round_trips(catalog: Catalog) -> None:
    register(catalog, metadata={"framework": "spacy", "f1": 0.91, "labels": ["ORG"]})

    assert catalog.models.get("ner").metadata == {
        "framework": "spacy",
        "f1": 0.91,
        "labels": ["ORG"],
    }


def test_a_version_is_deterministic_unless_registered_otherwise(catalog: Catalog) -> None:
    register(catalog)
    register(catalog, deterministic=False)

    assert [v.deterministic for v in catalog.models.list("ner")] == [True, False]
    assert catalog.models.get("ner", 2).to_json()["deterministic"] is False


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        pytest.param("nope", None, "no model named 'nope' is registered", id="unknown_model"),
        pytest.param("ner", 9, "model 'ner' has no version 9: expected one of versions 1", id="v"),
        pytest.param("ner", "beta", "has no alias 'beta'.*aliases prod", id="alias"),
    ],
)
def test_missing_versions_say_what_exists(
    catalog: Catalog, name: str, version: int | str | None, message: str
) -> None:
    register(catalog, aliases=["prod"])

    with pytest.raises(NotFoundError, match=message):
        catalog.models.get(name, version)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"name": "bad name"}, "model name 'bad name' is not valid", id="name"),
        pytest.param({"image": " "}, "needs an image", id="image"),
        pytest.param({"input_schema": pa.schema([])}, "empty input_schema", id="no_inputs"),
        pytest.param(
            {"output_schema": pa.schema([("a", pa.int64()), ("b", pa.int64())])},
            r"2 output fields \(a, b\): expected exactly one",
            id="two_outputs",
        ),
        pytest.param(
            {"input_schema": pa.schema([("a", pa.int64()), ("a", pa.int64())])},
            "repeats field 'a'",
            id="duplicate_input",
        ),
        pytest.param({"aliases": ["3"]}, "alias '3' .* would read as a version", id="num_alias"),
        pytest.param({"aliases": ["a", "a"]}, "aliases repeat", id="repeat_alias"),
    ],
)
def test_invalid_registrations_are_refused_and_store_nothing(
    catalog: Catalog, kwargs: dict[str, object], message: str
) -> None:
    arguments = dict(kwargs)
    name = str(arguments.pop("name", "ner"))

    with pytest.raises(ValidationError, match=message):
        register(catalog, name=name, **arguments)

    assert catalog.models.list() == []


def test_concurrent_registration_from_two_processes_gets_distinct_versions(
    catalog_url: str,
) -> None:
    open_catalog(catalog_url)
    script = textwrap.dedent(
        f"""
        import pyarrow as pa
        from chalk.catalog import open_catalog
        catalog = open_catalog({catalog_url!r})
        schema = pa.schema([("text", pa.large_string())])
        for _ in range(15):
            catalog.models.register("ner", input_schema=schema, output_schema=schema, image="i")
        """
    )

    workers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]

    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    versions = [v.model_version for v in open_catalog(catalog_url).models.list("ner")]
    assert versions == list(range(1, 31))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"text": str}, "field 'text' is not an Arrow type.*got type", id="py_type"),
        pytest.param({"text": "strng"}, "unknown Arrow type.*'strng'", id="bad_name"),
        pytest.param(["text"], "must map field names to Arrow types", id="not_mapping"),
        pytest.param({"": pa.int64()}, "field name ''", id="empty_name"),
    ],
)
def test_schema_from_mapping_names_the_bad_field(fields: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        schema_from_mapping(fields, what="input_schema")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("int64", pa.int64(), id="int64"),
        pytest.param("large_string", pa.large_string(), id="large_string"),
        pytest.param("string", pa.string(), id="string"),
        pytest.param("bool", pa.bool_(), id="bool"),
        pytest.param("list<float64>", pa.list_(pa.float64()), id="list"),
        pytest.param("large_list<string>", pa.large_list(pa.string()), id="large_list"),
        pytest.param("timestamp[ms]", pa.timestamp("ms"), id="timestamp"),
        pytest.param("timestamp[us, tz=UTC]", pa.timestamp("us", tz="UTC"), id="timestamp_tz"),
    ],
)
def test_parse_arrow_type(text: str, expected: pa.DataType) -> None:
    assert parse_arrow_type(text, what="x") == expected


@pytest.mark.parametrize(
    "field",
    [pytest.param("a,b", id="comma"), pytest.param("__chalk_row_metadata__", id="reserved")],
)
def test_input_fields_that_cannot_name_an_argument_are_refused(
    catalog: Catalog, field: str
) -> None:
    with pytest.raises(ValidationError, match="cannot name an argument"):
        register(catalog, input_schema=pa.schema([(field, pa.int64())]))


def test_metadata_that_is_not_json_names_the_key(catalog: Catalog) -> None:
    with pytest.raises(ValidationError, match=r"metadata .trained. cannot be stored.*datetime"):
        register(catalog, metadata={"trained": dt.datetime(2026, 1, 1)})


def test_types_as_pyarrow_prints_them_parse() -> None:
    assert parse_arrow_type("list<item: int64>", what="x") == pa.list_(pa.int64())
