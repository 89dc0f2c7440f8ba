"""``chalk.yaml``: a project's settings, found by walking up from a directory, and validated.

The CLI and ``ChalkClient`` call ``find_project``; the catalog and the backends read the
``Project`` it returns (its catalog URL, its state directory, its Kubernetes settings).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from chalk.common.errors import ConfigError
from chalk.common.names import is_dns_label, is_dns_name, to_dns_label

__all__ = [
    "CONFIG_FILENAME",
    "GatewayConfig",
    "KubernetesConfig",
    "Project",
    "ProjectConfig",
    "find_project",
    "load_project",
]

CONFIG_FILENAME = "chalk.yaml"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://.*")
_SQLITE_FILE_URL = re.compile(r"(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>[^?]*)(?P<query>\?.*)?")

# What each kind of bad value should have been; keys are pydantic error types, our own
# (raised by the validators below) and pydantic's.
_EXPECTED = {
    "dns_label": "a DNS-1123 label (lowercase letters, digits and '-')",
    "dns_name": "a DNS name (lowercase letters, digits, '-' and '.'; no scheme or path)",
    "database_url": "a database URL such as 'sqlite:///.chalk/catalog.db' or "
    "'postgresql://user@host/db'",
    "http_url": "the http:// or https:// URL of a Prometheus server such as "
    "'http://prometheus.monitoring:9090'",
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "dict_type": "a mapping of keys",
}
# What a missing required key should hold.
_REQUIRED = {"project": "the project's name, e.g. 'project: fraud'"}


def _dns_label(value: str) -> str:
    if not is_dns_label(value):
        raise PydanticCustomError("dns_label", "not a DNS-1123 label")
    return value


def _dns_name(value: str) -> str:
    if not is_dns_name(value):
        raise PydanticCustomError("dns_name", "not a DNS name")
    return value


def _database_url(value: str) -> str:
    scheme = value.split("://", 1)[0].split("+", 1)[0].lower()
    if not _URL.fullmatch(value) or scheme not in ("sqlite", "postgresql", "postgres"):
        raise PydanticCustomError("database_url", "not a database URL")
    return value


def _http_url(value: str) -> str:
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    spaced = any(character.isspace() for character in value)
    if scheme.lower() not in ("http", "https") or not host or spaced or not _URL.fullmatch(value):
        raise PydanticCustomError("http_url", "not an http(s) URL")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


class _Section(BaseModel):
    """A mapping in chalk.yaml: unknown keys are errors, values never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(_Section):
    """``kubernetes.gateway``: the Gateway API gateway that gives each group its HTTPS URL.

    Examples
    --------
    >>> GatewayConfig(name="public", domain="models.example.com").namespace is None
    True
    """

    name: DnsName | None = None
    namespace: DnsLabel | None = None
    domain: DnsName | None = None


class KubernetesConfig(_Section):
    """``kubernetes``: where the Kubernetes backend puts scaling groups.

    Examples
    --------
    >>> KubernetesConfig().namespace
    'default'
    """

    namespace: DnsLabel = "default"
    context: str | None = None
    gateway: GatewayConfig = GatewayConfig()
    # The Prometheus server the dashboard's time series (and KEDA's triggers) are read from.
    prometheus_url: HttpUrl | None = None


class ProjectConfig(_Section):
    """The whole of ``chalk.yaml``; only ``project`` is required.

    Examples
    --------
    >>> config = ProjectConfig(project="fraud")
    >>> config.environment, config.backend, config.kubernetes.namespace
    ('dev', 'local', 'default')
    """

    project: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    environment: DnsLabel = "dev"
    backend: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesConfig = KubernetesConfig()
    catalog_url: DatabaseUrl | None = None


@dataclass(frozen=True, slots=True)
class Project:
    """A loaded ``chalk.yaml``: the directory holding it and its validated settings.

    Examples
    --------
    >>> root = Path("/srv/fraud")
    >>> project = Project(root, root / "chalk.yaml", ProjectConfig(project="fraud"))
    >>> project.state_dir.as_posix()
    '/srv/fraud/.chalk'
    """

    root: Path
    config_path: Path
    config: ProjectConfig

    @property
    def state_dir(self) -> Path:
        """``<root>/.chalk``: the catalog database, local images, controller logs."""
        return self.root / ".chalk"

    def catalog_url(self, env: Mapping[str, str] | None = None) -> str:
        """The catalog's database URL: ``CHALK_CATALOG_URL``, else the file's, else SQLite.

        A relative SQLite path (in chalk.yaml or the variable) is taken relative to the project
        root, so every directory of the project, and the controller, open the same database.
        ``env`` defaults to ``os.environ``; an empty ``CHALK_CATALOG_URL`` counts as unset.

        Examples
        --------
        >>> root = Path("/srv/fraud")
        >>> project = Project(root, root / "chalk.yaml", ProjectConfig(project="fraud"))
        >>> project.catalog_url(env={})
        'sqlite:////srv/fraud/.chalk/catalog.db'
        >>> project.catalog_url(env={"CHALK_CATALOG_URL": "postgresql://db/chalk"})
        'postgresql://db/chalk'
        """
        override = (os.environ if env is None else env).get("CHALK_CATALOG_URL")
        if override:
            return _anchor_sqlite_path(override, self.root)
        if self.config.catalog_url is not None:
            return _anchor_sqlite_path(self.config.catalog_url, self.root)
        return f"sqlite:///{(self.state_dir / 'catalog.db').as_posix()}"


def find_project(start: Path | None = None) -> Project:
    """Load the nearest ``chalk.yaml`` in ``start`` (default: the working directory) or above.

    Raises ``ConfigError`` when there is none, or when the one found is invalid.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     root = Path(folder)
    ...     _ = (root / "chalk.yaml").write_text("project: fraud\\n")
    ...     (root / "features" / "scoring").mkdir(parents=True)
    ...     project = find_project(root / "features" / "scoring")
    ...     project.config.project, project.root == root.resolve()
    ('fraud', True)
    """
    origin = (Path.cwd() if start is None else start).resolve()
    for directory in (origin, *origin.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return load_project(candidate)
    raise ConfigError(
        f"no {CONFIG_FILENAME} found in {origin} or any directory above it; "
        f"run `chalk init` to make a project there"
    )


def load_project(config_path: Path) -> Project:
    """Read and validate one ``chalk.yaml``; its directory is the project root.

    Raises ``ConfigError`` naming the file, the key, what was expected and what was given.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "chalk.yaml"
    ...     _ = path.write_text("project: fraud\\nkubernetes:\\n  namespace: My_NS\\n")
    ...     load_project(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chalk.common.errors.ConfigError: ...chalk.yaml: kubernetes.namespace: expected a DNS-1123 ...
    """
    path = config_path.resolve()
    document = _read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys, at least 'project: <name>', "
            f"got {_show(document) if document is not None else 'an empty document'}"
        )
    try:
        config = ProjectConfig.model_validate(document)
    except PydanticValidationError as error:
        problems = (_describe(detail) for detail in error.errors(include_url=False))
        raise ConfigError("\n".join(f"{path}: {problem}" for problem in problems)) from None
    return Project(root=path.parent, config_path=path, config=config)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are
    unique; PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class says so
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key!r} is given twice (first on line {first.start_mark.line + 1}): "
                    f"expected each key once",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror or error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}): expected a "
            f"YAML file in UTF-8; save it as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = error.problem or error.context or "unreadable"
        raise ConfigError(f"{path}: {where}not valid YAML: {reason}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def _describe(detail: ErrorDetails) -> str:
    """One pydantic error as ``key.path: expected X, got Y`` (plus the fix when obvious)."""
    loc = detail["loc"]
    key = ".".join(str(part) for part in loc)
    kind = detail["type"]
    given = detail["input"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key, {_known_keys(loc)}"
    if kind == "missing":
        return f"{key}: missing, expected {_REQUIRED.get(key, 'a value')}"
    if kind == "literal_error":
        expected = str(detail.get("ctx", {}).get("expected", "one of the listed values"))
    else:
        expected = _EXPECTED.get(kind, f"a valid value ({detail['msg'].lower()})")
    return f"{key}: expected {expected}, got {_show(given)}{_fix(kind, given)}"


def _fix(kind: str, given: Any) -> str:
    """The obvious correction of a bad value, as a suffix of its message; "" when none is."""
    if kind == "dns_label" and isinstance(given, str) and to_dns_label(given):
        return f"; try {to_dns_label(given)!r}"
    if kind == "string_type" and isinstance(given, int | float):
        # YAML reads 2024, 1.0 and true as numbers and booleans; quotes make them text.
        return f'; write it in quotes: "{_show(given)}"'
    return ""


def _known_keys(loc: tuple[int | str, ...]) -> str:
    section: type[BaseModel] = ProjectConfig
    for part in loc[:-1]:
        annotation = section.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        section = annotation
    keys = list(section.model_fields)
    text = f"expected one of {', '.join(keys)}"
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    return f"{text}; did you mean {close[0]!r}?" if close else text


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, or its kind when it is a collection."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _anchor_sqlite_path(url: str, root: Path) -> str:
    match = _SQLITE_FILE_URL.fullmatch(url)
    if match is None:
        return url
    path = match["path"]
    if not path or path == ":memory:" or path.startswith("file:") or Path(path).is_absolute():
        return url
    return f"{match['scheme']}{(root / path).as_posix()}{match['query'] or ''}"
