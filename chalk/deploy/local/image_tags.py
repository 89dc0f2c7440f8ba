"""Image tags as ``chalk image build -t`` takes them: checked, with a fix suggested."""

from __future__ import annotations

import re

from chalk.catalog.errors import ValidationError

__all__ = ["check_tag"]

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REFERENCE = re.compile(
    rf"(?:{_HOST}(?:\.{_HOST})*(?::\d+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::\w[\w.-]{{0,127}})?"
)


def check_tag(reference: str) -> str:
    """Validate an image tag given to ``chalk image build -t``; ``name`` means ``name:latest``.

    Examples
    --------
    >>> check_tag("ner"), check_tag("localhost:5000/team/ner:v1.2")
    ('ner:latest', 'localhost:5000/team/ner:v1.2')
    >>> check_tag("NER:v1")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: image tag 'NER:v1' is not valid: expected \
name[:tag] with a lowercase name (letters, digits, '.', '_', '-', '/'), e.g. ner:latest; \
try 'ner:v1'
    """
    if len(reference) <= 255 and _REFERENCE.fullmatch(reference):
        last = reference.rsplit("/", 1)[-1]
        return reference if ":" in last else f"{reference}:latest"
    message = (
        f"image tag {reference!r} is not valid: expected name[:tag] with a lowercase name "
        f"(letters, digits, '.', '_', '-', '/'), e.g. ner:latest"
    )
    name, colon, tag = reference.rpartition(":") if ":" in reference else (reference, "", "")
    fixed = f"{name.lower()}{colon}{tag}"
    if fixed != reference and _REFERENCE.fullmatch(fixed):
        message += f"; try {fixed!r}"
    raise ValidationError(message)
