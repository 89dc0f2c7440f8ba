"""``from chalk import functions as F``: the F functions under the product's names.

Feature modules import it; the functions themselves live in ``chalk.features.functions``.

Examples
--------
>>> from chalk import functions as F
>>> from chalk.features import _
>>> F.json_value(F.catalog_call("model.ner", _.text), "$.entities[0].label")
json_value(catalog_call("model.ner", _.text), "$.entities[0].label")
"""

from __future__ import annotations

from chalk.features.functions import (
    abs,
    cast,
    catalog_call,
    coalesce,
    concat,
    if_then_else,
    is_null,
    json_value,
    length,
    lower,
    round,
    trim,
    upper,
)

__all__ = [
    "abs",
    "cast",
    "catalog_call",
    "coalesce",
    "concat",
    "if_then_else",
    "is_null",
    "json_value",
    "length",
    "lower",
    "round",
    "trim",
    "upper",
]
