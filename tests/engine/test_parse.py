"""Expression text to nodes and back: ``parse(repr(node)) == node``, exact reprs, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalk.engine.parse import ExpressionSyntaxError, negate, parse
from chalk.features.expr import (
    BINARY_OPERATORS,
    BinaryOp,
    Call,
    Expr,
    ExpressionError,
    FeatureRef,
    Literal,
)

features = st.sampled_from(["a", "b", "text", "x_1"]).map(FeatureRef)
literals = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e300, -2.5e-10, 0.1, -0.0]),
    st.text(max_size=12),
    st.sampled_from(['say "hi"', "back\\slash", "new\nline", "tab\t", "é ☃ 日本", "\u2028"]),
).map(Literal)
# Every F function but the variadic ones, by arity; catalog_call is built apart (its name).
_FIXED = ["json_value", "lower", "upper", "length", "trim", "if_then_else", "is_null", "abs"]
_ARITY = {"json_value": 2, "if_then_else": 3}


def _calls(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    fixed = st.sampled_from(_FIXED).flatmap(
        lambda name: st.tuples(*[children] * _ARITY.get(name, 1)).map(lambda args: Call(name, args))
    )
    variadic = st.builds(
        Call,
        st.sampled_from(["concat", "coalesce"]),
        st.lists(children, min_size=1, max_size=3).map(tuple),
    )
    rounded = st.builds(
        lambda args: Call("round", tuple(args)), st.lists(children, min_size=1, max_size=2)
    )
    cast = st.builds(
        lambda value, text: Call("cast", (value, Literal(text))),
        children,
        st.sampled_from(["int64", "large_string", "list<float64>"]),
    )
    catalog = st.builds(
        lambda name, args: Call("catalog_call", (Literal(name), *args)),
        st.sampled_from(["model.ner", "model.a-1"]),
        st.lists(children, max_size=2),
    )
    return st.one_of(fixed, variadic, rounded, cast, catalog)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(BinaryOp, st.sampled_from(sorted(BINARY_OPERATORS)), children, children),
        # negate is the grammar's own "-": a number's negation is the negative literal.
        children.map(negate),
        children.map(lambda node: negate(negate(node))),
        st.builds(lambda node: parse(f"~{node!r}"), children),
        _calls(children),
    )


trees = st.recursive(st.one_of(features, literals), _extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(node=trees)
def test_every_node_parses_back_from_its_repr(node: Expr) -> None:
    assert parse(repr(node)) == node


@settings(deadline=None)
@given(node=trees)
def test_str_is_repr(node: Expr) -> None:
    assert parse(str(node)) == node


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("_.a + 2 * _.b", "(_.a + (2 * _.b))", id="precedence"),
        pytest.param("(_.a + 2) * _.b", "((_.a + 2) * _.b)", id="brackets"),
        pytest.param("_.a - _.b - _.c", "((_.a - _.b) - _.c)", id="left_associative"),
        pytest.param("2 ** 3 ** 2", "(2 ** (3 ** 2))", id="power_right_associative"),
        pytest.param("-2 ** 2", "(-(2 ** 2))", id="minus_binds_looser_than_power"),
        pytest.param("2 ** -1", "(2 ** (-1))", id="negative_exponent"),
        pytest.param("- 1.5e3", "(-1500.0)", id="negative_float_literal"),
        pytest.param("-_.a", "(-_.a)", id="negated_feature"),
        pytest.param("True & ~False | None", "((True & (~False)) | None)", id="logic"),
        pytest.param("_.a // 2 % 3", "((_.a // 2) % 3)", id="floor_mod"),
        pytest.param("_.a <= 1 & _.b != 2", "((_.a <= 1) & (_.b != 2))", id="compare_and"),
        pytest.param('upper( "é\\n" )', 'upper("é\\n")', id="string_escape"),
        pytest.param(
            'catalog_call("model.ner", _.text, 3)',
            'catalog_call("model.ner", _.text, 3)',
            id="catalog_call",
        ),
        pytest.param(
            'json_value(_.doc, "$.entities[0].label")',
            'json_value(_.doc, "$.entities[0].label")',
            id="json_value",
        ),
        pytest.param(
            "if_then_else(\n  _.a > 0,\n  _.a,\n  0\n)",
            "if_then_else((_.a > 0), _.a, 0)",
            id="lines",
        ),
    ],
)
def test_exact_reprs(text: str, expected: str) -> None:
    assert repr(parse(text)) == expected


@pytest.mark.parametrize(
    ("text", "line", "column", "match"),
    [
        pytest.param("_.a +", 1, 5, "unexpected end of expression", id="end"),
        pytest.param("_.a +\n  * 2", 2, 3, "unexpected '\\*'", id="second_line"),
        pytest.param("_.a < _.b < _.c", 1, 11, "unexpected '<'", id="chained_comparison"),
        pytest.param('"abc', 1, 1, "unexpected character '\"'", id="open_string"),
        pytest.param("_.a @ 2", 1, 5, "unexpected character '@'", id="unknown_operator"),
    ],
)
def test_syntax_errors_carry_line_and_column(text: str, line: int, column: int, match: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=match) as caught:
        parse(text)

    assert (caught.value.line, caught.value.column) == (line, column)


def test_a_syntax_error_points_at_the_offending_text() -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse("_.a +\n  * 2")

    assert str(caught.value).endswith("  * 2\n    ^")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("f(_.a)", "unknown function 'f'", id="unknown_function"),
        pytest.param("upper(_.a, _.b)", r"upper\(\) takes 1 arguments, got 2", id="arity"),
        pytest.param('catalog_call("ner", _.a)', "catalog_call name 'ner'", id="bad_model"),
        pytest.param("_.class", "not a feature reference", id="keyword_feature"),
    ],
)
def test_well_formed_but_invalid_text_is_an_expression_error(text: str, match: str) -> None:
    with pytest.raises(ExpressionError, match=match):
        parse(text)
