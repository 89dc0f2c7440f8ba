"""Per-replica resources and autoscaling settings of a scaling group: checked and stored.

The client, the CLI and the catalog build these specs; both deploy backends read them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Self

from chalk.common.bounds import BOUNDS, check_bound
from chalk.common.quantities import (
    GpuRequest,
    format_cpu,
    format_memory,
    invalid_value,
    parse_cpu,
    parse_gpu,
    parse_memory,
)

__all__ = [
    "DEFAULT_CPU_LIMIT",
    "DEFAULT_CPU_REQUEST",
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_MEMORY_REQUEST",
    "DEFAULT_SHUTDOWN_DELAY_SECONDS",
    "DEFAULT_TARGET_CPU_PERCENTAGE",
    "DEFAULT_WINDOW_SECONDS",
    "GPU_RESOURCE_NAME",
    "AutoScalingSpec",
    "ScalingGroupResourceRequest",
]

DEFAULT_CPU_REQUEST: Final = "100m"
DEFAULT_CPU_LIMIT: Final = "1"
DEFAULT_MEMORY_REQUEST: Final = "256Mi"
DEFAULT_MEMORY_LIMIT: Final = "1Gi"
DEFAULT_TARGET_CPU_PERCENTAGE: Final = 80
DEFAULT_SHUTDOWN_DELAY_SECONDS: Final = 30
DEFAULT_WINDOW_SECONDS: Final = 60
DEFAULT_IDLE_SECONDS: Final = 300
GPU_RESOURCE_NAME: Final = "nvidia.com/gpu"

# Frozen dataclasses, not pydantic models: validation raises our own ValidationError with our
# message (pydantic would wrap it in pydantic.ValidationError, which the CLI's ChalkError
# handling would not catch), and the strict-int rule is a few lines here.


def _check_count(field: str, value: object, *, bound: str) -> None:
    """``value`` is an int (``bool`` is not) within ``BOUNDS[bound]`` (chalk.common.bounds)."""
    if isinstance(value, bool) or not isinstance(value, int):
        fix = ""
        if isinstance(value, float) and value.is_integer():
            fix = f"write {field}={int(value)}"
        error = invalid_value(
            f"{field} must be a whole number",
            expected="an int",
            got=f"{value!r} ({type(value).__name__})",
            fix=fix,
        )
        raise error
    check_bound(bound, value, what=field)


def _check_optional_count(field: str, value: object, *, bound: str) -> None:
    if value is not None:
        _check_count(field, value, bound=bound)


def _fields_from(what: str, data: object, fields: tuple[str, ...]) -> dict[str, object]:
    if not isinstance(data, Mapping):
        error = invalid_value(
            f"{what} is not a mapping",
            expected=f"a dict with keys among {', '.join(fields)}",
            got=f"{type(data).__name__}",
        )
        raise error
    unknown = sorted(str(key) for key in data if key not in fields)
    if unknown:
        error = invalid_value(
            f"{what} has an unknown field",
            expected=f"keys among {', '.join(fields)}",
            got=", ".join(repr(key) for key in unknown),
        )
        raise error
    return {str(key): value for key, value in data.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoScalingSpec:
    """How many replicas a scaling group runs and when it adds or removes one.

    Replicas stay within ``[min_replicas, max_replicas]``; the group autoscales when the two
    differ. Unset targets take their defaults through the ``effective_*`` properties, so the
    stored spec keeps exactly what the user asked for.

    Parameters
    ----------
    min_replicas
        At least 0. A group with 0 starts at 1 replica, and goes to 0 only after
        ``idle_seconds`` with no call and no demand.
    max_replicas
        At least ``min_replicas`` and at least 1.
    target_cpu_utilization_percentage
        CPU use, as a percentage of the requested CPU, to keep replicas at (1 to 100).
    queue_depth_target
        In-flight calls per replica to aim for (replicas running our runtime only), >= 1.
    shutdown_delay_seconds
        Grace period of a leaving replica before it is killed, >= 0.
    window_seconds
        Scale-down stabilisation window, >= 0.
    idle_seconds
        With ``min_replicas=0``: how long a group goes without a call and without demand
        before it scales to zero, >= 1.

    Raises
    ------
    ValidationError
        When a value is not an int (``bool`` counts as not an int) or is out of range.

    Examples
    --------
    >>> spec = AutoScalingSpec(min_replicas=1, max_replicas=4)
    >>> spec.autoscales, spec.effective_target_cpu, spec.effective_window_seconds
    (True, 80, 60)
    >>> AutoScalingSpec.from_dict(spec.to_dict()) == spec
    True
    >>> AutoScalingSpec(min_replicas=0).effective_idle_seconds
    300
    >>> AutoScalingSpec(min_replicas=-1)
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: min_replicas is out of range: expected 0 to 1000 \
(the controller tracks every replica on each pass, and each is a process or a pod), got -1
    """

    min_replicas: int = 1
    max_replicas: int = 1
    target_cpu_utilization_percentage: int | None = None
    queue_depth_target: int | None = None
    shutdown_delay_seconds: int | None = None
    window_seconds: int | None = None
    idle_seconds: int | None = None

    def __post_init__(self) -> None:
        self._check_replicas()
        for field in _BOUNDED_TARGETS:
            _check_optional_count(field, getattr(self, field), bound=field)

    def _check_replicas(self) -> None:
        bound = BOUNDS["replicas"]
        minimum = self.min_replicas
        if type(minimum) is int and not 0 <= minimum <= bound.maximum:
            # The bound's floor is 1; a minimum may be 0 (scale to zero).
            error = invalid_value(
                "min_replicas is out of range",
                expected=f"0 to {bound.shown(bound.maximum)} ({bound.reason})",
                got=str(minimum),
            )
            raise error
        if type(minimum) is not int:
            _check_count("min_replicas", minimum, bound="replicas")
        _check_count("max_replicas", self.max_replicas, bound="replicas")
        if self.min_replicas > self.max_replicas:
            error = invalid_value(
                "min_replicas is larger than max_replicas",
                expected="min_replicas <= max_replicas",
                got=f"min_replicas={self.min_replicas}, max_replicas={self.max_replicas}",
                fix=f"set max_replicas={self.min_replicas} or lower min_replicas",
            )
            raise error

    @property
    def autoscales(self) -> bool:
        """Whether the replica count may change (``min_replicas != max_replicas``).

        Examples
        --------
        >>> AutoScalingSpec().autoscales, AutoScalingSpec(max_replicas=3).autoscales
        (False, True)
        """
        return self.min_replicas != self.max_replicas

    @property
    def effective_target_cpu(self) -> int | None:
        """The CPU target in percent: the given one, else 80 when the group autoscales.

        Examples
        --------
        >>> AutoScalingSpec(max_replicas=3).effective_target_cpu
        80
        >>> AutoScalingSpec().effective_target_cpu is None
        True
        """
        if self.target_cpu_utilization_percentage is None and self.autoscales:
            return DEFAULT_TARGET_CPU_PERCENTAGE
        return self.target_cpu_utilization_percentage

    @property
    def effective_shutdown_delay_seconds(self) -> int:
        """The grace period of a leaving replica: the given one, else 30 seconds.

        Examples
        --------
        >>> AutoScalingSpec().effective_shutdown_delay_seconds
        30
        """
        if self.shutdown_delay_seconds is None:
            return DEFAULT_SHUTDOWN_DELAY_SECONDS
        return self.shutdown_delay_seconds

    @property
    def effective_window_seconds(self) -> int:
        """The scale-down stabilisation window: the given one, else 60 seconds.

        Examples
        --------
        >>> AutoScalingSpec(window_seconds=0).effective_window_seconds
        0
        """
        if self.window_seconds is None:
            return DEFAULT_WINDOW_SECONDS
        return self.window_seconds

    @property
    def effective_idle_seconds(self) -> int:
        """Idle time before a group with ``min_replicas=0`` scales to zero: the given one,
        else 300 seconds.

        Examples
        --------
        >>> AutoScalingSpec(min_replicas=0, idle_seconds=60).effective_idle_seconds
        60
        """
        if self.idle_seconds is None:
            return DEFAULT_IDLE_SECONDS
        return self.idle_seconds

    @property
    def scales_to_zero(self) -> bool:
        """Whether the group may go to zero replicas when idle (``min_replicas == 0``).

        Examples
        --------
        >>> AutoScalingSpec(min_replicas=0).scales_to_zero, AutoScalingSpec().scales_to_zero
        (True, False)
        """
        return self.min_replicas == 0

    def to_dict(self) -> dict[str, int | None]:
        """The spec as a JSON-able dict keyed by exactly the field names.

        Examples
        --------
        >>> AutoScalingSpec(max_replicas=2).to_dict()["max_replicas"]
        2
        """
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_cpu_utilization_percentage": self.target_cpu_utilization_percentage,
            "queue_depth_target": self.queue_depth_target,
            "shutdown_delay_seconds": self.shutdown_delay_seconds,
            "window_seconds": self.window_seconds,
            "idle_seconds": self.idle_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        """The spec stored by ``to_dict``; missing keys take their defaults.

        Raises
        ------
        ValidationError
            When a key is not a field name or a value is invalid.

        Examples
        --------
        >>> AutoScalingSpec.from_dict({"min_replicas": 2, "max_replicas": 5})
        AutoScalingSpec(min_replicas=2, max_replicas=5, target_cpu_utilization_percentage=None, \
queue_depth_target=None, shutdown_delay_seconds=None, window_seconds=None, idle_seconds=None)
        """
        values = _fields_from("autoscaling", data, _AUTOSCALING_FIELDS)
        return cls(**values)  # type: ignore[arg-type]  # each value is checked in __post_init__


# The optional fields, each checked against the bound of its own name.
_BOUNDED_TARGETS: Final = (
    "target_cpu_utilization_percentage",
    "queue_depth_target",
    "shutdown_delay_seconds",
    "window_seconds",
    "idle_seconds",
)
_AUTOSCALING_FIELDS: Final = (
    "min_replicas",
    "max_replicas",
    "target_cpu_utilization_percentage",
    "queue_depth_target",
    "shutdown_delay_seconds",
    "window_seconds",
    "idle_seconds",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalingGroupResourceRequest:
    """CPU, memory and GPUs per replica, kept as the user wrote them and checked on creation.

    Given amounts are both request and limit; omitted CPU is requested at 100m and limited to
    1 core, omitted memory requested at 256Mi and limited to 1Gi; GPUs only when given.

    Parameters
    ----------
    cpu
        Such as ``"2"`` or ``"500m"``.
    memory
        Such as ``"4Gi"`` or ``"512Mi"``.
    gpu
        ``"type:count"`` such as ``"nvidia-tesla-t4:1"``, or ``"count"``.

    Raises
    ------
    ValidationError
        When an amount does not parse (see ``parse_cpu``, ``parse_memory``, ``parse_gpu``).

    Examples
    --------
    >>> request = ScalingGroupResourceRequest(cpu="2", memory="4Gi")
    >>> request.cpu_millicores, request.memory_bytes, request.gpu_request
    (2000, 4294967296, None)
    >>> request.requests_and_limits()
    {'requests': {'cpu': '2', 'memory': '4Gi'}, 'limits': {'cpu': '2', 'memory': '4Gi'}}
    """

    cpu: str | None = None
    memory: str | None = None
    gpu: str | None = None

    def __post_init__(self) -> None:
        # Parsing is the check; the accessors parse again, which is cheap and keeps no cache.
        cpu, memory, gpu = self.cpu_millicores, self.memory_bytes, self.gpu_request
        if cpu is not None:
            check_bound("cpu", cpu)
        if memory is not None:
            check_bound("memory", memory)
        if gpu is not None:
            check_bound("gpu", gpu.count, what="gpu count")

    @property
    def cpu_millicores(self) -> int | None:
        """The given CPU in millicores, ``None`` when omitted.

        Examples
        --------
        >>> ScalingGroupResourceRequest(cpu="0.5").cpu_millicores
        500
        """
        return None if self.cpu is None else parse_cpu(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        """The given memory in bytes, ``None`` when omitted.

        Examples
        --------
        >>> ScalingGroupResourceRequest(memory="512Mi").memory_bytes
        536870912
        """
        return None if self.memory is None else parse_memory(self.memory)

    @property
    def gpu_request(self) -> GpuRequest | None:
        """The given GPU request, ``None`` when omitted.

        Examples
        --------
        >>> ScalingGroupResourceRequest(gpu="nvidia-tesla-t4:1").gpu_request
        GpuRequest(type='nvidia-tesla-t4', count=1)
        """
        return None if self.gpu is None else parse_gpu(self.gpu)

    def requests_and_limits(self) -> dict[str, dict[str, str]]:
        """The effective requests and limits, shaped like a Kubernetes container's ``resources``.

        Amounts are in canonical form (``format_cpu``, ``format_memory``); the GPU count sits
        under ``nvidia.com/gpu`` in both.

        Examples
        --------
        >>> ScalingGroupResourceRequest().requests_and_limits()
        {'requests': {'cpu': '100m', 'memory': '256Mi'}, 'limits': {'cpu': '1', 'memory': '1Gi'}}
        >>> ScalingGroupResourceRequest(gpu="2").requests_and_limits()["limits"]["nvidia.com/gpu"]
        '2'
        """
        cpu, memory, gpu = self.cpu_millicores, self.memory_bytes, self.gpu_request
        requests = {
            "cpu": DEFAULT_CPU_REQUEST if cpu is None else format_cpu(cpu),
            "memory": DEFAULT_MEMORY_REQUEST if memory is None else format_memory(memory),
        }
        limits = {
            "cpu": DEFAULT_CPU_LIMIT if cpu is None else format_cpu(cpu),
            "memory": DEFAULT_MEMORY_LIMIT if memory is None else format_memory(memory),
        }
        if gpu is not None:
            requests[GPU_RESOURCE_NAME] = limits[GPU_RESOURCE_NAME] = str(gpu.count)
        return {"requests": requests, "limits": limits}

    def to_dict(self) -> dict[str, str | None]:
        """The request as a JSON-able dict keyed by exactly the field names, as the user wrote it.

        Examples
        --------
        >>> ScalingGroupResourceRequest(cpu="500m").to_dict()
        {'cpu': '500m', 'memory': None, 'gpu': None}
        """
        return {"cpu": self.cpu, "memory": self.memory, "gpu": self.gpu}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Self:
        """The request stored by ``to_dict``; missing keys mean omitted.

        Raises
        ------
        ValidationError
            When a key is not a field name or an amount does not parse.

        Examples
        --------
        >>> ScalingGroupResourceRequest.from_dict({"cpu": "2", "gpu": "1"})
        ScalingGroupResourceRequest(cpu='2', memory=None, gpu='1')
        """
        values = _fields_from("resources", data, _RESOURCE_FIELDS)
        return cls(**values)  # type: ignore[arg-type]  # each value is checked in __post_init__


_RESOURCE_FIELDS: Final = ("cpu", "memory", "gpu")
