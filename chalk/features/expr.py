"""Expression nodes and the deferred ``_`` that builds them.

Nodes are frozen, slotted, hashable values with structural equality; a node's ``repr`` is
exactly the text ``chalk/engine/grammar.lark`` parses back into it. ``_`` and the F functions
return ``Deferred`` wrappers, whose operators (``chalk.features.operators``) build new nodes
(so ``_.a == 1`` is an expression, not a comparison); ``node_of`` unwraps them. The feature
DSL and the engine both work on nodes.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeAlias, cast

from chalk.features.operators import Operators, Scalar

if TYPE_CHECKING:
    # To a type checker an expression is assignable to any annotation, so that
    # ``n: int = _.id + 1`` type-checks in a user's feature class (as ``unittest.mock.Mock``
    # is typed); its own methods keep their signatures. At run time it is a plain class.
    _FeatureValue = Any
else:
    _FeatureValue = object

from chalk.common.errors import ChalkError
from chalk.common.names import group_of_call_name

__all__ = [
    "BINARY_OPERATORS",
    "FUNCTIONS",
    "UNARY_OPERATORS",
    "BinaryOp",
    "Call",
    "Deferred",
    "Expr",
    "ExpressionError",
    "FeatureRef",
    "Literal",
    "Operand",
    "UnaryOp",
    "call",
    "check_catalog_call_name",
    "features_used",
    "node_of",
    "underscore",
]

# Binary operators by their text; chalk.features.operators has the dunder that builds each.
BINARY_OPERATORS: Final = frozenset(
    {"+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "&", "|"}
)
UNARY_OPERATORS: Final = frozenset({"-", "~"})
# Each F function's name and how many arguments it takes (min, max; None = any number).
FUNCTIONS: Final[dict[str, tuple[int, int | None]]] = {
    "catalog_call": (1, None),
    "json_value": (2, 2),
    "lower": (1, 1),
    "upper": (1, 1),
    "length": (1, 1),
    "trim": (1, 1),
    "concat": (1, None),
    "coalesce": (1, None),
    "if_then_else": (3, 3),
    "is_null": (1, 1),
    "abs": (1, 1),
    "round": (1, 2),
    "cast": (2, 2),
}
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ExpressionError(ChalkError, ValueError):
    """An expression was built or written wrongly; the message says what was expected."""


class Expr:
    """Base of every expression node."""

    __slots__ = ()

    def children(self) -> tuple[Expr, ...]:
        """The nodes directly below this one."""
        return ()

    def __str__(self) -> str:
        return self.__repr__()


@dataclass(frozen=True, slots=True, repr=False)
class FeatureRef(Expr):
    """A feature of the same class: ``_.text``."""

    name: str

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name) or keyword.iskeyword(self.name):
            raise ExpressionError(
                f"_.{self.name} is not a feature reference: expected a Python identifier"
            )

    def __repr__(self) -> str:
        return f"_.{self.name}"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Literal(Expr):
    """A constant: None, a bool, an int, a finite float or a str."""

    value: Scalar

    def __post_init__(self) -> None:
        if self.value is not None and type(self.value) not in (bool, int, float, str):
            raise ExpressionError(
                f"{self.value!r} cannot be a literal in an expression: expected None, a bool, "
                f"an int, a float or a str, got {type(self.value).__name__}"
            )
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ExpressionError(f"{self.value!r} cannot be a literal: expected a finite float")

    def __eq__(self, other: object) -> bool:
        # 1 == True == 1.0 in Python; as literals they are three different things.
        return (
            type(other) is Literal
            and type(self.value) is type(other.value)
            and self.value == other.value
        )

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))

    def __repr__(self) -> str:
        if isinstance(self.value, str):
            return json.dumps(self.value, ensure_ascii=False)
        text = repr(self.value)
        # Bracketed, so that a power or a subtraction reads it back as one number.
        return f"({text})" if text.startswith("-") else text


@dataclass(frozen=True, slots=True, repr=False)
class BinaryOp(Expr):
    """``(left op right)``."""

    op: str
    left: Expr
    right: Expr

    def __post_init__(self) -> None:
        if self.op not in BINARY_OPERATORS:
            raise ExpressionError(f"unknown operator {self.op!r}")

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"


@dataclass(frozen=True, slots=True, repr=False)
class UnaryOp(Expr):
    """``(-x)`` or ``(~x)`` (logical not)."""

    op: str
    operand: Expr

    def __post_init__(self) -> None:
        if self.op not in UNARY_OPERATORS:
            raise ExpressionError(f"unknown unary operator {self.op!r}")
        operand = self.operand
        if self.op == "-" and isinstance(operand, Literal) and type(operand.value) in (int, float):
            # One written form per value: a negative number is a literal, never -(number).
            raise ExpressionError(
                f"-{operand!r} is a number: expected the literal Literal(-{operand!r})"
            )

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def __repr__(self) -> str:
        return f"({self.op}{self.operand!r})"


@dataclass(frozen=True, slots=True, repr=False)
class Call(Expr):
    """An F function applied to arguments: ``upper(_.name)``."""

    function: str
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        arity = FUNCTIONS.get(self.function)
        if arity is None:
            raise ExpressionError(
                f"unknown function {self.function!r}: expected one of "
                f"{', '.join(sorted(FUNCTIONS))}"
            )
        low, high = arity
        if len(self.args) < low or (high is not None and len(self.args) > high):
            wanted = f"{low}" if low == high else f"{low} to {high}" if high else f"{low} or more"
            raise ExpressionError(
                f"{self.function}() takes {wanted} arguments, got {len(self.args)}"
            )
        if self.function == "catalog_call":
            first = self.args[0]
            if not (isinstance(first, Literal) and isinstance(first.value, str)):
                raise ExpressionError(
                    f"catalog_call's first argument must be the name as a string literal, "
                    f'such as "model.ner", got {first!r}'
                )
            check_catalog_call_name(first.value)

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __repr__(self) -> str:
        return f"{self.function}({', '.join(repr(arg) for arg in self.args)})"


def check_catalog_call_name(name: str) -> str:
    """A catalog_call name must be ``model.<scaling group>`` (a DNS-1123 label).

    Examples
    --------
    >>> check_catalog_call_name("model.ner")
    'model.ner'
    >>> check_catalog_call_name("ner")
    Traceback (most recent call last):
    ...
    chalk.features.expr.ExpressionError: catalog_call name 'ner' is not valid: expected 'model.<scaling group>', such as 'model.ner', where the group is lowercase letters, digits and '-'
    """  # noqa: E501
    if not isinstance(name, str) or group_of_call_name(name) is None:
        raise ExpressionError(
            f"catalog_call name {name!r} is not valid: expected 'model.<scaling group>', such "
            f"as 'model.ner', where the group is lowercase letters, digits and '-'"
        )
    return name


def features_used(node: Expr) -> frozenset[str]:
    """The names of every ``_.feature`` in ``node``.

    Examples
    --------
    >>> sorted(features_used(node_of((underscore.a + underscore.b) * 2)))
    ['a', 'b']
    """
    if isinstance(node, FeatureRef):
        return frozenset({node.name})
    found: frozenset[str] = frozenset()
    for child in node.children():
        found |= features_used(child)
    return found


def node_of(value: object) -> Expr:
    """Any operand as a node: a Deferred's node, a node itself, or a Literal.

    Examples
    --------
    >>> node_of(3), node_of("a"), node_of(underscore.x)
    (3, "a", _.x)
    """
    if isinstance(value, Deferred):
        return value.node
    if isinstance(value, Expr):
        return value
    if isinstance(value, bytes | bytearray | list | tuple | dict | set):
        raise ExpressionError(
            f"{type(value).__name__} values cannot be used in an expression: expected a "
            f"feature (_.name), an F function, or None, a bool, an int, a float or a str"
        )
    # Literal checks the rest (a datetime, an object) and says what it expected.
    return Literal(cast(Scalar, value))


def call(function: str, *args: object) -> Deferred:
    """``Deferred(Call(function, args))`` with every argument coerced to a node."""
    return Deferred(Call(function, tuple(node_of(arg) for arg in args)))


class Deferred(Operators, _FeatureValue):  # type: ignore[misc]  # see _FeatureValue
    """What ``_`` and the F functions return: an expression under construction.

    Operators (``chalk.features.operators``) build bigger expressions (``_.a + 1``,
    ``_.a == 1``); ``bool()`` and iteration raise, naming the operator to use instead.

    Examples
    --------
    >>> from chalk.features import _
    >>> (_.a > 1) & ~_.b
    ((_.a > 1) & (~_.b))
    >>> bool(_.a > 1)
    Traceback (most recent call last):
    ...
    TypeError: the truth value of the expression (_.a > 1) is unknown until it runs: use & for 'and', | for 'or', ~ for 'not', and F.if_then_else(cond, a, b) for 'x if c else y'
    """  # noqa: E501

    __slots__ = ("_node",)

    def __init__(self, node: Expr | None) -> None:
        self._node = node

    @property
    def node(self) -> Expr:
        """The expression node this stands for."""
        if self._node is None:
            raise ExpressionError("_ alone is not an expression: expected _.<feature>")
        return self._node

    def __getattr__(self, name: str) -> Deferred:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._node is not None:
            raise ExpressionError(
                f"{self._node!r}.{name} is not supported: expected _.<feature> of this class"
            )
        return Deferred(FeatureRef(name))

    def __repr__(self) -> str:
        return repr(self._node) if self._node is not None else "_"

    def __bool__(self) -> NoReturn:
        raise TypeError(
            f"the truth value of the expression {self!r} is unknown until it runs: use & for "
            f"'and', | for 'or', ~ for 'not', and F.if_then_else(cond, a, b) for 'x if c else y'"
        )

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"the expression {self!r} is not a sequence and cannot be iterated")

    def _binary(self, op: str, other: object, *, reflected: bool = False) -> Deferred:
        left, right = self.node, node_of(other)
        if reflected:
            left, right = right, left
        return Deferred(BinaryOp(op, left, right))

    def _unary(self, op: str) -> Deferred:
        if op == "abs":
            return call("abs", self)
        node = self.node
        if op == "-" and isinstance(node, Literal) and type(node.value) in (int, float):
            return Deferred(Literal(-node.value))  # type: ignore[operator]
        return Deferred(UnaryOp(op, node))


underscore: Final = Deferred(None)

Operand: TypeAlias = Deferred | Scalar
"""What an F function takes as an argument: an expression or a constant."""
