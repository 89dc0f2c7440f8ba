"""A document and the named entities the `ner` scaling group finds in its text."""

from __future__ import annotations

from chalk import functions as F
from chalk.features import _, features


@features
class Document:
    id: int
    text: str
    # One argument per field of the model's input schema: `text` -> the model's `text`.
    # The model answers JSON: [{"text": "Apple", "label": "ORG", "start": 0, "end": 5}, ...]
    entities: str = F.catalog_call("model.ner", _.text)
    # The first entity's label; null when the model found none.
    first_label: str | None = F.json_value(_.entities, "$[0].label")
