"""``@features`` classes: features, types, namespaces, primary keys, errors and the graph.

The module keeps ``from __future__ import annotations``: every class below has string
annotations, as a user's module written that way does.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from datetime import date, datetime
from typing import Any, ClassVar, Optional

import pyarrow as pa
import pytest

from chalk import functions as F
from chalk.engine.parse import parse
from chalk.features import (
    ClassDef,
    ExpressionError,
    FeatureClassError,
    FeatureGraph,
    FeatureReference,
    _,
    feature,
    features,
    graph_of,
)
from chalk.features.expr import node_of


@features
class Document:
    id: int
    text: str
    entities: str = F.catalog_call("model.ner", _.text)


@features
class Request:
    id: int
    input_a: str
    input_b: int
    output: str = F.catalog_call("model.m", _.input_a, _.input_b)


@features()
class AllTypes:
    id: int
    count: int
    score: float
    name: str
    flag: bool
    blob: bytes
    seen_at: datetime
    born_on: date
    tags: list[str]
    matrix: list[list[float]]
    maybe_count: Optional[int]  # noqa: UP045 - the spelling the product's documents use
    maybe_name: str | None
    maybe_tags: list[datetime] | None


@features
class Arithmetic:
    id: int
    a: float
    b: float
    total: float = (_.a + _.b) * -2
    ratio: float = _.a / (_.b**2 - 1)
    positive: bool = (_.a > 0) & ~(_.b <= 0) | (_.a == _.b)
    label: str = F.if_then_else(_.a >= 1.5, 'say "hi" ☃', F.upper(F.trim(F.lower("x"))))
    parsed: str = F.json_value(F.catalog_call("model.ner", _.a, _.b), "$.entities[0].label")
    casted: int = feature(expression=F.cast(F.round(_.a, 2), int), description="a, rounded")


def class_def(cls: type) -> ClassDef:
    found = vars(cls)["__chalk_class__"]
    assert isinstance(found, ClassDef)
    return found


def test_the_document_example_reads_as_the_product_documents_it() -> None:
    document = class_def(Document)

    assert (document.name, document.namespace) == ("Document", "document")
    assert [(f.name, f.primary, f.expression) for f in document.features] == [
        ("id", True, None),
        ("text", False, None),
        ("entities", False, 'catalog_call("model.ner", _.text)'),
    ]
    assert [f.arrow_type for f in document.features] == [
        pa.int64(),
        pa.large_string(),
        pa.large_string(),
    ]


def test_the_request_example_passes_its_arguments_in_order() -> None:
    output = class_def(Request).features[-1]

    assert output.fqn == "request.output"
    assert output.expression == 'catalog_call("model.m", _.input_a, _.input_b)'


def test_annotations_in_this_module_are_strings() -> None:
    # The rest of this module proves string annotations work only while this holds.
    assert inspect.get_annotations(Document)["text"] == "str"


@pytest.mark.parametrize(
    ("name", "arrow_type", "nullable"),
    [
        pytest.param("count", pa.int64(), False, id="int"),
        pytest.param("score", pa.float64(), False, id="float"),
        pytest.param("name", pa.large_string(), False, id="str"),
        pytest.param("flag", pa.bool_(), False, id="bool"),
        pytest.param("blob", pa.large_binary(), False, id="bytes"),
        pytest.param("seen_at", pa.timestamp("us", tz="UTC"), False, id="datetime"),
        pytest.param("born_on", pa.date32(), False, id="date"),
        pytest.param("tags", pa.list_(pa.large_string()), False, id="list"),
        pytest.param("matrix", pa.list_(pa.list_(pa.float64())), False, id="nested_list"),
        pytest.param("maybe_count", pa.int64(), True, id="Optional"),
        pytest.param("maybe_name", pa.large_string(), True, id="union_none"),
        pytest.param(
            "maybe_tags", pa.list_(pa.timestamp("us", tz="UTC")), True, id="optional_list"
        ),
    ],
)
def test_each_annotation_has_the_arrow_type_of_the_table(
    name: str, arrow_type: pa.DataType, nullable: bool
) -> None:
    found = next(f for f in class_def(AllTypes).features if f.name == name)
    reference = getattr(AllTypes, name)

    assert (found.arrow_type, found.nullable) == (arrow_type, nullable)
    assert (reference.arrow_type, reference.nullable) == (arrow_type, nullable)


def test_annotations_that_are_types_not_strings_work_too() -> None:
    plain = features(type("Plain", (), {"__annotations__": {"id": int, "tags": list[str]}}))

    assert [f.arrow_type for f in class_def(plain).features] == [
        pa.int64(),
        pa.list_(pa.large_string()),
    ]


def test_features_keep_declaration_order_and_skip_class_variables() -> None:
    @features
    class Ordered:
        zeta: int
        id: int
        limit: ClassVar[int] = 3
        alpha: str

    assert [f.name for f in class_def(Ordered).features] == ["zeta", "id", "alpha"]
    assert Ordered.limit == 3


@pytest.mark.parametrize(
    ("class_name", "namespace"),
    [
        pytest.param("Document", "document", id="one_word"),
        pytest.param("UserProfile", "user_profile", id="two_words"),
        pytest.param("HTTPRequest", "http_request", id="acronym"),
        pytest.param("APIKeyV2", "api_key_v2", id="acronym_and_digit"),
        pytest.param("Snake_Case", "snake_case", id="underscore"),
        pytest.param("lowercase", "lowercase", id="lower"),
    ],
)
def test_the_namespace_is_the_class_name_in_snake_case(class_name: str, namespace: str) -> None:
    cls = features(type(class_name, (), {"__annotations__": {"id": "int", "text": "str"}}))

    assert class_def(cls).namespace == namespace
    assert str(cls.text) == f"{namespace}.text"


def test_a_feature_reference_names_the_feature() -> None:
    reference = Document.text

    assert isinstance(reference, FeatureReference)
    assert (str(reference), reference.fqn) == ("document.text", "document.text")
    assert (reference.namespace, reference.name) == ("document", "text")
    assert reference.arrow_type == pa.large_string()
    assert {Document.text: 1}[Document.text] == 1
    assert Document.text != Document.entities


def test_id_is_the_primary_key_when_none_is_marked() -> None:
    assert class_def(Document).primary_key == class_def(Document).features[0]


def test_a_feature_marked_primary_is_the_primary_key() -> None:
    @features
    class Account:
        id: int
        number: str = feature(primary=True, description="the account number")

    account = class_def(Account)

    assert account.primary_key is not None
    assert account.primary_key.name == "number"
    assert account.primary_key.description == "the account number"
    assert [f.primary for f in account.features] == [False, True]


def test_feature_carries_an_expression_and_a_description() -> None:
    casted = next(f for f in class_def(Arithmetic).features if f.name == "casted")

    assert casted.expression == 'cast(round(_.a, 2), "int64")'
    assert casted.description == "a, rounded"


def test_the_class_and_its_features_name_their_source_line() -> None:
    document = class_def(Document)
    lines, first = inspect.getsourcelines(Document)
    line_of = {text.split(":")[0].strip(): first + n for n, text in enumerate(lines)}

    assert document.source == f"{__file__}:{first}"
    assert {f.name: f.source for f in document.features} == {
        name: f"{__file__}:{line_of[name]}" for name in ("id", "text", "entities")
    }


def test_an_expression_naming_an_unknown_feature_fails_at_class_definition() -> None:
    with pytest.raises(
        FeatureClassError,
        match=r"Invoice\.total at .*test_dsl\.py:\d+ uses _\.amout, _\.tax, which Invoice does "
        r"not have: expected features of Invoice \(id, amount, total\)",
    ):

        @features
        class Invoice:
            id: int
            amount: float
            total: float = _.amout + _.tax


def test_a_bad_catalog_call_name_fails_at_class_definition() -> None:
    with pytest.raises(ExpressionError, match=r"catalog_call name 'model\.NER' is not valid"):

        @features
        class Tagged:
            id: int
            text: str
            tags: str = F.catalog_call("model.NER", _.text)


def test_an_annotation_outside_the_type_table_names_the_attribute_and_line() -> None:
    with pytest.raises(
        FeatureClassError,
        match=r"Bag\.items at .*test_dsl\.py:\d+ has no feature type: .*expected int, float",
    ):

        @features
        class Bag:
            id: int
            items: set[int]


def test_an_annotation_that_cannot_be_resolved_names_the_attribute() -> None:
    broken = type("Broken", (), {"__annotations__": {"id": "int", "when": "NoSuchType"}})

    with pytest.raises(
        FeatureClassError, match=r"Broken\.when .* cannot be resolved .*'NoSuchType'"
    ):
        features(broken)


def test_two_primary_keys_are_an_error() -> None:
    with pytest.raises(
        FeatureClassError, match=r"Pair at .* more than one primary key: .*got a, b"
    ):

        @features
        class Pair:
            a: int = feature(primary=True)
            b: int = feature(primary=True)


def test_a_class_without_a_primary_key_is_an_error_naming_the_fix() -> None:
    with pytest.raises(
        FeatureClassError,
        match=r"Keyless at .* has no primary key: .*add `id: int`, or mark the key with "
        r"`= feature\(primary=True\)`",
    ):

        @features
        class Keyless:
            text: str


@pytest.mark.parametrize(
    ("annotations", "defaults", "got"),
    [
        pytest.param({"id": "int | None"}, {}, "an Optional type", id="optional"),
        pytest.param({"x": "int", "id": "int"}, {"id": _.x + 1}, "an expression", id="derived"),
    ],
)
def test_the_primary_key_must_be_a_required_input(
    annotations: dict[str, str], defaults: dict[str, Any], got: str
) -> None:
    cls = type("Keyed", (), {"__annotations__": annotations, **defaults})

    with pytest.raises(FeatureClassError, match=rf"Keyed\.id .* the primary key: .*got {got}"):
        features(cls)


@pytest.mark.parametrize(
    ("default", "message"),
    [
        pytest.param(5, r"has the default 5: expected an expression built from _ and F", id="int"),
        pytest.param(_, r"_ alone is not an expression", id="bare_underscore"),
        pytest.param(
            feature(expression="text"), r"expression='text': expected an expression", id="str"
        ),
    ],
)
def test_a_default_that_is_not_an_expression_is_an_error(default: Any, message: str) -> None:
    cls = type("Defaulted", (), {"__annotations__": {"id": "int", "x": "str"}, "x": default})

    with pytest.raises(FeatureClassError, match=rf"Defaulted\.x at .*{message}"):
        features(cls)


def test_and_between_expressions_fails_naming_the_operator_to_use() -> None:
    with pytest.raises(TypeError, match=r"use & for 'and'"):
        bool(_.a > 1)

    with pytest.raises(TypeError, match=r"use & for 'and'"):

        @features
        class Both:
            id: int
            a: int
            both: bool = _.a > 1 and _.a < 3


def test_graph_of_serialises_the_classes_and_reads_back_equal() -> None:
    graph = graph_of([Document, Request, AllTypes, Arithmetic])

    text = json.dumps(graph.to_json())

    assert FeatureGraph.from_json(json.loads(text)) == graph
    assert [c.namespace for c in graph.classes] == [
        "all_types",
        "arithmetic",
        "document",
        "request",
    ]
    assert graph.feature("document.entities").expression == 'catalog_call("model.ner", _.text)'


@pytest.mark.parametrize(
    ("fqn", "expected"),
    [
        pytest.param("document.entities", F.catalog_call("model.ner", _.text), id="document"),
        pytest.param(
            "request.output", F.catalog_call("model.m", _.input_a, _.input_b), id="request"
        ),
        pytest.param("arithmetic.total", (_.a + _.b) * -2, id="negative_literal"),
        pytest.param("arithmetic.ratio", _.a / (_.b**2 - 1), id="power"),
        pytest.param("arithmetic.positive", (_.a > 0) & ~(_.b <= 0) | (_.a == _.b), id="logic"),
        pytest.param(
            "arithmetic.label",
            F.if_then_else(_.a >= 1.5, 'say "hi" ☃', F.upper(F.trim(F.lower("x")))),
            id="quoted_unicode_string",
        ),
        pytest.param(
            "arithmetic.parsed",
            F.json_value(F.catalog_call("model.ner", _.a, _.b), "$.entities[0].label"),
            id="nested_calls",
        ),
        pytest.param("arithmetic.casted", F.cast(F.round(_.a, 2), int), id="cast"),
    ],
)
def test_each_expression_in_the_graph_parses_back_to_its_node(fqn: str, expected: Any) -> None:
    graph = graph_of([Document, Request, Arithmetic])
    expression = graph.feature(fqn).expression

    assert expression is not None
    assert parse(expression) == node_of(expected)


def test_graph_of_refuses_a_class_that_is_not_a_feature_class() -> None:
    class Plain:
        id: int

    with pytest.raises(FeatureClassError, match=r"Plain' is not a feature class"):
        graph_of([Plain])


def test_graph_of_refuses_two_classes_with_one_namespace() -> None:
    other = features(type("Document", (), {"__annotations__": {"id": "int"}}))

    with pytest.raises(
        FeatureClassError, match=r"two feature classes share the namespace 'document'"
    ):
        graph_of([Document, other])


def test_graph_of_takes_a_class_listed_twice_once() -> None:
    assert len(graph_of([Document, Document]).classes) == 1


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, check=False
    )


def test_graph_of_with_no_classes_takes_every_class_defined_replacing_a_redefined_one() -> None:
    done = _run(
        """
        from chalk.features import _, features, graph_of

        @features
        class Document:
            id: int

        @features
        class Document:
            id: int
            text: str

        @features
        class Order:
            id: int

        graph = graph_of()
        print([[f.fqn for f in c.features] for c in graph.classes])
        """
    )

    assert done.stdout.strip() == "[['document.id', 'document.text'], ['order.id']]", done.stderr


def test_graph_of_with_no_classes_refuses_two_classes_with_one_namespace() -> None:
    done = _run(
        """
        from chalk.features import features, graph_of

        @features
        class Document:
            id: int

        def make():
            @features
            class Document:
                id: int

        make()
        graph_of()
        """
    )

    assert done.returncode == 1
    assert "two feature classes share the namespace 'document'" in done.stderr
    assert "__main__.make.<locals>.Document" in done.stderr
