"""``chalk.yaml``: a project's settings, found by walking up from a directory, and validated.

The CLI and ``ChalkClient`` call ``find_project``; the catalog and the backends read the
``Project`` it returns (its catalog URL, its state directory, its Kubernetes settings).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import yaml

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

# What each kind of bad value should have been, by the kind its check raises.
_EXPECTED: Final = {
    "dns_label": "a DNS-1123 label (lowercase letters, digits and '-')",
    "dns_name": "a DNS name (lowercase letters, digits, '-' and '.'; no scheme or path)",
    "database_url": "a database URL such as 'sqlite:///.chalk/catalog.db' or "
    "'postgresql://user@host/db'",
    "http_url": "the http:// or https:// URL of a Prometheus server such as "
    "'http://prometheus.monitoring:9090'",
    "store_url": "a redis://, rediss:// or unix:// URL such as 'redis://localhost:6379/0', "
    "or null for the in-process store",
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "mapping": "a mapping of keys",
}
# What a missing required key should hold.
_REQUIRED: Final = {"project": "the project's name, e.g. 'project: fraud'"}


# The file is read by the small checks below rather than by pydantic models: every command
# reads chalk.yaml, and importing pydantic and building its validators cost `chalk
# scaling-group list` about 150 ms of its 600 ms budget (bench/README.md, cli.py).
class _Invalid(Exception):
    """A value that its key does not accept; ``kind`` is a key of ``_EXPECTED``, or
    ``expected`` says what the key takes."""

    def __init__(self, kind: str, expected: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.expected = expected


def _string(value: Any) -> str:
    # YAML reads 2024, 1.0 and true as numbers and booleans: they are not strings.
    if not isinstance(value, str):
        raise _Invalid("string_type")
    return value


def _non_empty(value: Any) -> str:
    text = _string(value).strip()
    if not text:
        raise _Invalid("string_too_short")
    return text


def _dns_label(value: Any) -> str:
    text = _string(value)
    if not is_dns_label(text):
        raise _Invalid("dns_label")
    return text


def _dns_name(value: Any) -> str:
    text = _string(value)
    if not is_dns_name(text):
        raise _Invalid("dns_name")
    return text


def _database_url(value: Any) -> str:
    text = _string(value)
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower()
    if not _URL.fullmatch(text) or scheme not in ("sqlite", "postgresql", "postgres"):
        raise _Invalid("database_url")
    return text


def _http_url(value: Any) -> str:
    text = _string(value)
    scheme, _, rest = text.partition("://")
    host = rest.split("/", 1)[0]
    spaced = any(character.isspace() for character in text)
    if scheme.lower() not in ("http", "https") or not host or spaced or not _URL.fullmatch(text):
        raise _Invalid("http_url")
    return text


def _store_url(value: Any) -> str:
    text = _string(value)
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in ("redis", "rediss", "unix") or not rest or not _URL.fullmatch(text):
        raise _Invalid("store_url")
    return text


def _or_null(check: Callable[[Any], str]) -> Callable[[Any], str | None]:
    """``check``, also taking YAML's null (an empty value) as "not set"."""
    return lambda value: None if value is None else check(value)


def _one_of(*choices: str) -> Callable[[Any], str]:
    listed = [repr(choice) for choice in choices]
    expected = f"{', '.join(listed[:-1])} or {listed[-1]}" if len(listed) > 1 else listed[0]

    def check(value: Any) -> str:
        if not (isinstance(value, str) and value in choices):
            raise _Invalid("choice", expected)
        return value

    return check


def _key(default: Any = MISSING, *, check: Callable[[Any], Any]) -> Any:
    """A key of a section: its default (none: required) and the check of its value. A key
    holding a nested section is ``field(default_factory=S, metadata={"section": S})``."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, slots=True)
class _Section:
    """A mapping in chalk.yaml: unknown keys are errors, values never change once loaded."""


_S = TypeVar("_S", bound=_Section)


@dataclass(frozen=True, slots=True)
class GatewayConfig(_Section):
    """``kubernetes.gateway``: the Gateway API gateway that gives each group its HTTPS URL.

    Examples
    --------
    >>> GatewayConfig(name="public", domain="models.example.com").namespace is None
    True
    """

    name: str | None = _key(None, check=_or_null(_dns_name))
    namespace: str | None = _key(None, check=_or_null(_dns_label))
    domain: str | None = _key(None, check=_or_null(_dns_name))


@dataclass(frozen=True, slots=True)
class KubernetesConfig(_Section):
    """``kubernetes``: where the Kubernetes backend puts scaling groups.

    Examples
    --------
    >>> KubernetesConfig().namespace
    'default'
    """

    namespace: str = _key("default", check=_dns_label)
    context: str | None = _key(None, check=_or_null(_string))
    gateway: GatewayConfig = field(
        default_factory=GatewayConfig, metadata={"section": GatewayConfig}
    )
    # The Prometheus server the dashboard's time series (and KEDA's triggers) are read from.
    prometheus_url: str | None = _key(None, check=_or_null(_http_url))


@dataclass(frozen=True, slots=True)
class ProjectConfig(_Section):
    """The whole of ``chalk.yaml``; only ``project`` is required.

    Examples
    --------
    >>> config = ProjectConfig(project="fraud")
    >>> config.environment, config.backend, config.kubernetes.namespace
    ('dev', 'local', 'default')
    """

    project: str = _key(check=_non_empty)
    environment: str = _key("dev", check=_dns_label)
    backend: Literal["local", "kubernetes"] = _key("local", check=_one_of("local", "kubernetes"))
    kubernetes: KubernetesConfig = field(
        default_factory=KubernetesConfig, metadata={"section": KubernetesConfig}
    )
    catalog_url: str | None = _key(None, check=_or_null(_database_url))
    # Where model answers cached for a feature's max_staleness are kept: a Redis server that
    # every process of the project shares; null keeps them in each process's memory.
    online_store: str | None = _key(None, check=_or_null(_store_url))


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
    problems: list[str] = []
    config = _read_section(ProjectConfig, document, (), problems)
    if config is None:
        raise ConfigError("\n".join(f"{path}: {problem}" for problem in problems))
    return Project(root=path.parent, config_path=path, config=config)


def _read_section(
    section: type[_S], given: Any, at: tuple[str, ...], problems: list[str]
) -> _S | None:
    """``given`` read as ``section``; None after adding to ``problems`` one line for each bad
    key, in the order of the section's keys, then the unknown ones in the file's order."""
    if not isinstance(given, dict):
        problems.append(_describe(at, _Invalid("mapping"), given))
        return None
    count = len(problems)
    values: dict[str, Any] = {}
    keys = fields(section)
    for key in keys:
        where = (*at, key.name)
        if key.name not in given:
            if key.default is MISSING and key.default_factory is MISSING:
                wanted = _REQUIRED.get(key.name, "a value")
                problems.append(f"{_dotted(where)}: missing, expected {wanted}")
            continue
        if "section" in key.metadata:
            values[key.name] = _read_section(
                key.metadata["section"], given[key.name], where, problems
            )
            continue
        try:
            values[key.name] = key.metadata["check"](given[key.name])
        except _Invalid as error:
            problems.append(_describe(where, error, given[key.name]))
    names = [key.name for key in keys]
    for unknown in (name for name in given if name not in names):
        problems.append(
            f"{_dotted((*at, str(unknown)))}: unknown key, {_known_keys(names, unknown)}"
        )
    return section(**values) if len(problems) == count else None


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


def _dotted(at: tuple[str, ...]) -> str:
    return ".".join(at)


def _describe(at: tuple[str, ...], error: _Invalid, given: Any) -> str:
    """One bad value as ``key.path: expected X, got Y`` (plus the fix when obvious)."""
    expected = error.expected or _EXPECTED[error.kind]
    return f"{_dotted(at)}: expected {expected}, got {_show(given)}{_fix(error.kind, given)}"


def _fix(kind: str, given: Any) -> str:
    """The obvious correction of a bad value, as a suffix of its message; "" when none is."""
    if kind == "dns_label" and isinstance(given, str) and to_dns_label(given):
        return f"; try {to_dns_label(given)!r}"
    if kind == "string_type" and isinstance(given, int | float):
        # YAML reads 2024, 1.0 and true as numbers and booleans; quotes make them text.
        return f'; write it in quotes: "{_show(given)}"'
    return ""


def _known_keys(keys: list[str], given: object) -> str:
    text = f"expected one of {', '.join(keys)}"
    close = difflib.get_close_matches(str(given), keys, n=1)
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
