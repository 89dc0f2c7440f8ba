"""chalk.yaml: finding it, its defaults, the catalog URL, and messages that name the bad key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalk.common.config import (
    GatewayConfig,
    KubernetesConfig,
    ProjectConfig,
    find_project,
    load_project,
)
from chalk.common.errors import ConfigError
from chalk.common.names import to_dns_label

EVERY_KEY = """\
project: fraud
environment: prod-eu
backend: kubernetes
catalog_url: postgresql://chalk@db.internal/catalog
online_store: rediss://cache.internal:6380/2
kubernetes:
  namespace: models
  context: gke-prod
  gateway:
    name: public
    namespace: gateway-system
    domain: models.example.com
  prometheus_url: http://prometheus.monitoring:9090
"""


def _write(folder: Path, text: str) -> Path:
    path = folder / "chalk.yaml"
    path.write_text(text)
    return path


def test_find_project_walks_up_from_a_nested_directory(tmp_path: Path) -> None:
    _write(tmp_path, "project: fraud\n")
    nested = tmp_path / "features" / "scoring"
    nested.mkdir(parents=True)

    project = find_project(nested)

    assert project.root == tmp_path.resolve()
    assert project.config_path == tmp_path.resolve() / "chalk.yaml"
    assert project.config.project == "fraud"


def test_find_project_takes_the_nearest_file(tmp_path: Path) -> None:
    _write(tmp_path, "project: outer\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    _write(inner, "project: inner\n")

    assert find_project(inner / ".").config.project == "inner"


def test_find_project_starts_at_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "project: fraud\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")

    assert find_project().root == tmp_path.resolve()


def test_no_chalk_yaml_anywhere_says_where_it_looked_and_how_to_make_one(tmp_path: Path) -> None:
    start = tmp_path / "empty"
    start.mkdir()

    with pytest.raises(ConfigError, match=r"no chalk\.yaml found") as info:
        find_project(start)

    assert str(start.resolve()) in str(info.value)
    assert "chalk init" in str(info.value)


def test_a_file_with_only_the_project_name_takes_every_default(tmp_path: Path) -> None:
    config = load_project(_write(tmp_path, "project: fraud\n")).config

    assert config == ProjectConfig(
        project="fraud",
        environment="dev",
        backend="local",
        kubernetes=KubernetesConfig(namespace="default", context=None, gateway=GatewayConfig()),
        catalog_url=None,
    )
    assert config.kubernetes.gateway == GatewayConfig(name=None, namespace=None, domain=None)


def test_every_key_with_good_values(tmp_path: Path) -> None:
    config = load_project(_write(tmp_path, EVERY_KEY)).config

    assert (config.project, config.environment, config.backend) == (
        "fraud",
        "prod-eu",
        "kubernetes",
    )
    assert config.catalog_url == "postgresql://chalk@db.internal/catalog"
    assert (config.kubernetes.namespace, config.kubernetes.context) == ("models", "gke-prod")
    assert config.kubernetes.prometheus_url == "http://prometheus.monitoring:9090"
    assert config.online_store == "rediss://cache.internal:6380/2"
    assert config.kubernetes.gateway == GatewayConfig(
        name="public", namespace="gateway-system", domain="models.example.com"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "project: fraud\ncolour: red\n",
            "chalk.yaml: colour: unknown key, expected one of project, environment, backend, "
            "kubernetes, catalog_url",
            id="unknown_top_level_key",
        ),
        pytest.param(
            "project: fraud\nkubernetes:\n  nmespace: models\n",
            "chalk.yaml: kubernetes.nmespace: unknown key, expected one of namespace, context, "
            "gateway, prometheus_url; did you mean 'namespace'?",
            id="unknown_nested_key",
        ),
        pytest.param(
            "project: fraud\nkubernetes:\n  gateway:\n    host: x\n",
            "chalk.yaml: kubernetes.gateway.host: unknown key, expected one of name, namespace, "
            "domain",
            id="unknown_key_two_levels_down",
        ),
        pytest.param(
            "project: fraud\nenvironment: Prod_EU\n",
            "chalk.yaml: environment: expected a DNS-1123 label (lowercase letters, digits and "
            "'-'), got 'Prod_EU'; try 'prod-eu'",
            id="bad_environment",
        ),
        pytest.param(
            "project: fraud\nenvironment: " + "e" * 64 + "\n",
            "chalk.yaml: environment: expected a DNS-1123 label",
            id="environment_too_long",
        ),
        pytest.param(
            "project: fraud\nbackend: docker\n",
            "chalk.yaml: backend: expected 'local' or 'kubernetes', got 'docker'",
            id="bad_backend",
        ),
        pytest.param(
            "project: fraud\nkubernetes:\n  namespace: My_NS\n",
            "chalk.yaml: kubernetes.namespace: expected a DNS-1123 label (lowercase letters, "
            "digits and '-'), got 'My_NS'",
            id="bad_namespace",
        ),
        pytest.param(
            "project: fraud\nkubernetes:\n  gateway:\n    domain: https://models.example.com\n",
            "chalk.yaml: kubernetes.gateway.domain: expected a DNS name",
            id="domain_with_a_scheme",
        ),
        pytest.param(
            "project: fraud\nkubernetes: models\n",
            "chalk.yaml: kubernetes: expected a mapping of keys, got 'models'",
            id="section_not_a_mapping",
        ),
        pytest.param(
            "project: fraud\nkubernetes:\n  prometheus_url: prometheus:9090\n",
            "chalk.yaml: kubernetes.prometheus_url: expected the http:// or https:// URL of a "
            "Prometheus server such as 'http://prometheus.monitoring:9090', got 'prometheus:9090'",
            id="prometheus_url_without_a_scheme",
        ),
        pytest.param(
            "project: fraud\nkubernetes:\n  prometheus_url: ftp://prom/\n",
            "chalk.yaml: kubernetes.prometheus_url: expected the http:// or https:// URL",
            id="prometheus_url_not_http",
        ),
        pytest.param(
            "project: fraud\nonline_store: http://cache:6379\n",
            "chalk.yaml: online_store: expected a redis://, rediss:// or unix:// URL such as "
            "'redis://localhost:6379/0', or null for the in-process store, got 'http://cache:6379'",
            id="online_store_not_redis",
        ),
        pytest.param(
            "project: fraud\nonline_store: 'redis://'\n",
            "chalk.yaml: online_store: expected a redis://, rediss:// or unix:// URL",
            id="online_store_without_a_host",
        ),
        pytest.param(
            "project: fraud\ncatalog_url: catalog.db\n",
            "chalk.yaml: catalog_url: expected a database URL",
            id="catalog_url_not_a_url",
        ),
        pytest.param(
            "environment: dev\n",
            "chalk.yaml: project: missing, expected the project's name",
            id="project_missing",
        ),
        pytest.param(
            "project: ''\n",
            "chalk.yaml: project: expected a non-empty string, got ''",
            id="project_empty",
        ),
        pytest.param(
            "project: 2024\n",
            'chalk.yaml: project: expected a string, got 2024; write it in quotes: "2024"',
            id="project_a_number",
        ),
        pytest.param(
            "project: fraud\nkubernetes:\n  bad: [unclosed\n",
            "chalk.yaml: line 4, column 1: not valid YAML",
            id="yaml_syntax_error",
        ),
        pytest.param(
            "project: fraud\n  environment: dev\n",
            "chalk.yaml: line 2, column 14: not valid YAML: mapping values are not allowed here",
            id="yaml_bad_indentation",
        ),
        pytest.param(
            "- project: fraud\n",
            "chalk.yaml: expected a mapping of keys, at least 'project: <name>', got a list",
            id="a_list_document",
        ),
        pytest.param(
            "# nothing yet\n",
            "chalk.yaml: expected a mapping of keys, at least 'project: <name>', got an empty "
            "document",
            id="an_empty_document",
        ),
    ],
)
def test_a_bad_file_names_the_file_the_key_and_what_was_expected(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_project(path)

    assert str(info.value).startswith(str(path.resolve()))


def test_every_problem_in_a_file_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "environment: Dev\nbackend: docker\n")

    with pytest.raises(ConfigError) as info:
        load_project(path)

    lines = str(info.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["project", "environment", "backend"]


def test_a_message_never_carries_pydantics_own_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "project: fraud\nbackend: docker\ncolour: red\n")

    with pytest.raises(ConfigError) as info:
        load_project(path)

    for pydantic_words in ("Input should be", "Extra inputs", "pydantic", "literal_error"):
        assert pydantic_words not in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"chalk\.yaml: cannot read it"):
        load_project(tmp_path / "chalk.yaml")


def test_catalog_url_defaults_to_sqlite_under_the_project_state_dir(tmp_path: Path) -> None:
    project = find_project(_write(tmp_path, "project: fraud\n").parent)

    url = project.catalog_url(env={})

    assert project.state_dir == tmp_path.resolve() / ".chalk"
    assert url == f"sqlite:///{tmp_path.resolve()}/.chalk/catalog.db"
    assert Path(url.removeprefix("sqlite:///")).is_absolute()


@pytest.mark.parametrize(
    ("file_url", "env", "expected"),
    [
        pytest.param(
            None,
            {"CHALK_CATALOG_URL": "postgresql://h/env"},
            "postgresql://h/env",
            id="env_over_default",
        ),
        pytest.param("postgresql://h/file", {}, "postgresql://h/file", id="file_over_default"),
        pytest.param(
            "postgresql://h/file",
            {"CHALK_CATALOG_URL": "postgresql://h/env"},
            "postgresql://h/env",
            id="env_over_file",
        ),
        pytest.param(
            "postgresql://h/file", {"CHALK_CATALOG_URL": ""}, "postgresql://h/file", id="empty_env"
        ),
    ],
)
def test_chalk_catalog_url_overrides_the_file(
    tmp_path: Path, file_url: str | None, env: dict[str, str], expected: str
) -> None:
    text = "project: fraud\n" + (f"catalog_url: {file_url}\n" if file_url else "")
    project = load_project(_write(tmp_path, text))

    assert project.catalog_url(env=env) == expected


def test_catalog_url_reads_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = load_project(_write(tmp_path, "project: fraud\n"))
    monkeypatch.setenv("CHALK_CATALOG_URL", "postgresql://h/from-os-environ")

    assert project.catalog_url() == "postgresql://h/from-os-environ"


@pytest.mark.parametrize(
    ("file_url", "expected"),
    [
        pytest.param(
            "sqlite:///state/catalog.db", "sqlite:///{root}/state/catalog.db", id="relative"
        ),
        pytest.param(
            "sqlite+pysqlite:///c.db?timeout=5",
            "sqlite+pysqlite:///{root}/c.db?timeout=5",
            id="driver_and_query",
        ),
        pytest.param("sqlite:////var/lib/c.db", "sqlite:////var/lib/c.db", id="absolute"),
        pytest.param("sqlite://", "sqlite://", id="in_memory"),
    ],
)
def test_a_relative_sqlite_path_in_the_file_is_relative_to_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_url: str, expected: str
) -> None:
    project = load_project(_write(tmp_path, f"project: fraud\ncatalog_url: {file_url!r}\n"))
    elsewhere = tmp_path / "features"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert project.catalog_url(env={}) == expected.format(root=tmp_path.resolve())


@pytest.mark.parametrize(
    ("text", "label"),
    [
        pytest.param("fraud", "fraud", id="already_a_label"),
        pytest.param("Fraud Scoring_v2", "fraud-scoring-v2", id="case_spaces_underscores"),
        pytest.param("--édition--", "edition", id="accents_and_edges"),
        pytest.param("x" * 70, "x" * 63, id="too_long"),
        pytest.param("a" * 62 + "-b", "a" * 62, id="cut_at_a_dash"),
        pytest.param("___", "", id="nothing_usable"),
    ],
)
def test_to_dns_label(text: str, label: str) -> None:
    assert to_dns_label(text) == label


def test_a_catalog_url_of_another_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "chalk.yaml").write_text("project: demo\ncatalog_url: mysql://u@h/db\n")

    with pytest.raises(ConfigError, match="catalog_url"):
        load_project(tmp_path / "chalk.yaml")


def test_a_relative_sqlite_url_in_the_variable_is_anchored_at_the_root(tmp_path: Path) -> None:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")

    url = load_project(tmp_path / "chalk.yaml").catalog_url(
        {"CHALK_CATALOG_URL": "sqlite:///team.db"}
    )

    assert url == f"sqlite:///{(tmp_path / 'team.db').as_posix()}"
