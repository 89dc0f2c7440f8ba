"""Resource quantities, GPU requests and the autoscaling spec: parsing, messages, storage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalk.catalog.errors import CatalogError, ValidationError
from chalk.catalog.resources import (
    AutoScalingSpec,
    GpuRequest,
    ScalingGroupResourceRequest,
    format_cpu,
    format_memory,
    parse_cpu,
    parse_gpu,
    parse_memory,
)

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


def test_a_validation_error_is_a_catalog_error_and_a_value_error() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_cpu("lots")

    assert isinstance(caught.value, CatalogError)
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


_cpu_texts = st.one_of(
    st.integers(min_value=1, max_value=10**9).map(str),
    st.integers(min_value=1, max_value=10**9).map(lambda n: f"{n}m"),
    st.integers(min_value=1, max_value=10**9).map(lambda n: f"{n // 1000}.{n % 1000:03d}"),
)


@given(_cpu_texts)
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


_gpu_types = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(st.one_of(st.none(), _gpu_types), st.integers(min_value=1, max_value=1024))
def test_gpu_request_survives_str_then_parse(gpu_type: str | None, count: int) -> None:
    request = GpuRequest(gpu_type, count)

    assert parse_gpu(str(request)) == request


# --- autoscaling -------------------------------------------------------------------------------


def test_autoscaling_defaults_run_one_replica() -> None:
    spec = AutoScalingSpec()

    assert (spec.min_replicas, spec.max_replicas) == (1, 1)
    assert not spec.autoscales
    assert spec.effective_target_cpu is None
    assert spec.effective_shutdown_delay_seconds == 30
    assert spec.effective_window_seconds == 60


def test_an_autoscaling_group_targets_80_percent_cpu_by_default() -> None:
    spec = AutoScalingSpec(min_replicas=1, max_replicas=5)

    assert spec.autoscales
    assert spec.effective_target_cpu == 80


def test_given_targets_win_over_defaults() -> None:
    spec = AutoScalingSpec(
        min_replicas=2,
        max_replicas=2,
        target_cpu_utilization_percentage=50,
        shutdown_delay_seconds=0,
        window_seconds=0,
    )

    assert not spec.autoscales
    assert spec.effective_target_cpu == 50
    assert spec.effective_shutdown_delay_seconds == 0
    assert spec.effective_window_seconds == 0


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        pytest.param(
            {"min_replicas": 0},
            r"min_replicas is 0, but scaling to zero comes in a later version: "
            r"expected min_replicas >= 1, got 0; set min_replicas=1",
            id="scale_to_zero",
        ),
        pytest.param(
            {"min_replicas": -1},
            r"min_replicas is out of range: expected min_replicas >= 1, got -1",
            id="negative_min",
        ),
        pytest.param(
            {"min_replicas": 1, "max_replicas": 0},
            r"max_replicas is out of range: expected max_replicas >= 1, got 0",
            id="zero_max",
        ),
        pytest.param(
            {"min_replicas": 3, "max_replicas": 2},
            r"min_replicas is larger than max_replicas: expected min_replicas <= max_replicas, "
            r"got min_replicas=3, max_replicas=2; set max_replicas=3",
            id="min_above_max",
        ),
        pytest.param(
            {"min_replicas": 2},
            r"min_replicas is larger than max_replicas: .*max_replicas=1; set max_replicas=2",
            id="min_above_default_max",
        ),
        pytest.param(
            {"min_replicas": True},
            r"min_replicas must be a whole number: expected an int, got True \(bool\)",
            id="bool_min",
        ),
        pytest.param(
            {"max_replicas": 2.0},
            r"max_replicas must be a whole number: .*got 2.0 \(float\); write max_replicas=2",
            id="float_max",
        ),
        pytest.param(
            {"max_replicas": "3"},
            r"max_replicas must be a whole number: .*got '3' \(str\)$",
            id="text_max",
        ),
        pytest.param(
            {"target_cpu_utilization_percentage": 0},
            r"target_cpu_utilization_percentage is out of range: expected 1 to 100, got 0",
            id="cpu_target_zero",
        ),
        pytest.param(
            {"target_cpu_utilization_percentage": 101},
            r"target_cpu_utilization_percentage is out of range: expected 1 to 100, got 101",
            id="cpu_target_over_100",
        ),
        pytest.param(
            {"target_cpu_utilization_percentage": 50.5},
            r"target_cpu_utilization_percentage must be a whole number: .*got 50.5 \(float\)$",
            id="cpu_target_float",
        ),
        pytest.param(
            {"queue_depth_target": 0},
            r"queue_depth_target is out of range: expected queue_depth_target >= 1, got 0",
            id="queue_depth_zero",
        ),
        pytest.param(
            {"shutdown_delay_seconds": -1},
            r"shutdown_delay_seconds is out of range: expected shutdown_delay_seconds >= 0, got -1",
            id="negative_shutdown_delay",
        ),
        pytest.param(
            {"window_seconds": -5},
            r"window_seconds is out of range: expected window_seconds >= 0, got -5",
            id="negative_window",
        ),
        pytest.param(
            {"window_seconds": False},
            r"window_seconds must be a whole number: expected an int, got False \(bool\)",
            id="bool_window",
        ),
    ],
)
def test_autoscaling_spec_refuses_with_a_message(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        AutoScalingSpec(**fields)  # type: ignore[arg-type]


def test_autoscaling_spec_is_frozen_and_keyword_only() -> None:
    spec = AutoScalingSpec(max_replicas=3)

    with pytest.raises(AttributeError):
        spec.max_replicas = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        AutoScalingSpec(1, 3)  # type: ignore[call-arg]


def test_autoscaling_to_dict_has_exactly_the_field_names() -> None:
    spec = AutoScalingSpec(min_replicas=1, max_replicas=3, queue_depth_target=4)

    assert spec.to_dict() == {
        "min_replicas": 1,
        "max_replicas": 3,
        "target_cpu_utilization_percentage": None,
        "queue_depth_target": 4,
        "shutdown_delay_seconds": None,
        "window_seconds": None,
    }


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(
            {"min": 1},
            r"autoscaling has an unknown field: expected keys among min_replicas, .*got 'min'",
            id="unknown_key",
        ),
        pytest.param([1], r"autoscaling is not a mapping: expected a dict .*got list", id="list"),
        pytest.param({"min_replicas": 0}, r"min_replicas is 0", id="bad_value"),
    ],
)
def test_autoscaling_from_dict_refuses_with_a_message(data: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        AutoScalingSpec.from_dict(data)  # type: ignore[arg-type]


def test_autoscaling_from_dict_fills_missing_keys_with_defaults() -> None:
    assert AutoScalingSpec.from_dict({"max_replicas": 2}) == AutoScalingSpec(max_replicas=2)


@st.composite
def _autoscaling_specs(draw: st.DrawFn) -> AutoScalingSpec:
    min_replicas = draw(st.integers(min_value=1, max_value=1000))
    return AutoScalingSpec(
        min_replicas=min_replicas,
        max_replicas=draw(st.integers(min_value=min_replicas, max_value=2000)),
        target_cpu_utilization_percentage=draw(st.none() | st.integers(1, 100)),
        queue_depth_target=draw(st.none() | st.integers(min_value=1)),
        shutdown_delay_seconds=draw(st.none() | st.integers(min_value=0)),
        window_seconds=draw(st.none() | st.integers(min_value=0)),
    )


@given(_autoscaling_specs())
def test_autoscaling_spec_survives_json_storage(spec: AutoScalingSpec) -> None:
    stored = json.dumps(spec.to_dict())

    assert AutoScalingSpec.from_dict(json.loads(stored)) == spec


# --- resource request --------------------------------------------------------------------------


def test_omitted_resources_take_the_documented_defaults() -> None:
    assert ScalingGroupResourceRequest().requests_and_limits() == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


def test_given_resources_are_request_and_limit_in_canonical_form() -> None:
    request = ScalingGroupResourceRequest(cpu="0.5", memory="1.5Gi", gpu="nvidia-tesla-t4:2")

    both = {"cpu": "500m", "memory": "1536Mi", "nvidia.com/gpu": "2"}
    assert request.requests_and_limits() == {"requests": both, "limits": both}


def test_one_given_resource_leaves_the_others_defaulted() -> None:
    request = ScalingGroupResourceRequest(memory="4Gi")

    assert request.requests_and_limits() == {
        "requests": {"cpu": "100m", "memory": "4Gi"},
        "limits": {"cpu": "1", "memory": "4Gi"},
    }


def test_resource_request_keeps_the_users_text_and_parses_on_demand() -> None:
    request = ScalingGroupResourceRequest(cpu="2000m", memory="1G", gpu="3")

    assert (request.cpu, request.memory, request.gpu) == ("2000m", "1G", "3")
    assert request.cpu_millicores == 2000
    assert request.memory_bytes == 10**9
    assert request.gpu_request == GpuRequest(None, 3)


def test_omitted_resources_parse_to_none() -> None:
    request = ScalingGroupResourceRequest()

    assert (request.cpu_millicores, request.memory_bytes, request.gpu_request) == (None, None, None)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        pytest.param({"memory": "4GB"}, r"got '4GB'; did you mean 4Gi or 4G\?", id="memory_GB"),
        pytest.param({"cpu": "2 cores"}, r"got '2 cores'; did you mean '2'\?", id="cpu_words"),
        pytest.param({"cpu": "0"}, r"cpu is zero", id="cpu_zero"),
        pytest.param({"gpu": "t4"}, r"gpu has no count", id="gpu_no_count"),
        pytest.param({"cpu": 2}, r"cpu must be a string: .*write cpu='2'", id="cpu_number"),
        pytest.param({"memory": None, "gpu": 1}, r"gpu must be a string", id="gpu_number"),
    ],
)
def test_resource_request_refuses_with_a_message(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ScalingGroupResourceRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(
            {"cpus": "2"},
            r"resources has an unknown field: expected keys among cpu, memory, gpu, got 'cpus'",
            id="unknown_key",
        ),
        pytest.param("2", r"resources is not a mapping: .*got str", id="text"),
        pytest.param({"memory": "512mi"}, r"did you mean 512Mi\?", id="bad_value"),
    ],
)
def test_resource_request_from_dict_refuses_with_a_message(data: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ScalingGroupResourceRequest.from_dict(data)  # type: ignore[arg-type]


_memory_texts = st.builds(
    lambda n, suffix: f"{n}{suffix}",
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M", "G"]),
)


@given(
    st.none() | _cpu_texts,
    st.none() | _memory_texts,
    st.none() | st.builds(str, st.builds(GpuRequest, st.none() | _gpu_types, st.integers(1, 16))),
)
def test_resource_request_survives_json_storage(
    cpu: str | None, memory: str | None, gpu: str | None
) -> None:
    request = ScalingGroupResourceRequest(cpu=cpu, memory=memory, gpu=gpu)
    stored = json.dumps(request.to_dict())

    restored = ScalingGroupResourceRequest.from_dict(json.loads(stored))

    assert restored == request
    assert restored.requests_and_limits() == request.requests_and_limits()


def test_the_product_import_path_gives_the_same_types() -> None:
    from chalk.scaling import AutoScalingSpec as ScalingSpec
    from chalk.scaling import ScalingGroupResourceRequest as ScalingRequest

    assert ScalingSpec is AutoScalingSpec
    assert ScalingRequest is ScalingGroupResourceRequest
