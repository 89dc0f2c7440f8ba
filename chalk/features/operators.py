"""The operators of ``_`` expressions, written out one by one with their documentation.

``chalk.features.expr.Deferred`` inherits them; each builds a bigger expression through the
two hooks ``Deferred`` implements (``_binary`` and ``_unary``), so this module imports nothing.
"""

from __future__ import annotations

from typing import ClassVar, Self, TypeAlias

__all__ = ["Operators", "Scalar"]

Scalar: TypeAlias = bool | int | float | str | None
"""A constant an operator or an F function takes beside expressions."""


class Operators:
    """Arithmetic, comparison and logical operators that build expression nodes.

    Each returns a new expression and leaves its operands as they were; none computes a value:
    the engine runs the expression over a query's columns. Python's ``and``, ``or``, ``not``
    and ``x if c else y`` cannot be overloaded: write ``&``, ``|``, ``~`` and
    ``F.if_then_else``.
    """

    __slots__ = ()
    # Equality builds an expression, so an expression cannot be a dict key or a set member.
    __hash__: ClassVar[None] = None  # type: ignore[assignment]

    def _binary(self, op: str, other: object, *, reflected: bool = False) -> Self:
        """``(self op other)``, or ``(other op self)`` when ``reflected``."""
        raise NotImplementedError

    def _unary(self, op: str) -> Self:
        """``(op self)``."""
        raise NotImplementedError

    def __add__(self, other: Self | Scalar) -> Self:
        """Sum of two numbers (``+``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self + other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.price + 1
        (_.price + 1)
        """
        return self._binary("+", other)

    def __radd__(self, other: Scalar) -> Self:
        """Sum with a constant on the left (``1 + _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> 1 + _.price
        (1 + _.price)
        """
        return self._binary("+", other, reflected=True)

    def __sub__(self, other: Self | Scalar) -> Self:
        """Difference of two numbers (``-``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self - other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.balance - 100
        (_.balance - 100)
        """
        return self._binary("-", other)

    def __rsub__(self, other: Scalar) -> Self:
        """Difference with a constant on the left (``100 - _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> 100 - _.balance
        (100 - _.balance)
        """
        return self._binary("-", other, reflected=True)

    def __mul__(self, other: Self | Scalar) -> Self:
        """Product of two numbers (``*``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self * other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.quantity * _.price
        (_.quantity * _.price)
        """
        return self._binary("*", other)

    def __rmul__(self, other: Scalar) -> Self:
        """Product with a constant on the left (``2 * _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> 2 * _.price
        (2 * _.price)
        """
        return self._binary("*", other, reflected=True)

    def __truediv__(self, other: Self | Scalar) -> Self:
        """Quotient as a float (``/``); division by zero gives null.

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self / other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.total / _.count
        (_.total / _.count)
        """
        return self._binary("/", other)

    def __rtruediv__(self, other: Scalar) -> Self:
        """Quotient with a constant on the left (``1 / _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> 1 / _.rate
        (1 / _.rate)
        """
        return self._binary("/", other, reflected=True)

    def __floordiv__(self, other: Self | Scalar) -> Self:
        """Quotient rounded down (``//``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self // other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.seconds // 60
        (_.seconds // 60)
        """
        return self._binary("//", other)

    def __rfloordiv__(self, other: Scalar) -> Self:
        """Quotient rounded down with a constant on the left (``60 // _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> 60 // _.step
        (60 // _.step)
        """
        return self._binary("//", other, reflected=True)

    def __mod__(self, other: Self | Scalar) -> Self:
        """Remainder of the division rounded down (``%``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self % other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.seconds % 60
        (_.seconds % 60)
        """
        return self._binary("%", other)

    def __rmod__(self, other: Scalar) -> Self:
        """Remainder with a constant on the left (``7 % _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> 7 % _.n
        (7 % _.n)
        """
        return self._binary("%", other, reflected=True)

    def __pow__(self, other: Self | Scalar) -> Self:
        """Power (``**``).

        Parameters
        ----------
        other
            The exponent: an expression or a constant.

        Returns
        -------
        Deferred
            ``(self ** other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.side ** 2
        (_.side ** 2)
        """
        return self._binary("**", other)

    def __rpow__(self, other: Scalar) -> Self:
        """Power of a constant (``2 ** _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> 2 ** _.bits
        (2 ** _.bits)
        """
        return self._binary("**", other, reflected=True)

    def __and__(self, other: Self | Scalar) -> Self:
        """Logical and of two conditions (``&``; Python's ``and`` cannot build an expression).

        Parameters
        ----------
        other
            A condition: an expression or a bool.

        Returns
        -------
        Deferred
            ``(self & other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> (_.age >= 18) & _.verified
        ((_.age >= 18) & _.verified)
        """
        return self._binary("&", other)

    def __rand__(self, other: Scalar) -> Self:
        """Logical and with a constant on the left (``True & _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> True & _.verified
        (True & _.verified)
        """
        return self._binary("&", other, reflected=True)

    def __or__(self, other: Self | Scalar) -> Self:
        """Logical or of two conditions (``|``; Python's ``or`` cannot build an expression).

        Parameters
        ----------
        other
            A condition: an expression or a bool.

        Returns
        -------
        Deferred
            ``(self | other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> (_.age < 13) | (_.age > 65)
        ((_.age < 13) | (_.age > 65))
        """
        return self._binary("|", other)

    def __ror__(self, other: Scalar) -> Self:
        """Logical or with a constant on the left (``False | _.x``).

        Examples
        --------
        >>> from chalk.features import _
        >>> False | _.verified
        (False | _.verified)
        """
        return self._binary("|", other, reflected=True)

    def __eq__(self, other: Self | Scalar) -> Self:  # type: ignore[override]
        """Whether two values are equal, row by row (``==``): an expression, not a bool.

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self == other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.status == "active"
        (_.status == "active")
        """
        return self._binary("==", other)

    def __ne__(self, other: Self | Scalar) -> Self:  # type: ignore[override]
        """Whether two values differ, row by row (``!=``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self != other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.status != "closed"
        (_.status != "closed")
        """
        return self._binary("!=", other)

    def __lt__(self, other: Self | Scalar) -> Self:
        """Whether this value is less than ``other`` (``<``); ``1 > _.x`` reads as ``_.x < 1``.

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self < other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.balance < 0
        (_.balance < 0)
        >>> 0 > _.balance
        (_.balance < 0)
        """
        return self._binary("<", other)

    def __le__(self, other: Self | Scalar) -> Self:
        """Whether this value is at most ``other`` (``<=``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self <= other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.age <= 12
        (_.age <= 12)
        """
        return self._binary("<=", other)

    def __gt__(self, other: Self | Scalar) -> Self:
        """Whether this value is greater than ``other`` (``>``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self > other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.score > 0.5
        (_.score > 0.5)
        """
        return self._binary(">", other)

    def __ge__(self, other: Self | Scalar) -> Self:
        """Whether this value is at least ``other`` (``>=``).

        Parameters
        ----------
        other
            An expression or a constant.

        Returns
        -------
        Deferred
            ``(self >= other)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> _.age >= 18
        (_.age >= 18)
        """
        return self._binary(">=", other)

    def __neg__(self) -> Self:
        """The number with its sign flipped (``-``); ``-`` of a constant is a constant.

        Returns
        -------
        Deferred
            ``(-self)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> -_.balance
        (-_.balance)
        """
        return self._unary("-")

    def __invert__(self) -> Self:
        """Logical not of a condition (``~``; Python's ``not`` cannot build an expression).

        Returns
        -------
        Deferred
            ``(~self)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> ~_.verified
        (~_.verified)
        """
        return self._unary("~")

    def __abs__(self) -> Self:
        """The absolute value (``abs(x)``), the same as ``F.abs(x)``.

        Returns
        -------
        Deferred
            ``abs(self)``.

        Examples
        --------
        >>> from chalk.features import _
        >>> abs(_.balance - 100)
        abs((_.balance - 100))
        """
        return self._unary("abs")
