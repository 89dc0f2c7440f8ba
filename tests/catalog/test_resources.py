"""The autoscaling spec and the resource request: checks, messages, defaults, storage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalk.catalog.errors import ValidationError
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.common.quantities import GpuRequest
from tests.support.strategies import bounded_cpu_texts, gpu_types

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


def test_a_group_may_scale_to_zero_after_an_idle_period() -> None:
    spec = AutoScalingSpec(min_replicas=0, max_replicas=3, idle_seconds=30)

    assert spec.autoscales
    assert spec.scales_to_zero
    assert spec.effective_idle_seconds == 30
    assert AutoScalingSpec(min_replicas=0).effective_idle_seconds == 300
    assert AutoScalingSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        pytest.param(
            {"min_replicas": 0, "max_replicas": 0},
            r"max_replicas is out of range: expected 1 to 1000 \(.*\), got 0",
            id="zero_min_and_max",
        ),
        pytest.param(
            {"min_replicas": -1},
            r"min_replicas is out of range: expected 0 to 1000 \(.*\), got -1",
            id="negative_min",
        ),
        pytest.param(
            {"min_replicas": 0, "idle_seconds": 0},
            r"idle_seconds is out of range: expected 1 s to 604800 s \(.*\), got 0 s",
            id="zero_idle",
        ),
        pytest.param(
            {"min_replicas": 0, "idle_seconds": 1.5},
            r"idle_seconds must be a whole number: .*got 1.5 \(float\)$",
            id="float_idle",
        ),
        pytest.param(
            {"min_replicas": 1, "max_replicas": 0},
            r"max_replicas is out of range: expected 1 to 1000 \(.*\), got 0",
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
            r"target_cpu_utilization_percentage is out of range: expected 1 to 100 \(.*\), got 0",
            id="cpu_target_zero",
        ),
        pytest.param(
            {"target_cpu_utilization_percentage": 101},
            r"target_cpu_utilization_percentage is out of range: expected 1 to 100 \(.*\), got 101",
            id="cpu_target_over_100",
        ),
        pytest.param(
            {"target_cpu_utilization_percentage": 50.5},
            r"target_cpu_utilization_percentage must be a whole number: .*got 50.5 \(float\)$",
            id="cpu_target_float",
        ),
        pytest.param(
            {"queue_depth_target": 0},
            r"queue_depth_target is out of range: expected 1 to 10000 \(.*\), got 0",
            id="queue_depth_zero",
        ),
        pytest.param(
            {"shutdown_delay_seconds": -1},
            r"shutdown_delay_seconds is out of range: expected 0 s to 3600 s \(.*\), got -1 s",
            id="negative_shutdown_delay",
        ),
        pytest.param(
            {"window_seconds": -5},
            r"window_seconds is out of range: expected 0 s to 86400 s \(.*\), got -5 s",
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
        "idle_seconds": None,
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
        pytest.param({"min_replicas": -2}, r"min_replicas is out of range", id="bad_value"),
    ],
)
def test_autoscaling_from_dict_refuses_with_a_message(data: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        AutoScalingSpec.from_dict(data)  # type: ignore[arg-type]


def test_autoscaling_from_dict_fills_missing_keys_with_defaults() -> None:
    assert AutoScalingSpec.from_dict({"max_replicas": 2}) == AutoScalingSpec(max_replicas=2)


@st.composite
def _autoscaling_specs(draw: st.DrawFn) -> AutoScalingSpec:
    min_replicas = draw(st.integers(min_value=0, max_value=1000))
    return AutoScalingSpec(
        min_replicas=min_replicas,
        max_replicas=draw(st.integers(min_value=max(min_replicas, 1), max_value=1000)),
        target_cpu_utilization_percentage=draw(st.none() | st.integers(1, 100)),
        queue_depth_target=draw(st.none() | st.integers(1, 10_000)),
        shutdown_delay_seconds=draw(st.none() | st.integers(0, 3_600)),
        window_seconds=draw(st.none() | st.integers(0, 86_400)),
        idle_seconds=draw(st.none() | st.integers(1, 604_800)),
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


# Memory as users write it, from the floor of 16Mi up (chalk.common.bounds).
_memory_texts = st.one_of(
    st.integers(min_value=16 * 2**20, max_value=2**40).map(str),
    st.integers(min_value=16 * 2**10, max_value=10**9).map(lambda n: f"{n}Ki"),
    st.integers(min_value=16, max_value=10**6).map(lambda n: f"{n}Mi"),
    st.integers(min_value=17, max_value=10**6).map(lambda n: f"{n}M"),
    st.integers(min_value=1, max_value=10**4).map(lambda n: f"{n}Gi"),
    st.integers(min_value=1, max_value=10**4).map(lambda n: f"{n}G"),
)


@given(
    st.none() | bounded_cpu_texts,
    st.none() | _memory_texts,
    st.none() | st.builds(str, st.builds(GpuRequest, st.none() | gpu_types, st.integers(1, 16))),
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
