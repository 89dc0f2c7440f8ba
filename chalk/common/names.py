"""The naming rules shared by every part: DNS-1123 labels and names, Kubernetes label names and
values, and ``model.<group>`` call names. One copy of each rule; callers word their own errors.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = [
    "CALL_NAME_PREFIX",
    "DNS_LABEL_MAX_LENGTH",
    "LABEL_MAX_LENGTH",
    "group_of_call_name",
    "image_reference_problem",
    "is_dns_label",
    "is_dns_name",
    "is_label_name",
    "is_label_value",
    "to_dns_label",
]

DNS_LABEL_MAX_LENGTH: Final = 63
LABEL_MAX_LENGTH: Final = 63
CALL_NAME_PREFIX: Final = "model."
_DNS_NAME_MAX_LENGTH: Final = 253

_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
# An image reference as Docker's distribution/reference grammar has it: [host[:port]/]path
# of lowercase components [:tag] [@sha256:digest].
_IMAGE_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_HOST: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMAGE_REFERENCE: Final = re.compile(
    rf"(?:{_IMAGE_HOST}(?:\.{_IMAGE_HOST})*(?::\d+)?/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    rf"(?::\w[\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?",
    re.ASCII,
)
_IMAGE_REFERENCE_MAX_LENGTH: Final = 255
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")


def is_dns_label(text: object, *, max_length: int | None = DNS_LABEL_MAX_LENGTH) -> bool:
    """Whether ``text`` is a DNS-1123 label: lowercase letters, digits and '-', starting and
    ending with a letter or digit, at most 63 characters.

    ``max_length=None`` checks the characters only, for a caller whose own length rule is
    stricter and says so in its message (a group name must fit ``<environment>-<name>``).

    Examples
    --------
    >>> is_dns_label("ner-v2"), is_dns_label("Ner"), is_dns_label("-ner"), is_dns_label("a" * 64)
    (True, False, False, False)
    >>> is_dns_label("a" * 64, max_length=None)
    True
    """
    if not isinstance(text, str) or (max_length is not None and len(text) > max_length):
        return False
    return _DNS_LABEL.fullmatch(text) is not None


def is_dns_name(text: object) -> bool:
    """Whether ``text`` is a DNS name: DNS-1123 labels joined by '.', at most 253 characters.

    Examples
    --------
    >>> is_dns_name("models.example.com"), is_dns_name("https://example.com")
    (True, False)
    """
    if not isinstance(text, str) or not 1 <= len(text) <= _DNS_NAME_MAX_LENGTH:
        return False
    return all(is_dns_label(label) for label in text.split("."))


def is_label_name(text: object) -> bool:
    """Whether ``text`` is the name part of a Kubernetes label key (after any ``prefix/``):
    letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63.

    Examples
    --------
    >>> is_label_name("tag-team"), is_label_name("tag-"), is_label_name("")
    (True, False, False)
    """
    if not isinstance(text, str) or len(text) > LABEL_MAX_LENGTH:
        return False
    return _LABEL.fullmatch(text) is not None


def is_label_value(text: object) -> bool:
    """Whether ``text`` is a Kubernetes label value: empty, or what a label name may be.

    Examples
    --------
    >>> is_label_value(""), is_label_value("gold"), is_label_value("a b")
    (True, True, False)
    """
    return text == "" or is_label_name(text)


def image_reference_problem(reference: str) -> str | None:
    """Why ``reference`` is not a valid image reference (``name[:tag]``), None when it is.

    Examples
    --------
    >>> image_reference_problem("localhost:5000/team/ner:v1.2") is None
    True
    >>> image_reference_problem("UPPER:v1"), image_reference_problem("dbl:")
    ('the name has uppercase letters', "the tag after ':' is empty")
    """
    if len(reference) > _IMAGE_REFERENCE_MAX_LENGTH:
        return f"it is longer than {_IMAGE_REFERENCE_MAX_LENGTH} characters"
    if _IMAGE_REFERENCE.fullmatch(reference):
        return None
    name, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        name, tag = reference, ""
    if colon and not tag and "/" not in reference[reference.rfind(":") :]:
        return "the tag after ':' is empty"
    if name != name.lower() and _IMAGE_REFERENCE.fullmatch(f"{name.lower()}{colon}{tag}"):
        return "the name has uppercase letters"
    if tag and not re.fullmatch(r"\w[\w.-]{0,127}", tag, re.ASCII):
        return "the tag has characters other than letters, digits, '_', '.' and '-'"
    return "the name has characters other than lowercase letters, digits, '.', '_', '-' and '/'"


def group_of_call_name(name: object) -> str | None:
    """The scaling group of a ``catalog_call`` name ``model.<group>``; None when it is not one.

    Examples
    --------
    >>> group_of_call_name("model.ner"), group_of_call_name("ner"), group_of_call_name("model.N")
    ('ner', None, None)
    """
    if not isinstance(name, str) or not name.startswith(CALL_NAME_PREFIX):
        return None
    group = name[len(CALL_NAME_PREFIX) :]
    return group if is_dns_label(group, max_length=None) else None


def to_dns_label(text: str) -> str:
    """The DNS-1123 label closest to ``text``; ``""`` when it holds no letter or digit.

    Examples
    --------
    >>> to_dns_label("My Project_v2"), to_dns_label("Café"), to_dns_label("__")
    ('my-project-v2', 'cafe', '')
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    label = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return label[:DNS_LABEL_MAX_LENGTH].rstrip("-")
