"""Expression text to nodes, through ``grammar.lark`` (parsed once, LALR).

The engine reads derived features' expressions from the serialised graph with ``parse``; a
node's repr parses back to an equal node.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from chalk.features.expr import (
    BinaryOp,
    Call,
    Expr,
    ExpressionError,
    FeatureRef,
    Literal,
    UnaryOp,
)

__all__ = ["ExpressionSyntaxError", "parse"]


class ExpressionSyntaxError(ExpressionError):
    """Expression text that does not parse; carries the line, column and text."""

    def __init__(self, message: str, *, text: str, line: int, column: int) -> None:
        lines = text.splitlines() or [""]
        shown = lines[min(line, len(lines)) - 1]
        super().__init__(
            f"{message} at line {line}, column {column}:\n  {shown}\n  {' ' * (column - 1)}^"
        )
        self.text = text
        self.line = line
        self.column = column


@v_args(inline=True)
class _ToNodes(Transformer[Token, Expr]):
    """One method per grammar alias; each builds the node of that form."""

    def binary(self, left: Expr, op: Token, right: Expr) -> Expr:
        return BinaryOp(str(op), left, right)

    def or_(self, left: Expr, right: Expr) -> Expr:
        return BinaryOp("|", left, right)

    def and_(self, left: Expr, right: Expr) -> Expr:
        return BinaryOp("&", left, right)

    def power(self, base: Expr, _op: Token, exponent: Expr) -> Expr:
        return BinaryOp("**", base, exponent)

    def negate(self, operand: Expr) -> Expr:
        return negate(operand)

    def invert(self, operand: Expr) -> Expr:
        return UnaryOp("~", operand)

    def feature(self, name: Token) -> Expr:
        return FeatureRef(str(name))

    def call(self, name: Token, *args: Expr | None) -> Expr:
        return Call(str(name), tuple(arg for arg in args if arg is not None))

    def number(self, token: Token) -> Expr:
        text = str(token)
        if any(mark in text for mark in ".eE"):
            return Literal(float(text))
        return Literal(int(text))

    def string(self, token: Token) -> Expr:
        return Literal(json.loads(str(token)))

    def none(self) -> Expr:
        return Literal(None)

    def true(self) -> Expr:
        return Literal(True)

    def false(self) -> Expr:
        return Literal(False)


def negate(operand: Expr) -> Expr:
    """``-operand``; a number's negation is the negative literal, its one written form."""
    if isinstance(operand, Literal) and type(operand.value) in (int, float):
        return Literal(-operand.value)  # type: ignore[operator]
    return UnaryOp("-", operand)


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("chalk.engine").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", maybe_placeholders=True)


def parse(text: str) -> Expr:
    """Parse expression text into a node.

    Examples
    --------
    >>> parse('catalog_call("model.ner", _.text)')
    catalog_call("model.ner", _.text)
    >>> parse("_.a + 2 * _.b")
    (_.a + (2 * _.b))
    >>> parse("_.a +")
    Traceback (most recent call last):
    ...
    chalk.engine.parse.ExpressionSyntaxError: unexpected end of expression at line 1, column 5:
      _.a +
          ^
    """
    try:
        tree = _parser().parse(text)
        node: Any = _ToNodes().transform(tree)
    except UnexpectedInput as error:
        line = getattr(error, "line", 1)
        column = getattr(error, "column", 1)
        if not isinstance(line, int) or line < 1:
            line, column = _end_of(text)
        message = "unexpected end of expression" if _at_end(error) else _describe(error, text)
        raise ExpressionSyntaxError(message, text=text, line=line, column=column) from None
    except VisitError as error:
        cause = error.orig_exc
        if isinstance(cause, ExpressionError):
            raise ExpressionError(f"{cause} in {text!r}") from None
        raise
    return node  # type: ignore[no-any-return]


def _at_end(error: UnexpectedInput) -> bool:
    token = getattr(error, "token", None)
    return token is not None and getattr(token, "type", "") == "$END"


def _describe(error: UnexpectedInput, text: str) -> str:
    token = getattr(error, "token", None)
    if token is not None:
        return f"unexpected {str(token)!r}"
    pos = getattr(error, "pos_in_stream", None)
    if isinstance(pos, int) and 0 <= pos < len(text):
        return f"unexpected character {text[pos]!r}"
    return "cannot parse the expression"


def _end_of(text: str) -> tuple[int, int]:
    lines = text.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1
