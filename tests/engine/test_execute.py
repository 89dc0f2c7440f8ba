"""The executor: each operator and F function on columns with nulls, types, errors, and a
property against a row-by-row evaluation with SQL null semantics."""

from __future__ import annotations

import asyncio
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chalk.engine.errors import EngineError, EngineTypeError, ModelCallNotWiredError
from chalk.engine.execute import execute, execute_async
from chalk.engine.parse import negate
from chalk.engine.plan import Plan, plan
from chalk.features.expr import BinaryOp, Call, Expr, FeatureRef, Literal, UnaryOp
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph

COLUMNS: dict[str, pa.Array] = {
    "a": pa.array([7, -7, None, 0, 3], pa.int64()),
    "b": pa.array([2, 2, 2, None, 0], pa.int64()),
    "x": pa.array([1.5, -2.5, None, 0.5, 2.0], pa.float64()),
    "p": pa.array([True, False, None, True, None], pa.bool_()),
    "q": pa.array([None, None, None, False, True], pa.bool_()),
    "s": pa.array(["Hello", " Wörld ", None, "", "x"], pa.large_string()),
    "l": pa.array([[1, 2], [], None, [3], [1, 1, 1]], pa.list_(pa.int64())),
    "j": pa.array(
        [
            '{"a": {"b": [{"c": 1}]}}',
            '{"a": {"b": [{"c": "x"}]}}',
            None,
            "not json",
            '{"a": {"b": []}}',
        ],
        pa.large_string(),
    ),
}


def graph_of(
    columns: Mapping[str, pa.DataType], derived: Mapping[str, tuple[pa.DataType, str]]
) -> FeatureGraph:
    features = [FeatureDef("document", name, kind, nullable=True) for name, kind in columns.items()]
    features += [
        FeatureDef("document", name, kind, nullable=True, expression=text)
        for name, (kind, text) in derived.items()
    ]
    return FeatureGraph.from_classes([ClassDef("Document", "document", tuple(features))])


def run(
    derived: Mapping[str, tuple[pa.DataType, str]],
    columns: Mapping[str, pa.Array] = COLUMNS,
    *,
    awaited: bool = False,
) -> pa.Table:
    """The derived features' table; ``awaited`` runs ``execute_async`` on a loop of its own."""
    graph = graph_of({name: column.type for name, column in columns.items()}, derived)
    query = plan(graph, [f"document.{n}" for n in columns], [f"document.{n}" for n in derived])
    table = pa.table({f"document.{name}": column for name, column in columns.items()})
    if awaited:
        return asyncio.run(execute_async(query, table, graph))
    return execute(query, table, graph)


def values(kind: pa.DataType, text: str) -> list[Any]:
    result = run({"y": (kind, text)})
    assert result.schema.field("document.y").type == kind
    found: list[Any] = result.column("document.y").to_pylist()
    return found


INT, FLOAT, BOOL, STR = pa.int64(), pa.float64(), pa.bool_(), pa.large_string()
NONE5: list[Any] = [None] * 5


OPERATORS = [
    pytest.param(INT, "_.a + _.b", [9, -5, None, None, 3], id="add"),
    pytest.param(INT, "_.a - _.b", [5, -9, None, None, 3], id="subtract"),
    pytest.param(INT, "_.a * _.b", [14, -14, None, None, 0], id="multiply"),
    pytest.param(FLOAT, "_.a / _.b", [3.5, -3.5, None, None, None], id="divide_zero_null"),
    pytest.param(INT, "_.a // _.b", [3, -4, None, None, None], id="floor_divide_int"),
    pytest.param(INT, "_.a % _.b", [1, 1, None, None, None], id="modulo_int"),
    pytest.param(FLOAT, "_.x // 1.0", [1.0, -3.0, None, 0.0, 2.0], id="floor_divide_float"),
    pytest.param(FLOAT, "_.x % 1", [0.5, 0.5, None, 0.5, 0.0], id="modulo_float"),
    pytest.param(FLOAT, "_.x / 0", NONE5, id="float_divide_by_zero"),
    pytest.param(FLOAT, "_.x % 0.0", NONE5, id="float_modulo_by_zero"),
    pytest.param(INT, "_.a ** 2", [49, 49, None, 0, 9], id="power_int"),
    pytest.param(FLOAT, "_.a ** _.b", [49.0, 49.0, None, None, 1.0], id="power_float"),
    pytest.param(FLOAT, "2 ** -1", [0.5] * 5, id="negative_power"),
    pytest.param(FLOAT, "_.a + 1.5", [8.5, -5.5, None, 1.5, 4.5], id="int_plus_float"),
    pytest.param(INT, "_.a + None", NONE5, id="plus_null"),
    pytest.param(INT, "-_.a", [-7, 7, None, 0, -3], id="negate"),
    pytest.param(BOOL, "_.a == _.b", [False, False, None, None, False], id="eq"),
    pytest.param(BOOL, "_.a != _.b", [True, True, None, None, True], id="ne"),
    pytest.param(BOOL, "_.a < _.b", [False, True, None, None, False], id="lt"),
    pytest.param(BOOL, "_.a <= 0", [False, True, None, True, False], id="le"),
    pytest.param(BOOL, "_.a > _.x", [True, False, None, False, True], id="gt_int_float"),
    pytest.param(BOOL, "_.a >= 3", [True, False, None, False, True], id="ge"),
    pytest.param(BOOL, '_.s < "b"', [True, True, None, True, False], id="strings"),
    pytest.param(BOOL, "_.l == _.l", [True, True, None, True, True], id="lists_eq"),
    pytest.param(BOOL, "_.a == None", NONE5, id="eq_null_is_null"),
    pytest.param(BOOL, "_.p & _.q", [None, False, None, False, None], id="and"),
    pytest.param(BOOL, "_.p | _.q", [True, None, None, True, True], id="or"),
    pytest.param(BOOL, "~_.p", [False, True, None, False, None], id="not"),
    pytest.param(BOOL, "_.p & False", [False] * 5, id="false_and_null"),
    pytest.param(BOOL, "_.p | True", [True] * 5, id="true_or_null"),
    pytest.param(BOOL, "~None", NONE5, id="not_null"),
    pytest.param(STR, "lower(_.s)", ["hello", " wörld ", None, "", "x"], id="lower"),
    pytest.param(STR, "upper(_.s)", ["HELLO", " WÖRLD ", None, "", "X"], id="upper"),
    pytest.param(STR, "trim(_.s)", ["Hello", "Wörld", None, "", "x"], id="trim"),
    pytest.param(INT, "length(_.s)", [5, 7, None, 0, 1], id="length_string"),
    pytest.param(INT, "length(_.l)", [2, 0, None, 1, 3], id="length_list"),
    pytest.param(
        STR,
        'concat(_.s, "!", _.s)',
        ["Hello!Hello", " Wörld ! Wörld ", None, "!", "x!x"],
        id="concat",
    ),
    pytest.param(STR, "concat(_.s, None)", NONE5, id="concat_null"),
    pytest.param(INT, "coalesce(_.b, _.a, -1)", [2, 2, 2, 0, 0], id="coalesce"),
    pytest.param(FLOAT, "coalesce(_.a, _.x)", [7.0, -7.0, None, 0.0, 3.0], id="coalesce_wide"),
    pytest.param(INT, "if_then_else(_.p, _.a, _.b)", [7, 2, 2, 0, 0], id="if_null_is_else"),
    pytest.param(BOOL, "is_null(_.a)", [False, False, True, False, False], id="is_null"),
    pytest.param(INT, "abs(_.a)", [7, 7, None, 0, 3], id="abs_int"),
    pytest.param(FLOAT, "abs(_.x)", [1.5, 2.5, None, 0.5, 2.0], id="abs_float"),
    pytest.param(FLOAT, "round(_.x)", [2.0, -3.0, None, 1.0, 2.0], id="round_half_away"),
    pytest.param(FLOAT, "round(_.a / 3, 2)", [2.33, -2.33, None, 0.0, 1.0], id="round_2"),
    pytest.param(INT, "round(_.a)", [7, -7, None, 0, 3], id="round_int"),
    pytest.param(STR, 'cast(_.a, "large_string")', ["7", "-7", None, "0", "3"], id="cast"),
    pytest.param(FLOAT, 'cast(_.a, "float64")', [7.0, -7.0, None, 0.0, 3.0], id="cast_float"),
    pytest.param(INT, 'cast("12", "int64")', [12] * 5, id="cast_literal"),
    pytest.param(
        STR, 'json_value(_.j, "$.a.b[0].c")', ["1", "x", None, None, None], id="json_value"
    ),
    pytest.param(
        STR,
        'json_value(_.j, "$[\'a\'][\\"b\\"][0]")',
        ['{"c":1}', '{"c":"x"}', None, None, None],
        id="json_value_brackets",
    ),
    pytest.param(INT, "1", [1] * 5, id="int_literal"),
    pytest.param(STR, '"hi"', ["hi"] * 5, id="string_literal"),
    pytest.param(INT, "None", NONE5, id="null_literal"),
]


@pytest.mark.parametrize(("kind", "text", "expected"), OPERATORS)
def test_operators_and_functions_on_columns_with_nulls(
    kind: pa.DataType, text: str, expected: list[Any]
) -> None:
    assert values(kind, text) == expected


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        pytest.param(STR, "upper(_.a)", "upper() expects a string, got int64", id="upper"),
        pytest.param(
            INT, "_.s + 1", "+ expects numbers on both sides, got large_string and int64", id="add"
        ),
        pytest.param(
            BOOL, "_.a & _.p", "& expects bools on both sides, got int64 and bool", id="and"
        ),
        pytest.param(BOOL, "~_.a", "~ expects a bool, got int64", id="not"),
        pytest.param(INT, "-_.s", "- expects a number, got large_string", id="negate"),
        pytest.param(
            BOOL,
            "_.a == _.s",
            "== expects two values of one type, got int64 and large_string",
            id="compare",
        ),
        pytest.param(
            BOOL,
            "_.l < _.l",
            "< expects values that have an order, not lists, got list<int64>",
            id="order_lists",
        ),
        pytest.param(
            INT, "length(_.a)", "length() expects a string or a list, got int64", id="length"
        ),
        pytest.param(STR, "concat(_.s, 1)", "concat() expects a string, got int64", id="concat"),
        pytest.param(
            INT,
            "coalesce(_.a, _.s)",
            "coalesce() expects arguments of one type, got int64 and large_string",
            id="coalesce",
        ),
        pytest.param(
            INT,
            "if_then_else(_.a, 1, 2)",
            "if_then_else() expects a bool condition, got int64",
            id="if_condition",
        ),
        pytest.param(
            INT,
            'if_then_else(_.p, 1, "x")',
            "if_then_else() expects arguments of one type, got int64 and large_string",
            id="if_branches",
        ),
        pytest.param(INT, "abs(_.s)", "abs() expects a number, got large_string", id="abs"),
        pytest.param(INT, "round(_.s)", "round() expects a number, got large_string", id="round"),
        pytest.param(
            FLOAT,
            "round(_.x, _.a)",
            "round() expects its digits as a whole number from 0 up, such as round(_.x, 2), "
            "got _.a",
            id="round_digits",
        ),
        pytest.param(
            FLOAT, "round(_.x, -1)", "round() expects its digits", id="round_negative_digits"
        ),
        pytest.param(INT, 'cast(_.a, "nonsense")', "cast() cannot read its type", id="cast_type"),
        pytest.param(INT, "cast(_.a, _.s)", "cast() expects the type as a string", id="cast_arg"),
        pytest.param(
            STR, 'json_value(_.j, "a.b")', "json_value() expects a JSONPath", id="json_path"
        ),
        pytest.param(
            STR, 'json_value(_.j, "$.a[*]")', "json_value() expects a JSONPath", id="json_star"
        ),
        pytest.param(
            STR, 'json_value(_.a, "$.a")', "json_value() expects a string, got int64", id="json"
        ),
        pytest.param(
            INT,
            "_.a / 2",
            "its expression gives double, but the feature is declared int64",
            id="declared_type",
        ),
        pytest.param(
            STR,
            "_.a",
            "its expression gives int64, but the feature is declared large_string",
            id="declared_kind",
        ),
        pytest.param(
            INT, str(2**64), "the integer 18446744073709551616 does not fit int64", id="big_literal"
        ),
    ],
)
def test_a_type_error_names_the_feature_and_the_types(
    kind: pa.DataType, text: str, message: str
) -> None:
    with pytest.raises(EngineTypeError, match=f"^{re.escape(f'document.y: {message}')}"):
        run({"y": (kind, text)})


def test_the_type_error_message_in_full() -> None:
    with pytest.raises(EngineTypeError) as caught:
        run({"shout": (STR, "upper(_.a)")})

    assert str(caught.value) == "document.shout: upper() expects a string, got int64"
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            'cast(_.s, "int64")',
            "document.y: cast() cannot convert large_string to int64 without loss: ",
            id="string",
        ),
        pytest.param(
            'cast(_.x, "int64")',
            "document.y: cast() cannot convert double to int64 without loss: ",
            id="fraction",
        ),
    ],
)
def test_a_cast_that_loses_values_is_an_error_naming_the_feature(text: str, match: str) -> None:
    with pytest.raises(EngineTypeError, match=f"^{re.escape(match)}") as caught:
        run({"y": (INT, text)})

    assert "This error occurred" not in str(caught.value)


def test_a_value_that_does_not_fit_the_declared_type_is_an_error() -> None:
    with pytest.raises(EngineError, match=r"^document\.y: evaluating \(_\.a \* 100\) failed"):
        run({"y": (pa.int8(), "_.a * 100")})


def test_model_calls_are_not_run_here() -> None:
    with pytest.raises(
        ModelCallNotWiredError,
        match=r'^document\.y: catalog_call\("model\.ner", _\.s\) calls a model, and model '
        r"calls arrive with the query engine",
    ) as caught:
        run({"y": (STR, 'catalog_call("model.ner", _.s)')})

    assert isinstance(caught.value, NotImplementedError)


def test_every_operator_awaited_gives_what_execute_gives() -> None:
    derived = {f"y{n}": (param.values[0], param.values[1]) for n, param in enumerate(OPERATORS)}

    awaited = run(derived, awaited=True)

    assert awaited.equals(run(derived))
    assert awaited.column("document.y0").to_pylist() == [9, -5, None, None, 3]


@pytest.mark.parametrize(
    ("kind", "text", "error"),
    [
        pytest.param(STR, "upper(_.a)", EngineTypeError, id="type_error"),
        pytest.param(pa.int8(), "(_.a * 100)", EngineError, id="lossy_cast"),
        pytest.param(STR, 'catalog_call("model.ner", _.s)', ModelCallNotWiredError, id="no_caller"),
    ],
)
def test_errors_awaited_are_the_errors_of_execute(
    kind: pa.DataType, text: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as blocking:
        run({"y": (kind, text)})
    with pytest.raises(error) as awaited:
        run({"y": (kind, text)}, awaited=True)

    assert type(awaited.value) is type(blocking.value)
    # polars casts a column's parts on several threads and names the values of the part that
    # failed first ("for 2 out of 3 values: [700, -700]" or "1 out of 2: [300]"), run to run.
    assert str(awaited.value).split(" for ")[0] == str(blocking.value).split(" for ")[0]


def test_results_are_typed_by_the_declared_types() -> None:
    result = run(
        {
            "narrow": (pa.int32(), "(_.a + 1)"),
            "wide": (FLOAT, "(_.a + 1)"),
            "small_string": (pa.string(), "upper(_.s)"),
            "listed": (pa.list_(INT), "_.l"),
        }
    )

    assert result.schema == pa.schema(
        [
            ("document.narrow", pa.int32()),
            ("document.wide", FLOAT),
            ("document.small_string", pa.string()),
            ("document.listed", pa.list_(INT)),
        ]
    )
    assert result.column("document.narrow").to_pylist() == [8, -6, None, 1, 4]
    assert result.column("document.listed").to_pylist() == COLUMNS["l"].to_pylist()


def test_derived_features_feed_derived_features() -> None:
    result = run(
        {
            "size": (INT, "length(_.s)"),
            "double": (INT, "(_.size * 2)"),
            "shout": (STR, 'if_then_else(_.double > 4, upper(_.s), "quiet")'),
        }
    )

    assert result.to_pydict() == {
        "document.size": [5, 7, None, 0, 1],
        "document.double": [10, 14, None, 0, 2],
        "document.shout": ["HELLO", " WÖRLD ", "quiet", "quiet", "quiet"],
    }


def query_of(derived: Mapping[str, tuple[pa.DataType, str]]) -> tuple[FeatureGraph, Plan]:
    graph = graph_of({"a": INT, "s": STR}, derived)
    return graph, plan(graph, ["document.a", "document.s"], [f"document.{n}" for n in derived])


def test_a_polars_frame_is_an_input_too() -> None:
    graph, query = query_of({"y": (INT, "(_.a + 1)")})
    frame = pl.DataFrame({"document.s": ["x", "y"], "document.a": [1, None]})

    assert execute(query, frame, graph).to_pydict() == {"document.y": [2, None]}


def test_input_columns_are_widened_to_the_declared_types() -> None:
    graph, query = query_of({"y": (STR, 'concat(_.s, cast(_.a, "large_string"))')})
    table = pa.table(
        {"document.a": pa.array([1, 2], pa.int32()), "document.s": pa.array(["a", "b"])}
    )

    assert execute(query, table, graph).to_pydict() == {"document.y": ["a1", "b2"]}


def test_an_input_column_of_another_type_is_an_error() -> None:
    graph, query = query_of({"y": (INT, "(_.a + 1)")})
    table = pa.table({"document.a": ["1"], "document.s": ["x"]})

    with pytest.raises(
        EngineTypeError,
        match=r"^document\.a: the input column holds string, but the feature is declared "
        r"int64",
    ):
        execute(query, table, graph)


def test_a_missing_input_column_is_an_error_with_a_suggestion() -> None:
    graph, query = query_of({"y": (INT, "(_.a + 1)")})
    table = pa.table({"document.aa": [1], "document.s": ["x"]})

    with pytest.raises(
        EngineError, match=r"the input has no column 'document\.a'.*did you mean 'document\.aa'"
    ):
        execute(query, table, graph)


def test_other_columns_are_ignored_and_rows_keep_their_order() -> None:
    graph, query = query_of({"y": (INT, "(_.a * 10)")})
    table = pa.table({"other": [0, 0, 0], "document.a": [3, 1, 2], "document.s": ["", "", ""]})

    assert execute(query, table, graph).to_pydict() == {"document.y": [30, 10, 20]}


def test_an_empty_table_gives_an_empty_result() -> None:
    graph, query = query_of({"y": (INT, "(_.a * 10)")})
    table = pa.table({"document.a": pa.array([], INT), "document.s": pa.array([], STR)})

    result = execute(query, table, graph)

    assert (result.num_rows, result.schema) == (0, pa.schema([("document.y", INT)]))


def test_constants_take_the_row_count_of_the_input() -> None:
    graph = graph_of({"a": INT}, {"y": (INT, "41 + 1")})
    query = plan(graph, [], ["document.y"])

    assert execute(query, pa.table({"x": [0, 0, 0]}), graph).to_pydict() == {
        "document.y": [42, 42, 42]
    }


def test_constants_take_the_row_count_of_a_polars_input() -> None:
    graph = graph_of({"a": INT}, {"y": (STR, 'upper("k")')})
    query = plan(graph, [], ["document.y"])

    assert execute(query, pl.DataFrame({"x": [0, 0]}), graph).to_pydict() == {
        "document.y": ["K", "K"]
    }


@pytest.mark.parametrize(
    ("text", "declared"),
    [
        pytest.param("(_.a + 0.5)", pa.float32(), id="float64_as_float32"),
        pytest.param("(_.a + 1)", pa.float32(), id="int64_as_float32"),
        pytest.param("(_.a > 1)", INT, id="bool_as_int64"),
    ],
)
def test_a_lossy_declared_type_is_refused(text: str, declared: pa.DataType) -> None:
    with pytest.raises(EngineTypeError, match="but the feature is declared"):
        run({"y": (declared, text)})


def test_a_literal_compared_with_a_constant_branch_keeps_every_row() -> None:
    # polars' eager with_columns once gave this one row when the condition was all null.
    columns = {"a": pa.array([None, None], INT), "p": pa.array([None, None], BOOL)}

    result = run({"y": (BOOL, "(0 == if_then_else(_.p, _.a, 0))")}, columns)

    assert result.column("document.y").to_pylist() == [True, True]


def test_a_plan_from_another_graph_is_refused() -> None:
    _, query = query_of({"y": (INT, "(_.a + 1)")})
    other = graph_of({"a": INT, "s": STR}, {"y": (INT, "(_.a + 2)")})

    with pytest.raises(EngineError, match="the plan was made from another feature graph"):
        execute(query, pa.table({"document.a": [1], "document.s": ["x"]}), other)


# The property: random int64/bool trees over nullable columns, against a row-by-row reference.
INT_COLUMNS = ("a", "b", "c")
BOOL_COLUMNS = ("p",)
SMALL = st.integers(min_value=-100, max_value=100)


def int_leaves() -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.sampled_from(INT_COLUMNS).map(FeatureRef),
        SMALL.map(Literal),
        st.just(Literal(None)),
    )


def bool_leaves() -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.sampled_from(BOOL_COLUMNS).map(FeatureRef),
        st.sampled_from([True, False, None]).map(Literal),
    )


@st.composite
def int_trees(draw: st.DrawFn, depth: int = 3) -> Expr:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(int_leaves())
    child = int_trees(depth - 1)
    shape = draw(st.sampled_from(["binary", "negate", "abs", "if", "coalesce"]))
    if shape == "binary":
        op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
        return BinaryOp(op, draw(child), draw(child))
    if shape == "negate":
        return negate(draw(child))
    if shape == "abs":
        return Call("abs", (draw(child),))
    if shape == "if":
        return Call("if_then_else", (draw(bool_trees(depth - 1)), draw(child), draw(child)))
    return Call("coalesce", tuple(draw(st.lists(child, min_size=1, max_size=3))))


@st.composite
def bool_trees(draw: st.DrawFn, depth: int = 3) -> Expr:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(bool_leaves())
    child = bool_trees(depth - 1)
    shape = draw(st.sampled_from(["compare", "logic", "not", "is_null", "bool_eq"]))
    if shape == "compare":
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return BinaryOp(op, draw(int_trees(depth - 1)), draw(int_trees(depth - 1)))
    if shape == "logic":
        return BinaryOp(draw(st.sampled_from(["&", "|"])), draw(child), draw(child))
    if shape == "not":
        return UnaryOp("~", draw(child))
    if shape == "is_null":
        return Call("is_null", (draw(int_trees(depth - 1)),))
    return BinaryOp(draw(st.sampled_from(["==", "!="])), draw(child), draw(child))


Row = Mapping[str, int | bool | None]
_COMPARE = {
    "==": lambda x, y: x == y,
    "!=": lambda x, y: x != y,
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
}


def evaluate(node: Expr, row: Row) -> Any:
    """One row, the SQL way: nulls propagate, & and | are three-valued, x // 0 is null."""
    if isinstance(node, FeatureRef):
        return row[node.name]
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, UnaryOp):
        value = evaluate(node.operand, row)
        return None if value is None else not value if node.op == "~" else checked(-value)
    if isinstance(node, BinaryOp):
        return evaluate_binary(node.op, evaluate(node.left, row), evaluate(node.right, row))
    assert isinstance(node, Call)
    return _CALLS[node.function]([evaluate(argument, row) for argument in node.args])


_CALLS: dict[str, Callable[[list[Any]], Any]] = {
    "abs": lambda args: None if args[0] is None else checked(abs(args[0])),
    "if_then_else": lambda args: args[1] if args[0] is True else args[2],
    "is_null": lambda args: args[0] is None,
    "coalesce": lambda args: next((value for value in args if value is not None), None),
}
_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "%": operator.mod,
}


def evaluate_binary(op: str, left: Any, right: Any) -> Any:
    if op in ("&", "|"):
        return three_valued(op, left, right)
    if left is None or right is None or (op in ("//", "%") and right == 0):
        return None
    if op in _COMPARE:
        return _COMPARE[op](left, right)
    return checked(_ARITHMETIC[op](left, right))


def three_valued(op: str, left: bool | None, right: bool | None) -> bool | None:
    # True decides an |, False decides an &; otherwise a null leaves the answer unknown.
    decisive = op == "|"
    if left is decisive or right is decisive:
        return decisive
    if left is None or right is None:
        return None
    return not decisive


def checked(value: int) -> int:
    # int64 arithmetic wraps on overflow; the generator keeps values small, so rarely needed.
    assume(-(2**63) <= value < 2**63)
    return value


def nullable(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


@st.composite
def rows(draw: st.DrawFn) -> list[dict[str, int | bool | None]]:
    count = draw(st.integers(min_value=0, max_value=12))
    drawn = []
    for _ in range(count):
        row: dict[str, int | bool | None] = {name: draw(nullable(SMALL)) for name in INT_COLUMNS}
        row.update({name: draw(nullable(st.booleans())) for name in BOOL_COLUMNS})
        drawn.append(row)
    return drawn


@settings(max_examples=200, deadline=None)
@given(
    tree=st.one_of(int_trees().map(lambda t: (INT, t)), bool_trees().map(lambda t: (BOOL, t))),
    table_rows=rows(),
)
def test_vectorised_evaluation_equals_row_by_row_evaluation(
    tree: tuple[pa.DataType, Expr], table_rows: list[dict[str, int | bool | None]]
) -> None:
    kind, node = tree
    expected = [evaluate(node, row) for row in table_rows]
    columns = {name: pa.array([row[name] for row in table_rows], INT) for name in INT_COLUMNS}
    columns.update(
        {name: pa.array([row[name] for row in table_rows], BOOL) for name in BOOL_COLUMNS}
    )

    result = run({"y": (kind, repr(node))}, columns)

    assert result.column("document.y").to_pylist() == expected


def test_a_query_leaves_no_reference_cycle_holding_its_columns() -> None:
    """Its columns are freed when it returns, not at the collector's next pass: an offline
    query's memory stays flat block after block."""
    import gc

    graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (
        FeatureDef("doc", "text", pa.large_string(), nullable=True),
        FeatureDef("doc", "same", pa.large_string(), nullable=True, expression="_.text"),
    ))])  # fmt: skip
    query = plan(graph, ["doc.text"], ["doc.same"])
    table = pa.table({"doc.text": pa.array(["a", None], pa.large_string())})
    execute(query, table, graph)  # caches warmed
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        execute(query, table, graph)
        gc.collect()
        held = [type(found).__name__ for found in gc.garbage if _is_arrow(found)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()

    assert held == []


def _is_arrow(value: object) -> bool:
    return type(value).__module__.startswith("pyarrow") or hasattr(value, "arrow")
