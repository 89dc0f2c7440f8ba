"""A model handler for the runtime: finds capitalised words (a stand-in for NER).

Run it with ``chalk-remote-call --handler model.handler`` from this folder.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)*")


def handler(event: dict[str, pa.Array], context: dict[str, Any]) -> pa.Array:
    """One comma-separated list of names per input text (nulls stay null)."""
    texts = event["text"].to_pylist()
    return pa.array(
        [None if text is None else ", ".join(_NAME.findall(text)) for text in texts],
        pa.large_string(),
    )
