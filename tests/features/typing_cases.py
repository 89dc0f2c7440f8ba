"""Feature classes as users write them, for ``mypy --strict`` (``test_typing.py``); not tests.

Every ``_`` operator and every F function is assigned to an annotated feature: each line must
type-check as written, since the product's documentation writes features this way.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from chalk import functions as F
from chalk.features import _, feature, features


@features
class Order:
    id: int
    quantity: int
    price: float
    discount: float
    code: str
    note: str | None
    paid: bool
    flagged: bool
    placed_at: dt.datetime

    # Arithmetic, with the expression on either side.
    total: float = _.quantity * _.price
    plus_one: int = _.id + 1
    one_plus: int = 1 + _.id
    net: float = _.price - _.discount
    rest: float = 100 - _.price
    doubled: float = 2 * _.price
    unit: float = _.price / _.quantity
    inverse: float = 1 / _.price
    dozens: int = _.quantity // 12
    per_dozen: int = 144 // _.quantity
    odd_items: int = _.quantity % 2
    seven_mod: int = 7 % _.quantity
    squared: float = _.price**2
    power_of_two: int = 2**_.quantity
    negated: float = -_.price
    magnitude: float = abs(_.discount - 5)

    # Comparisons and logic.
    is_one: bool = _.quantity == 1
    not_one: bool = _.quantity != 1
    small: bool = _.quantity < 3
    at_most: bool = _.quantity <= 3
    big: bool = _.quantity > 10
    at_least: bool = _.quantity >= 10
    constant_on_the_left: bool = 0 < _.price  # noqa: SIM300 (the constant on the left)
    both: bool = (_.quantity > 1) & ~_.paid
    either: bool = _.paid | _.flagged
    and_constant: bool = True & _.paid
    or_constant: bool = False | _.flagged
    unpaid: bool = ~_.paid

    # Every F function.
    entities: str = F.catalog_call("model.ner", _.code)
    label: str | None = F.json_value(_.entities, "$[0].label")
    lower_code: str = F.lower(_.code)
    upper_code: str = F.upper(_.code)
    code_length: int = F.length(_.code)
    trimmed: str = F.trim(_.code)
    joined: str = F.concat(_.code, "-", _.lower_code)
    note_or_code: str = F.coalesce(_.note, _.code)
    size: str = F.if_then_else(_.quantity > 10, "bulk", "retail")
    no_note: bool = F.is_null(_.note)
    distance: float = F.abs(_.price - 10)
    rounded: float = F.round(_.price, 2)
    rounded_whole: float = F.round(_.price)
    as_int32: int = F.cast(_.quantity, pa.int32())
    as_text: str = F.cast(_.quantity, str)
    as_named: float = F.cast(_.quantity, "float64")

    # feature() beside them.
    described: float = feature(expression=_.price * 1.2, description="with VAT")
    cached_entities: str = feature(
        expression=F.catalog_call("model.ner", _.code), max_staleness="1h30m"
    )
    kept_entities: str = feature(
        expression=F.catalog_call("model.ner", _.code), max_staleness=dt.timedelta(days=1)
    )
