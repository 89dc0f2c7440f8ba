"""Kubernetes quantities and GPU requests: parsed strictly, formatted canonically.

``chalk.catalog.resources`` builds the scaling specs on these; the CLI parses its flags with them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from chalk.common.errors import ValidationError
from chalk.common.names import is_dns_label

__all__ = [
    "GpuRequest",
    "format_cpu",
    "format_memory",
    "invalid_value",
    "parse_cpu",
    "parse_gpu",
    "parse_memory",
]


# Only unsigned plain decimals: a subset of what Kubernetes reads, so a value accepted here is
# accepted by the API server as well (no signs, no exponents such as "1e3", ASCII digits only).
_NUMBER: Final = r"(?:\d+(?:\.\d*)?|\.\d+)"
_CPU = re.compile(rf"(?P<number>{_NUMBER})(?P<suffix>m?)", re.ASCII)
_CPU_WITH_WORD = re.compile(
    rf"(?P<number>{_NUMBER})\s*(?:cores?|cpus?|vcpus?)", re.IGNORECASE | re.ASCII
)
_MEMORY_MULTIPLIERS: Final[Mapping[str, int]] = {
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_BINARY_SUFFIXES: Final = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki")
_DECIMAL_SUFFIXES: Final = ("E", "P", "T", "G", "M", "k")
_MEMORY = re.compile(
    rf"(?P<number>{_NUMBER})(?P<suffix>{'|'.join(s for s in _MEMORY_MULTIPLIERS if s)})?",
    re.ASCII,
)
_MEMORY_WITH_UNIT = re.compile(rf"(?P<number>{_NUMBER})\s*(?P<unit>[A-Za-z]+)", re.ASCII)
_LOOKALIKE_UNIT = re.compile(r"(?P<letter>[kmgtpe])(?P<binary>i?)b?")
_COUNT = re.compile(r"\d+", re.ASCII)

_CPU_EXPECTED: Final = "cores such as '2' or '0.5', or millicores such as '500m'"
_MEMORY_EXPECTED: Final = (
    "bytes with a binary suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal suffix (k, M, G, T, P, E) "
    "or none, such as '4Gi' or '512Mi'"
)
_GPU_EXPECTED: Final = "'type:count' such as 'nvidia-tesla-t4:1', or a count such as '2'"


def _is_gpu_type(text: str) -> bool:
    # The type becomes a nodeSelector label value on Kubernetes: a DNS label keeps it valid.
    return is_dns_label(text)


def invalid_value(statement: str, *, expected: str, got: str, fix: str = "") -> ValidationError:
    message = f"{statement}: expected {expected}, got {got}"
    if fix:
        message = f"{message}; {fix}"
    return ValidationError(message)


def _require_text(field: str, value: object, example: str) -> str:
    if isinstance(value, str):
        return value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    error = invalid_value(
        f"{field} must be a string",
        expected=f"text such as {example!r}",
        got=f"{value!r} ({type(value).__name__})",
        fix=f"write {field}={str(value)!r}" if numeric else "",
    )
    raise error


def parse_cpu(text: str) -> int:
    """Millicores of a Kubernetes CPU quantity: whole or fractional cores, or ``<n>m``.

    Parameters
    ----------
    text
        The quantity as the user wrote it, such as ``"2"``, ``"0.5"`` or ``"500m"``.

    Returns
    -------
    int
        The amount in millicores (thousandths of a core), at least 1.

    Raises
    ------
    ValidationError
        When the text is not such a quantity, is zero or negative, or is finer than 1m.

    Examples
    --------
    >>> parse_cpu("2"), parse_cpu("0.5"), parse_cpu("500m"), parse_cpu("1.5")
    (2000, 500, 500, 1500)
    >>> parse_cpu("2 cores")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: cpu is not a Kubernetes quantity: expected cores such \
as '2' or '0.5', or millicores such as '500m', got '2 cores'; did you mean '2'?
    """
    text = _require_text("cpu", text, "500m")
    match = _CPU.fullmatch(text)
    if match is None:
        raise _cpu_syntax_error(text)
    scale = 1 if match["suffix"] else 1000
    millicores = Fraction(match["number"]) * scale
    if millicores == 0:
        error = invalid_value(
            "cpu is zero, and a replica needs some CPU",
            expected=f"a positive amount in {_CPU_EXPECTED}",
            got=repr(text),
        )
        raise error
    if millicores.denominator != 1:
        error = invalid_value(
            "cpu is finer than 1m (a thousandth of a core)",
            expected="a whole number of millicores",
            got=repr(text),
            fix=f"use '{math.ceil(millicores)}m'",
        )
        raise error
    return int(millicores)


def _cpu_syntax_error(text: str) -> ValidationError:
    fix = ""
    if text.startswith("-") and _CPU.fullmatch(text[1:]):
        return invalid_value(
            "cpu is negative", expected=f"a positive amount in {_CPU_EXPECTED}", got=repr(text)
        )
    if (worded := _CPU_WITH_WORD.fullmatch(text)) is not None:
        fix = f"did you mean {worded['number']!r}?"
    elif text.endswith("M") and _CPU.fullmatch(text[:-1] + "m"):
        # Kubernetes reads "M" as mega: 500M would be half a million cores.
        fix = f"millicores take a lowercase m: did you mean {text[:-1] + 'm'!r}?"
    return invalid_value(
        "cpu is not a Kubernetes quantity", expected=_CPU_EXPECTED, got=repr(text), fix=fix
    )


def format_cpu(millicores: int) -> str:
    """The canonical text of a CPU amount: whole cores when exact, else millicores.

    Parameters
    ----------
    millicores
        A positive amount in thousandths of a core.

    Returns
    -------
    str
        ``"2"`` for 2000, ``"500m"`` for 500; ``parse_cpu`` reads it back unchanged.

    Examples
    --------
    >>> format_cpu(2000), format_cpu(500), format_cpu(1500)
    ('2', '500m', '1500m')
    """
    _require_positive_int("cpu", millicores, unit="millicores")
    whole, rest = divmod(millicores, 1000)
    return f"{millicores}m" if rest else str(whole)


def parse_memory(text: str) -> int:
    """Bytes of a Kubernetes memory quantity such as ``"4Gi"``, ``"512Mi"``, ``"1G"``, ``"1.5Gi"``.

    A fraction of a byte is rounded up, as Kubernetes does. Look-alike units that Kubernetes
    would refuse or misread ("4GB", "512mi", "500m") are refused with the likely intended form.

    Parameters
    ----------
    text
        The quantity as the user wrote it.

    Returns
    -------
    int
        The amount in bytes, at least 1.

    Raises
    ------
    ValidationError
        When the text is not such a quantity, or is zero or negative.

    Examples
    --------
    >>> parse_memory("4Gi"), parse_memory("512Mi"), parse_memory("1G"), parse_memory("1.5Gi")
    (4294967296, 536870912, 1000000000, 1610612736)
    >>> parse_memory("4GB")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: memory has a unit Kubernetes does not read: expected \
bytes with a binary suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal suffix (k, M, G, T, P, E) or \
none, such as '4Gi' or '512Mi', got '4GB'; did you mean 4Gi or 4G?
    """
    text = _require_text("memory", text, "4Gi")
    match = _MEMORY.fullmatch(text)
    if match is None:
        raise _memory_syntax_error(text)
    amount = Fraction(match["number"]) * _MEMORY_MULTIPLIERS[match["suffix"] or ""]
    if amount == 0:
        error = invalid_value(
            "memory is zero, and a replica needs some memory",
            expected=f"a positive amount in {_MEMORY_EXPECTED}",
            got=repr(text),
        )
        raise error
    return math.ceil(amount)


def _memory_syntax_error(text: str) -> ValidationError:
    if text.startswith("-") and _MEMORY.fullmatch(text[1:]):
        return invalid_value(
            "memory is negative",
            expected=f"a positive amount in {_MEMORY_EXPECTED}",
            got=repr(text),
        )
    worded = _MEMORY_WITH_UNIT.fullmatch(text)
    if worded is None:
        return invalid_value(
            "memory is not a Kubernetes quantity", expected=_MEMORY_EXPECTED, got=repr(text)
        )
    number, unit = worded["number"], worded["unit"]
    if unit in _MEMORY_MULTIPLIERS:
        return invalid_value(
            "memory has a space before its unit",
            expected=_MEMORY_EXPECTED,
            got=repr(text),
            fix=f"write {number}{unit}",
        )
    if unit == "m":
        return invalid_value(
            "memory is in thousandths of a byte (m means milli)",
            expected=_MEMORY_EXPECTED,
            got=repr(text),
            fix=f"did you mean {number}Mi or {number}M?",
        )
    return invalid_value(
        "memory has a unit Kubernetes does not read",
        expected=_MEMORY_EXPECTED,
        got=repr(text),
        fix=_memory_unit_hint(number, unit),
    )


def _memory_unit_hint(number: str, unit: str) -> str:
    lookalike = _LOOKALIKE_UNIT.fullmatch(unit.lower())
    if unit.lower() in {"b", "byte", "bytes"}:
        return f"write plain bytes without a unit: did you mean {number}?"
    if lookalike is None:
        return ""
    letter = lookalike["letter"]
    binary = f"{number}{letter.upper()}i"
    decimal = f"{number}{letter if letter == 'k' else letter.upper()}"
    if lookalike["binary"]:
        return f"did you mean {binary}?"
    return f"did you mean {binary} or {decimal}?"


def format_memory(size_bytes: int) -> str:
    """The canonical text of a memory amount: its shortest exact form, binary on a tie.

    Parameters
    ----------
    size_bytes
        A positive amount in bytes.

    Returns
    -------
    str
        ``"4Gi"``, ``"512Mi"``, ``"1G"`` or plain bytes; ``parse_memory`` reads it back unchanged.

    Examples
    --------
    >>> format_memory(4 * 2**30), format_memory(512 * 2**20), format_memory(10**9)
    ('4Gi', '512Mi', '1G')
    >>> format_memory(1536 * 2**20), format_memory(1000)
    ('1536Mi', '1k')
    """
    _require_positive_int("memory", size_bytes, unit="bytes")
    # Candidates in order of preference; min() keeps the first of equally short ones.
    candidates = [
        _largest_exact(size_bytes, _BINARY_SUFFIXES),
        _largest_exact(size_bytes, _DECIMAL_SUFFIXES),
        str(size_bytes),
    ]
    return min((c for c in candidates if c), key=len)


def _largest_exact(size_bytes: int, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        count, rest = divmod(size_bytes, _MEMORY_MULTIPLIERS[suffix])
        if not rest:
            return f"{count}{suffix}"
    return ""


def _require_positive_int(field: str, value: object, *, unit: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return
    error = invalid_value(
        f"{field} amount is not a positive whole number",
        expected=f"an int of {unit} >= 1",
        got=f"{value!r} ({type(value).__name__})",
    )
    raise error


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """GPUs per replica: an optional accelerator type and a count.

    ``str()`` gives the ``"type:count"`` (or ``"count"``) text that ``parse_gpu`` reads.

    Examples
    --------
    >>> GpuRequest("nvidia-tesla-t4", 1)
    GpuRequest(type='nvidia-tesla-t4', count=1)
    >>> str(GpuRequest("nvidia-tesla-t4", 1)), str(GpuRequest(None, 2))
    ('nvidia-tesla-t4:1', '2')
    """

    type: str | None
    count: int

    def __post_init__(self) -> None:
        gpu_type: object = self.type
        if gpu_type is not None:
            _check_gpu_type(gpu_type, got=repr(gpu_type))
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            error = invalid_value(
                "gpu count must be at least 1",
                expected="a whole number of GPUs >= 1",
                got=repr(self.count),
            )
            raise error

    def __str__(self) -> str:
        return str(self.count) if self.type is None else f"{self.type}:{self.count}"


def parse_gpu(text: str) -> GpuRequest:
    """The GPU request in ``"type:count"`` or ``"count"`` text.

    Parameters
    ----------
    text
        Such as ``"nvidia-tesla-t4:1"`` (a type, as cloud node pools name it) or ``"2"`` (any
        GPU).

    Returns
    -------
    GpuRequest
        The type (``None`` when not given) and a count of at least 1.

    Raises
    ------
    ValidationError
        When the text has neither form, the type has characters outside ``a-z``, ``0-9`` and
        ``-``, or the count is not a whole number of at least 1.

    Examples
    --------
    >>> parse_gpu("nvidia-tesla-t4:1")
    GpuRequest(type='nvidia-tesla-t4', count=1)
    >>> parse_gpu("2")
    GpuRequest(type=None, count=2)
    >>> parse_gpu("nvidia-tesla-t4")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: gpu has no count: expected 'type:count' such as \
'nvidia-tesla-t4:1', or a count such as '2', got 'nvidia-tesla-t4'; did you mean \
'nvidia-tesla-t4:1'?
    """
    text = _require_text("gpu", text, "nvidia-tesla-t4:1")
    gpu_type, separator, count_text = text.rpartition(":")
    if not separator:
        if _is_gpu_type(text.lower()) and not _COUNT.fullmatch(text):
            error = invalid_value(
                "gpu has no count",
                expected=_GPU_EXPECTED,
                got=repr(text),
                fix=f"did you mean '{text.lower()}:1'?",
            )
            raise error
        return GpuRequest(None, _gpu_count(count_text, text))
    _check_gpu_type(gpu_type, got=repr(text))
    return GpuRequest(gpu_type, _gpu_count(count_text, text))


def _gpu_count(count_text: str, text: str) -> int:
    if count_text.startswith("-") and _COUNT.fullmatch(count_text[1:]):
        error = invalid_value(
            "gpu count is negative",
            expected="a count of at least 1",
            got=repr(text),
            fix="leave gpu out for a replica without GPUs",
        )
        raise error
    if not _COUNT.fullmatch(count_text):
        error = invalid_value(
            "gpu count is not a whole number", expected=_GPU_EXPECTED, got=repr(text)
        )
        raise error
    count = int(count_text)
    if count < 1:
        error = invalid_value(
            "gpu count is zero",
            expected="a count of at least 1",
            got=repr(text),
            fix="leave gpu out for a replica without GPUs",
        )
        raise error
    return count


def _check_gpu_type(gpu_type: object, *, got: str) -> None:
    if isinstance(gpu_type, str) and _is_gpu_type(gpu_type):
        return
    fix = ""
    if isinstance(gpu_type, str) and _is_gpu_type(gpu_type.lower()):
        fix = f"did you mean {gpu_type.lower()!r}?"
    error = invalid_value(
        "gpu type is not a valid accelerator name",
        expected=(
            "lowercase letters, digits and '-', starting and ending with a letter or digit, "
            "at most 63 characters, such as 'nvidia-tesla-t4'"
        ),
        got=got,
        fix=fix,
    )
    raise error
