"""A scaling group's desired state (``GroupSpec``) and the parsers for its CLI flag forms.

The client and the CLI build specs; the catalog stores them as JSON (``to_dict``); the local
controller and the Kubernetes backend read them back (``from_dict``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Self

from chalk.catalog.errors import ValidationError
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.common.bounds import check_bound
from chalk.common.names import LABEL_MAX_LENGTH, is_label_name, is_label_value

__all__ = [
    "DEFAULT_PORT",
    "RESERVED_ENV",
    "TAG_LABEL_PREFIX",
    "GroupSpec",
    "ModelRef",
    "parse_entrypoint",
    "parse_env",
    "parse_tags",
]

DEFAULT_PORT: Final = 8080
TAG_LABEL_PREFIX: Final = "chalk.ai/tag-"
_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables the backends set for every replica, whatever the spec says; each with its setter.
RESERVED_ENV: Final = {
    "PORT": "the replica's port, chosen by the backend (give --port to change the group's port)",
    "CHALK_REMOTE_CALL_PORT": "the replica's port, chosen by the backend (give --port instead)",
    "CHALK_REMOTE_CALL_HOST": "the address local replicas bind (always 127.0.0.1)",
    "CHALK_REMOTE_CALL_METRICS_PORT": "the replica's metrics port, chosen by the backend",
    "CUDA_VISIBLE_DEVICES": "the GPUs handed to the replica (give --gpu instead)",
    "CUDA_DEVICE_ORDER": "set with CUDA_VISIBLE_DEVICES",
}
# Set from the model's input schema by `chalk model deploy`: stored in the spec, never given.
_DEPLOY_ENV: Final = {
    "CHALK_INPUT_ARGS": "the model's input field names, set by deploying a model version",
}


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The model version a group serves."""

    name: str
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    """What a scaling group should run; every field is checked when the spec is built.

    Examples
    --------
    >>> spec = GroupSpec(image="ner:latest", port=8080, tags={"team": "nlp"})
    >>> GroupSpec.from_dict(spec.to_dict()) == spec
    True
    """

    image: str
    port: int = DEFAULT_PORT
    # True while the port comes from the image (EXPOSE, --port, or 8080): a new image brings
    # its own port; a port the user gave stays.
    port_from_image: bool = True
    image_digest: str | None = None
    scaling: AutoScalingSpec = field(default_factory=AutoScalingSpec)
    resources: ScalingGroupResourceRequest = field(default_factory=ScalingGroupResourceRequest)
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    model: ModelRef | None = None
    # How long a queued model call of this group waits for a free replica slot before it
    # goes anyway (engine batching); None: the engine's default.
    batch_max_delay_ms: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise ValidationError(
                f"image is empty: expected an image reference such as 'ner:latest', "
                f"got {self.image!r}"
            )
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ValidationError(
                f"port must be a whole number: expected an int, got {self.port!r}"
            )
        check_bound("port", self.port)
        check_bound("env", len(self.env), what="env (the number of variables)")
        _check_batch_max_delay(self.batch_max_delay_ms)
        for name, value in self.env.items():
            _check_env(name, value)
            _check_not_reserved(name, RESERVED_ENV, what="environment variable")
        check_bound("tags", len(self.tags), what="tags (the number of tags)")
        for key, value in self.tags.items():
            _check_tag(key, value)
        if self.entrypoint is not None:
            _check_entrypoint(self.entrypoint)

    def with_changes(self, **changes: Any) -> Self:
        """A copy with some fields replaced (None values keep the current ones)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def labels(self) -> dict[str, str]:
        """The tags as labels: ``chalk.ai/tag-<key>: <value>``."""
        return {f"{TAG_LABEL_PREFIX}{key}": value for key, value in sorted(self.tags.items())}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the catalog."""
        return {
            "image": self.image,
            "image_digest": self.image_digest,
            "port": self.port,
            "port_from_image": self.port_from_image,
            "scaling": self.scaling.to_dict(),
            "resources": self.resources.to_dict(),
            "env": dict(self.env),
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "tags": dict(self.tags),
            "model": (
                {"name": self.model.name, "version": self.model.version} if self.model else None
            ),
            "batch_max_delay_ms": self.batch_max_delay_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read back what ``to_dict`` stored."""
        model = data.get("model")
        entrypoint = data.get("entrypoint")
        return cls(
            image=str(data["image"]),
            image_digest=data.get("image_digest"),
            port=int(data.get("port") or DEFAULT_PORT),
            port_from_image=bool(data.get("port_from_image", True)),
            scaling=AutoScalingSpec.from_dict(data.get("scaling") or {}),
            resources=ScalingGroupResourceRequest.from_dict(data.get("resources") or {}),
            env=dict(data.get("env") or {}),
            entrypoint=tuple(entrypoint) if entrypoint is not None else None,
            tags=dict(data.get("tags") or {}),
            model=ModelRef(str(model["name"]), int(model["version"])) if model else None,
            batch_max_delay_ms=data.get("batch_max_delay_ms"),
        )


def parse_tags(text: str) -> dict[str, str]:
    """``--tags="k=v,k2=v2"`` as a dict, each checked as a label.

    Examples
    --------
    >>> parse_tags("team=nlp, tier=gold")
    {'team': 'nlp', 'tier': 'gold'}
    """
    tags: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValidationError(
                f'--tags entry {part!r} is not key=value: expected e.g. --tags="team=nlp,tier=gold"'
            )
        key, value = key.strip(), value.strip()
        _check_tag(key, value)
        if key in tags:
            raise ValidationError(
                f"--tags gives the tag {key!r} twice ({key}={tags[key]} and {key}={value}): "
                f"expected each key once"
            )
        tags[key] = value
    check_bound("tags", len(tags), what="--tags (the number of tags)")
    return tags


def parse_entrypoint(text: str) -> tuple[str, ...]:
    """``--entrypoint="a,b,c"`` as an argv (never run through a shell).

    Examples
    --------
    >>> parse_entrypoint("python,-m,http.server,8000")
    ('python', '-m', 'http.server', '8000')
    """
    argv = tuple(part.strip() for part in text.split(","))
    if not text.strip() or any(not part for part in argv):
        raise ValidationError(
            f"--entrypoint has an empty argument: expected comma-separated arguments such as "
            f"'python,-m,http.server,8000', got {text!r}"
        )
    _check_entrypoint(argv)
    return argv


def parse_env(items: Iterable[str]) -> dict[str, str]:
    """Repeated ``--env KEY=VALUE`` flags as a dict; a key given twice, or one the backend sets
    itself (``RESERVED_ENV``), is an error.

    Examples
    --------
    >>> parse_env(["MODEL=small", "THREADS=2"])
    {'MODEL': 'small', 'THREADS': '2'}
    """
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(
                f"--env {item!r} is not KEY=VALUE: expected e.g. --env MODEL=small"
            )
        _check_env(name, value)
        _check_not_reserved(name, {**RESERVED_ENV, **_DEPLOY_ENV}, what="--env")
        if name in env:
            raise ValidationError(
                f"--env gives {name} twice ({name}={env[name]!r} and {name}={value!r}): "
                f"expected each variable once"
            )
        env[name] = value
    return env


def _check_batch_max_delay(delay_ms: object) -> None:
    if delay_ms is None:
        return
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, int | float):
        raise ValidationError(
            f"batch_max_delay_ms must be a number of milliseconds, got {delay_ms!r}"
        )
    check_bound("batch_max_delay_ms", delay_ms)


def _check_env(name: object, value: object) -> None:
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ValidationError(
            f"environment variable name {name!r} is not valid: expected letters, digits and "
            f"'_', not starting with a digit"
        )
    if not isinstance(value, str):
        raise ValidationError(
            f"environment variable {name} must be a string: expected text, got "
            f"{value!r} ({type(value).__name__})"
        )
    check_bound("env_value_length", len(value), what=f"environment variable {name}'s length")


def _check_not_reserved(name: str, reserved: Mapping[str, str], *, what: str) -> None:
    if name in reserved:
        raise ValidationError(
            f"{what} {name} is set by scalegroup for every replica ({reserved[name]}): "
            f"expected a variable of your own; choose another name"
        )


def _check_entrypoint(argv: tuple[str, ...]) -> None:
    if not argv or any(not isinstance(a, str) or not a for a in argv):
        raise ValidationError(
            f"entrypoint has an empty argument: expected comma-separated non-empty "
            f"arguments such as 'python,-m,http.server', got {argv!r}"
        )
    check_bound("entrypoint_arguments", len(argv), what="entrypoint (the number of arguments)")
    check_bound("entrypoint_length", sum(map(len, argv)), what="entrypoint (its length)")


def _check_tag(key: str, value: str) -> None:
    label = f"{TAG_LABEL_PREFIX}{key}"
    name = label.split("/", 1)[1]
    if not is_label_name(name):
        raise ValidationError(
            f"tag key {key!r} does not make a valid label name ({label}): expected letters, "
            f"digits, '-', '_' or '.', starting and ending with a letter or digit, at most "
            f"{LABEL_MAX_LENGTH - len('tag-')} characters"
        )
    if not is_label_value(value):
        raise ValidationError(
            f"tag {key}={value!r} has a value that is not a valid label value: expected at most "
            f"{LABEL_MAX_LENGTH} letters, digits, '-', '_' or '.', starting and ending with a "
            f"letter or digit"
        )
