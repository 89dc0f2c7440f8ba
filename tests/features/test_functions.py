"""The F functions: the expression each builds, its text, and the arguments each refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

import chalk.features.functions
from chalk import functions as F
from chalk.engine.parse import parse
from chalk.features import Deferred, ExpressionError, _
from chalk.features.types import FeatureTypeError


@pytest.mark.parametrize(
    ("build", "text"),
    [
        pytest.param(
            lambda: F.catalog_call("model.ner", _.text),
            'catalog_call("model.ner", _.text)',
            id="catalog",
        ),
        pytest.param(
            lambda: F.catalog_call("model.m-2", _.a, _.b, 3),
            'catalog_call("model.m-2", _.a, _.b, 3)',
            id="catalog_many",
        ),
        pytest.param(
            lambda: F.catalog_call("model.clock"), 'catalog_call("model.clock")', id="no_args"
        ),
        pytest.param(
            lambda: F.json_value(_.doc, "$.entities[0].label"),
            'json_value(_.doc, "$.entities[0].label")',
            id="json_value",
        ),
        pytest.param(lambda: F.lower(_.name), "lower(_.name)", id="lower"),
        pytest.param(lambda: F.upper(_.name), "upper(_.name)", id="upper"),
        pytest.param(lambda: F.length(_.name), "length(_.name)", id="length"),
        pytest.param(lambda: F.trim(_.name), "trim(_.name)", id="trim"),
        pytest.param(lambda: F.concat(_.a, "-", _.b), 'concat(_.a, "-", _.b)', id="concat"),
        pytest.param(lambda: F.coalesce(_.a, None), "coalesce(_.a, None)", id="coalesce"),
        pytest.param(
            lambda: F.if_then_else(_.a > 1, True, False),
            "if_then_else((_.a > 1), True, False)",
            id="if",
        ),
        pytest.param(lambda: F.is_null(_.a), "is_null(_.a)", id="is_null"),
        pytest.param(lambda: F.abs(_.a - 1), "abs((_.a - 1))", id="abs"),
        pytest.param(lambda: abs(_.a), "abs(_.a)", id="builtin_abs"),
        pytest.param(lambda: F.round(_.a), "round(_.a, 0)", id="round_default"),
        pytest.param(lambda: F.round(_.a, -1), "round(_.a, (-1))", id="round_negative"),
        pytest.param(lambda: F.cast(_.a, pa.int32()), 'cast(_.a, "int32")', id="cast_arrow"),
        pytest.param(lambda: F.cast(_.a, "int32"), 'cast(_.a, "int32")', id="cast_text"),
        pytest.param(lambda: F.cast(_.a, float), 'cast(_.a, "double")', id="cast_float"),
        pytest.param(
            lambda: F.cast(_.a, list[str]), 'cast(_.a, "list<large_string>")', id="cast_python_list"
        ),
        pytest.param(
            lambda: F.upper(F.json_value(F.catalog_call("model.ner", _.t), "$.x")),
            'upper(json_value(catalog_call("model.ner", _.t), "$.x"))',
            id="nested",
        ),
    ],
)
def test_each_function_builds_the_text_the_grammar_reads_back(
    build: Callable[[], Any], text: str
) -> None:
    built = build()

    assert isinstance(built, Deferred)
    assert repr(built) == text
    assert parse(text) == built.node


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        pytest.param(
            lambda: F.catalog_call("ner", _.a),
            ExpressionError,
            r"catalog_call name 'ner' is not valid: expected 'model.<scaling group>'",
            id="catalog_no_prefix",
        ),
        pytest.param(
            lambda: F.catalog_call("model.Bad_Name", _.a),
            ExpressionError,
            r"'model.Bad_Name' is not valid",
            id="catalog_not_a_label",
        ),
        pytest.param(
            lambda: F.catalog_call(_.name, _.a),
            ExpressionError,
            r"catalog_call name _.name is not valid",
            id="catalog_name_not_str",
        ),
        pytest.param(
            lambda: F.json_value(_.a, "entities[0]"),
            ExpressionError,
            r"expected a str starting with '\$'.*got 'entities\[0\]'",
            id="json_path",
        ),
        pytest.param(
            lambda: F.round(_.a, 1.5),
            ExpressionError,
            r"expected an int, got 1.5",
            id="round_digits",
        ),
        pytest.param(
            lambda: F.cast(_.a, "varchar"),
            FeatureTypeError,
            r"unknown Arrow type text 'varchar'",
            id="cast_text",
        ),
        pytest.param(
            lambda: F.cast(_.a, dict),
            FeatureTypeError,
            r"'dict' is not a feature type",
            id="cast_python_type",
        ),
        pytest.param(F.concat, ExpressionError, r"takes 1 or more arguments, got 0", id="concat"),
        pytest.param(
            lambda: F.lower(b"x"), ExpressionError, r"bytes values cannot be used", id="bytes"
        ),
    ],
)
def test_bad_arguments_fail_when_the_expression_is_written(
    build: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build()


def test_chalk_functions_re_exports_every_f_function() -> None:
    assert F.__all__ == chalk.features.functions.__all__
    assert all(getattr(F, name) is getattr(chalk.features.functions, name) for name in F.__all__)
    assert set(F.__all__) == {
        "catalog_call",
        "json_value",
        "lower",
        "upper",
        "length",
        "trim",
        "concat",
        "coalesce",
        "if_then_else",
        "is_null",
        "abs",
        "round",
        "cast",
    }
