"""Kubernetes quantities and GPU requests: parsing, canonical formatting, messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalk.common.errors import ChalkError, ValidationError
from chalk.common.quantities import (
    GpuRequest,
    format_cpu,
    format_memory,
    parse_cpu,
    parse_gpu,
    parse_memory,
)
from tests.support.strategies import cpu_texts, gpu_types

# --- cpu ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millicores"),
    [
        pytest.param("2", 2000, id="whole_cores"),
        pytest.param("0.5", 500, id="half_core"),
        pytest.param("500m", 500, id="millicores"),
        pytest.param("1.5", 1500, id="fractional_cores"),
        pytest.param("1m", 1, id="smallest"),
        pytest.param("0.001", 1, id="smallest_in_cores"),
        pytest.param(".25", 250, id="leading_point"),
        pytest.param("1500.0m", 1500, id="millicores_with_zero_fraction"),
        pytest.param("64", 64000, id="many_cores"),
    ],
)
def test_parse_cpu_reads_cores_and_millicores(text: str, millicores: int) -> None:
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "-1", r"cpu is negative: expected a positive amount .*got '-1'", id="negative"
        ),
        pytest.param("0", r"cpu is zero.*needs some CPU: expected .*got '0'", id="zero"),
        pytest.param("0m", r"cpu is zero.*got '0m'", id="zero_millicores"),
        pytest.param(
            "0.0001",
            r"cpu is finer than 1m .*: expected a whole number of millicores, "
            r"got '0.0001'; use '1m'",
            id="too_precise",
        ),
        pytest.param("0.0015", r"got '0.0015'; use '2m'", id="too_precise_rounds_up"),
        pytest.param("0.5m", r"finer than 1m.*got '0.5m'", id="fractional_millicores"),
        pytest.param(
            "2 cores",
            r"cpu is not a Kubernetes quantity: expected cores such as '2' .*, got '2 cores'; "
            r"did you mean '2'\?",
            id="cores_word",
        ),
        pytest.param(
            "500M", r"got '500M'; millicores take a lowercase m: did you mean '500m'\?", id="mega"
        ),
        pytest.param("abc", r"cpu is not a Kubernetes quantity: expected .*got 'abc'$", id="word"),
        pytest.param("", r"cpu is not a Kubernetes quantity: expected .*got ''$", id="empty"),
        pytest.param("1e3", r"not a Kubernetes quantity.*got '1e3'", id="exponent"),
        pytest.param(" 2", r"not a Kubernetes quantity.*got ' 2'", id="leading_space"),
        pytest.param("\u0662", r"not a Kubernetes quantity", id="non_ascii_digit"),
    ],
)
def test_parse_cpu_refuses_with_a_message(text: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_cpu(text)


def test_parse_cpu_refuses_a_number_and_says_to_quote_it() -> None:
    with pytest.raises(
        ValidationError, match=r"cpu must be a string: .*got 2 \(int\); write cpu='2'"
    ):
        parse_cpu(2)  # type: ignore[arg-type]


def test_a_validation_error_is_a_chalk_error_and_a_value_error() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_cpu("lots")

    assert isinstance(caught.value, ChalkError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("millicores", "text"),
    [
        pytest.param(2000, "2", id="whole_cores"),
        pytest.param(500, "500m", id="below_a_core"),
        pytest.param(1500, "1500m", id="not_whole_cores"),
        pytest.param(1, "1m", id="smallest"),
    ],
)
def test_format_cpu_is_canonical(millicores: int, text: str) -> None:
    assert format_cpu(millicores) == text


@pytest.mark.parametrize(
    "millicores",
    [pytest.param(0, id="zero"), pytest.param(-5, id="negative"), pytest.param(True, id="bool")],
)
def test_format_cpu_refuses_what_is_not_a_positive_int(millicores: int) -> None:
    with pytest.raises(ValidationError, match=r"cpu amount is not a positive whole number"):
        format_cpu(millicores)


@given(st.integers(min_value=1, max_value=10**15))
def test_cpu_survives_format_then_parse(millicores: int) -> None:
    assert parse_cpu(format_cpu(millicores)) == millicores


@given(cpu_texts)
def test_formatting_parsed_cpu_is_idempotent(text: str) -> None:
    canonical = format_cpu(parse_cpu(text))

    assert parse_cpu(canonical) == parse_cpu(text)
    assert format_cpu(parse_cpu(canonical)) == canonical


# --- memory ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size_bytes"),
    [
        pytest.param("4Gi", 4 * 2**30, id="gibibytes"),
        pytest.param("512Mi", 512 * 2**20, id="mebibytes"),
        pytest.param("1Ki", 1024, id="kibibytes"),
        pytest.param("2Ti", 2 * 2**40, id="tebibytes"),
        pytest.param("1Pi", 2**50, id="pebibytes"),
        pytest.param("1Ei", 2**60, id="exbibytes"),
        pytest.param("1k", 1000, id="kilobytes"),
        pytest.param("1M", 10**6, id="megabytes"),
        pytest.param("1G", 10**9, id="gigabytes"),
        pytest.param("3T", 3 * 10**12, id="terabytes"),
        pytest.param("1P", 10**15, id="petabytes"),
        pytest.param("1E", 10**18, id="exabytes"),
        pytest.param("1048576", 2**20, id="plain_bytes"),
        pytest.param("1.5Gi", 3 * 2**29, id="decimal_binary"),
        pytest.param("0.5G", 5 * 10**8, id="decimal_decimal"),
        pytest.param("1.3Gi", 1395864372, id="fraction_of_a_byte_rounds_up"),
    ],
)
def test_parse_memory_reads_binary_decimal_and_plain(text: str, size_bytes: int) -> None:
    assert parse_memory(text) == size_bytes


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "4GB",
            r"memory has a unit Kubernetes does not read: expected .*'4Gi'.*, got '4GB'; "
            r"did you mean 4Gi or 4G\?",
            id="GB",
        ),
        pytest.param("4gb", r"got '4gb'; did you mean 4Gi or 4G\?", id="gb"),
        pytest.param("512MB", r"got '512MB'; did you mean 512Mi or 512M\?", id="MB"),
        pytest.param("512mi", r"got '512mi'; did you mean 512Mi\?$", id="lowercase_mi"),
        pytest.param("4GiB", r"got '4GiB'; did you mean 4Gi\?$", id="GiB"),
        pytest.param("4K", r"got '4K'; did you mean 4Ki or 4k\?", id="uppercase_K"),
        pytest.param(
            "500m",
            r"memory is in thousandths of a byte \(m means milli\): expected .*got '500m'; "
            r"did you mean 500Mi or 500M\?",
            id="milli",
        ),
        pytest.param("4B", r"got '4B'; write plain bytes without a unit: did you mean 4\?", id="B"),
        pytest.param("4 Gi", r"memory has a space before its unit: .*; write 4Gi$", id="space"),
        pytest.param("4Xi", r"a unit Kubernetes does not read: .*got '4Xi'$", id="unknown_unit"),
        pytest.param("0", r"memory is zero.*needs some memory: expected .*got '0'", id="zero"),
        pytest.param("0Gi", r"memory is zero.*got '0Gi'", id="zero_with_unit"),
        pytest.param(
            "-1Gi", r"memory is negative: expected a positive amount .*got '-1Gi'", id="neg"
        ),
        pytest.param(
            "lots", r"memory is not a Kubernetes quantity: expected .*got 'lots'", id="word"
        ),
        pytest.param("", r"memory is not a Kubernetes quantity: .*got ''", id="empty"),
        pytest.param("1e9", r"memory is not a Kubernetes quantity: .*got '1e9'", id="exponent"),
        pytest.param("\u0662Gi", r"memory is not a Kubernetes quantity", id="non_ascii_digit"),
    ],
)
def test_parse_memory_refuses_with_a_message(text: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_memory(text)


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [
        pytest.param(4 * 2**30, "4Gi", id="gibibytes"),
        pytest.param(512 * 2**20, "512Mi", id="mebibytes"),
        pytest.param(1536 * 2**20, "1536Mi", id="largest_exact_binary"),
        pytest.param(10**9, "1G", id="decimal_when_not_binary"),
        pytest.param(10**12, "1T", id="decimal_when_shorter_than_binary"),
        pytest.param(2**10, "1Ki", id="binary_over_plain"),
        pytest.param(1000 * 2**20, "1000Mi", id="binary_on_a_tie"),
        pytest.param(1023, "1023", id="plain_bytes"),
        pytest.param(1, "1", id="one_byte"),
    ],
)
def test_format_memory_gives_the_shortest_exact_form(size_bytes: int, text: str) -> None:
    assert format_memory(size_bytes) == text


@pytest.mark.parametrize(
    "size_bytes",
    [pytest.param(0, id="zero"), pytest.param(-1, id="negative"), pytest.param(False, id="bool")],
)
def test_format_memory_refuses_what_is_not_a_positive_int(size_bytes: int) -> None:
    with pytest.raises(ValidationError, match=r"memory amount is not a positive whole number"):
        format_memory(size_bytes)


@given(st.integers(min_value=1, max_value=2**80))
def test_memory_survives_format_then_parse(size_bytes: int) -> None:
    text = format_memory(size_bytes)

    assert parse_memory(text) == size_bytes
    assert len(text) <= len(str(size_bytes))


@given(
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from(["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"]),
    st.sampled_from(["", ".5", ".25", ".125"]),
)
def test_formatting_parsed_memory_is_idempotent(whole: int, suffix: str, fraction: str) -> None:
    text = f"{whole}{fraction}{suffix}"
    canonical = format_memory(parse_memory(text))

    assert format_memory(parse_memory(canonical)) == canonical


# --- gpu ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("nvidia-tesla-t4:1", GpuRequest("nvidia-tesla-t4", 1), id="type_and_count"),
        pytest.param("nvidia-l4:8", GpuRequest("nvidia-l4", 8), id="eight"),
        pytest.param("2", GpuRequest(None, 2), id="count_only"),
        pytest.param("a100:1", GpuRequest("a100", 1), id="short_type"),
    ],
)
def test_parse_gpu_reads_type_and_count(text: str, expected: GpuRequest) -> None:
    assert parse_gpu(text) == expected
    assert str(parse_gpu(text)) == text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "0",
            r"gpu count is zero: expected a count of at least 1, got '0'; leave gpu out",
            id="zero",
        ),
        pytest.param("t4:0", r"gpu count is zero: .*got 't4:0'", id="typed_zero"),
        pytest.param("-1", r"gpu count is negative: .*got '-1'", id="negative"),
        pytest.param(
            "1.5", r"gpu count is not a whole number: expected .*got '1.5'", id="fraction"
        ),
        pytest.param("t4:", r"gpu count is not a whole number: .*got 't4:'", id="empty_count"),
        pytest.param("t4:x", r"gpu count is not a whole number: .*got 't4:x'", id="word_count"),
        pytest.param(
            "nvidia-tesla-t4",
            r"gpu has no count: expected 'type:count' .*got 'nvidia-tesla-t4'; "
            r"did you mean 'nvidia-tesla-t4:1'\?",
            id="type_only",
        ),
        pytest.param(
            "NVIDIA-T4:1",
            r"gpu type is not a valid accelerator name: "
            r"expected lowercase letters, digits and '-'.*"
            r"got 'NVIDIA-T4:1'; did you mean 'nvidia-t4'\?",
            id="uppercase_type",
        ),
        pytest.param(
            ":1", r"gpu type is not a valid accelerator name: .*got ':1'$", id="empty_type"
        ),
        pytest.param("a_b:1", r"gpu type is not a valid .*got 'a_b:1'$", id="underscore"),
        pytest.param("-t4:1", r"gpu type is not a valid .*got '-t4:1'$", id="leading_dash"),
        pytest.param("a:b:1", r"gpu type is not a valid .*got 'a:b:1'$", id="two_colons"),
        pytest.param("", r"gpu count is not a whole number: .*got ''$", id="empty"),
        pytest.param("\u0662", r"gpu count is not a whole number", id="non_ascii_digit"),
    ],
)
def test_parse_gpu_refuses_with_a_message(text: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_gpu(text)


@pytest.mark.parametrize(
    ("gpu_type", "count", "match"),
    [
        pytest.param("t4", 0, r"gpu count must be at least 1: .*got 0", id="zero"),
        pytest.param("t4", True, r"gpu count must be at least 1: .*got True", id="bool"),
        pytest.param("T4", 1, r"gpu type is not a valid .*got 'T4'", id="uppercase"),
        pytest.param(4, 1, r"gpu type is not a valid .*got 4$", id="not_text"),
    ],
)
def test_gpu_request_checks_itself(gpu_type: str, count: int, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        GpuRequest(gpu_type, count)


@given(st.one_of(st.none(), gpu_types), st.integers(min_value=1, max_value=1024))
def test_gpu_request_survives_str_then_parse(gpu_type: str | None, count: int) -> None:
    request = GpuRequest(gpu_type, count)

    assert parse_gpu(str(request)) == request
