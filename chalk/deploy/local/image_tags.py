"""Image tags as ``chalk image build -t`` takes them: checked, with a fix suggested."""

from __future__ import annotations

from chalk.catalog.errors import ValidationError
from chalk.common.names import image_reference_problem

__all__ = ["check_tag"]


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
    if "@" not in reference and image_reference_problem(reference) is None:
        last = reference.rsplit("/", 1)[-1]
        return reference if ":" in last else f"{reference}:latest"
    message = (
        f"image tag {reference!r} is not valid: expected name[:tag] with a lowercase name "
        f"(letters, digits, '.', '_', '-', '/'), e.g. ner:latest"
    )
    name, colon, tag = reference.rpartition(":") if ":" in reference else (reference, "", "")
    fixed = f"{name.lower()}{colon}{tag}"
    if fixed != reference and "@" not in fixed and image_reference_problem(fixed) is None:
        message += f"; try {fixed!r}"
    raise ValidationError(message)
