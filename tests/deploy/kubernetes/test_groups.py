"""The Kubernetes backend without a cluster: image checks, endpoints, ``--dry-run -o yaml``,
and the ``kubernetes`` client staying unloaded until a command needs it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from chalk.catalog import Catalog, Endpoint
from chalk.catalog.errors import NotFoundError, ValidationError
from chalk.catalog.records import REACH_CLUSTER, REACH_GATEWAY, LocalImage
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project, load_project
from chalk.deploy.backends import backend_for
from chalk.deploy.groups import create_group
from chalk.deploy.kubernetes.groups import KubernetesGroups, is_registry_image
from chalk.deploy.kubernetes.manifests import Placement, group_endpoints
from tests.deploy.kubernetes.helpers import chalk, scaling_group

CREATE = ("create", "--name", "ner", "--image", "ghcr.io/acme/ner:1")
# What an autoscaling group becomes with a gateway, in apply order.
ALL_KINDS = ["Deployment", "Service", "HTTPRoute", "HorizontalPodAutoscaler"]
CHALK_YAML = """\
project: demo
environment: staging
backend: kubernetes
kubernetes:
  namespace: ml
  gateway:
    name: public
    namespace: infra
    domain: models.example.com
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    (tmp_path / "chalk.yaml").write_text(CHALK_YAML)
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    # No cluster anywhere: a command that tried to reach one would fail.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    return load_project(tmp_path / "chalk.yaml")


def _no_cluster(project: Project) -> object:
    raise AssertionError(f"{project.config_path}: this step must not connect to a cluster")


def _local_image(catalog: Catalog, project: Project, tag: str) -> None:
    digest = "sha256:" + "cd" * 32
    image = LocalImage(
        digest=digest,
        snapshot_path=str(project.state_dir / "images" / digest / "rootfs"),
        entrypoint=("python", "-m", "server"),
        cmd=(),
        env={},
        workdir="/",
        exposed_port=7000,
        created_at=dt.datetime.now(dt.UTC),
    )
    catalog.images.save(image, [tag])


@pytest.mark.parametrize(
    ("reference", "registry"),
    [
        ("ghcr.io/acme/ner:1", True),
        ("registry.local:5000/ner", True),
        ("localhost/ner:2", True),
        ("ner:latest", False),
        ("acme/ner:1", False),
        ("ner", False),
    ],
)
def test_a_registry_image_names_its_host(reference: str, registry: bool) -> None:
    assert is_registry_image(reference) is registry


def test_an_image_only_in_the_local_store_is_refused(project: Project, catalog: Catalog) -> None:
    _local_image(catalog, project, "ner:latest")
    with pytest.raises(ValidationError, match=r"'ner:latest' is only in this project's local"):
        create_group(project, catalog, "ner", GroupSpec(image="ner"), port_given=False)
    assert catalog.groups.find("ner") is None


def test_a_registry_image_is_kept_as_named(project: Project, catalog: Catalog) -> None:
    # Even with the same name in the local store: a registry host means the registry's image.
    _local_image(catalog, project, "ghcr.io/acme/ner:1")
    groups = KubernetesGroups(project, connect=_no_cluster)  # type: ignore[arg-type]
    spec = groups.prepare(catalog, GroupSpec(image="ghcr.io/acme/ner"), port_given=False)
    assert (spec.image, spec.image_digest, spec.port) == ("ghcr.io/acme/ner:latest", None, 8080)


def test_a_digest_reference_is_pinned_and_a_public_bare_name_passes(
    project: Project, catalog: Catalog
) -> None:
    groups = KubernetesGroups(project, connect=_no_cluster)  # type: ignore[arg-type]
    digest = "sha256:" + "0f" * 32
    pinned = groups.prepare(catalog, GroupSpec(image=f"ghcr.io/a/b@{digest}"), port_given=False)
    assert (pinned.image, pinned.image_digest) == (f"ghcr.io/a/b@{digest}", digest)
    public = groups.prepare(catalog, GroupSpec(image="python:3.11"), port_given=False)
    assert public.image == "python:3.11"


def test_an_update_of_a_missing_group_says_so_before_connecting(
    project: Project, catalog: Catalog
) -> None:
    groups = KubernetesGroups(project, connect=_no_cluster)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match=r"'ghost'"):
        groups.update(catalog, "ghost", GroupSpec(image="ghcr.io/acme/ner:1"), expected_revision=1)


@pytest.mark.parametrize(
    ("entrypoint", "port_given", "port", "expected"),
    [
        (None, False, 8080, 8080),
        (("python", "-m", "server", "--port", "9000"), False, 8080, 9000),
        (("python", "-m", "server", "--port=9100"), False, 8080, 9100),
        (("python", "-m", "server", "--port", "9000"), True, 7000, 7000),
    ],
    ids=["default", "entrypoint-flag", "entrypoint-equals", "given"],
)
def test_the_port_is_given_else_the_entrypoints_else_8080(
    project: Project,
    catalog: Catalog,
    entrypoint: tuple[str, ...] | None,
    port_given: bool,
    port: int,
    expected: int,
) -> None:
    groups = KubernetesGroups(project, connect=_no_cluster)  # type: ignore[arg-type]
    spec = GroupSpec(image="ghcr.io/acme/ner:1", entrypoint=entrypoint, port=port)
    assert groups.prepare(catalog, spec, port_given=port_given).port == expected


def test_the_backend_is_chosen_by_chalk_yaml(project: Project, tmp_path: Path) -> None:
    assert isinstance(backend_for(project), KubernetesGroups)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "chalk.yaml").write_text("project: demo\n")
    local = load_project(tmp_path / "local" / "chalk.yaml")
    assert not isinstance(backend_for(local), KubernetesGroups)


INSIDE = Endpoint("dns:///ner.ml.svc.cluster.local:6666", reach=REACH_CLUSTER)
GATEWAY_ENDPOINT = Endpoint("staging-ner.models.example.com:443", tls=True, reach=REACH_GATEWAY)


@pytest.mark.parametrize(
    ("env", "gateway", "expected", "noted"),
    [
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, True, [INSIDE, GATEWAY_ENDPOINT], False),
        ({}, True, [INSIDE, GATEWAY_ENDPOINT], False),
        ({}, False, [INSIDE], True),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, False, [INSIDE], False),
    ],
    ids=["in-cluster", "outside", "no-gateway-outside", "no-gateway-inside"],
)
def test_a_group_stores_both_endpoints_wherever_the_command_runs(
    env: dict[str, str], gateway: bool, expected: list[Endpoint], noted: bool
) -> None:
    placement = (
        Placement("ml", "staging", "public", "infra", "models.example.com")
        if gateway
        else Placement("ml", "staging")
    )
    spec = GroupSpec(image="ghcr.io/acme/ner:1", port=6666)
    endpoints, url, note = group_endpoints("ner", spec, placement, env)
    assert endpoints == expected
    assert url == ("https://staging-ner.models.example.com" if gateway else None)
    assert ("reachable only inside the cluster" in note) is noted


def test_dry_run_prints_the_manifests_without_a_cluster(project: Project, catalog: Catalog) -> None:
    flags = "--min-replicas 2 --max-replicas 4 --gpu nvidia-tesla-t4:1 --tags team=nlp"
    result = scaling_group(project.root, *CREATE, *flags.split(), "--dry-run", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ALL_KINDS
    deployment, _service, route, hpa = documents
    assert deployment["metadata"]["namespace"] == "ml"
    assert deployment["metadata"]["labels"]["chalk.ai/tag-team"] == "nlp"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert route["spec"]["hostnames"] == ["staging-ner.models.example.com"]
    assert (hpa["apiVersion"], hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        "autoscaling/v2",
        2,
        4,
    )
    assert catalog.groups.find("ner") is None


def test_dry_run_as_json_is_a_list(project: Project) -> None:
    result = scaling_group(project.root, *CREATE, "--dry-run", "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "List"
    assert [item["kind"] for item in document["items"]] == ["Deployment", "Service", "HTTPRoute"]


def test_dry_run_of_an_update_shows_the_new_objects(project: Project, catalog: Catalog) -> None:
    spec = GroupSpec(image="ghcr.io/acme/ner:1", scaling=AutoScalingSpec())
    catalog.groups.create("ner", spec.to_dict(), backend="kubernetes")
    result = scaling_group(
        project.root, "update", "--name", "ner", "--image", "ghcr.io/acme/ner:2", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    deployment = next(yaml.safe_load_all(result.stdout))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/ner:2"
    assert catalog.groups.get("ner").revision == 1


def test_model_deploy_dry_run_prints_the_manifests(project: Project, catalog: Catalog) -> None:
    schema = pa.schema([("text", pa.large_string()), ("lang", pa.large_string())])
    catalog.models.register(
        "ner",
        input_schema=schema,
        output_schema=pa.schema([("entities", pa.large_string())]),
        image="ghcr.io/acme/ner:1",
    )
    deploy = ("model", "deploy", "--name", "ner", "--model", "ner", "--version", "1")
    scaling = ("--min-replicas", "1", "--max-replicas", "3", "--dry-run")
    result = chalk(project.root, *deploy, *scaling, "-o", "yaml")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ALL_KINDS
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/ner:1"
    assert {"name": "CHALK_INPUT_ARGS", "value": "text,lang"} in container["env"]
    assert container["readinessProbe"]["grpc"] == {"port": 8080}
    assert documents[1]["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/h2c"
    as_json = chalk(project.root, *deploy, "--dry-run", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert (listed["kind"], len(listed["items"])) == ("List", 3)
    assert catalog.groups.find("ner") is None


def test_a_command_that_needs_the_cluster_says_which_kubeconfig_failed(project: Project) -> None:
    result = scaling_group(project.root, *CREATE)
    assert result.returncode == 1
    assert "no-such-kubeconfig" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_loads_the_kubernetes_client_only_when_needed() -> None:
    code = (
        "import sys\n"
        "from chalk.cli import build_parser\n"
        "build_parser()\n"
        "import chalk.client, chalk.deploy.groups, chalk.deploy.kubernetes.groups\n"
        "print('kubernetes' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "scaling",
    [
        AutoScalingSpec(min_replicas=0, max_replicas=2),
        AutoScalingSpec(min_replicas=1, max_replicas=3, queue_depth_target=4),
    ],
    ids=["min-zero", "queue-depth"],
)
def test_a_dry_run_of_what_needs_keda_assumes_keda_and_asks_for_prometheus(
    project: Project, scaling: AutoScalingSpec
) -> None:
    groups = KubernetesGroups(project, connect=_no_cluster)  # type: ignore[arg-type]
    spec = GroupSpec(image="ghcr.io/acme/ner:1", scaling=scaling)

    with pytest.raises(ValidationError) as caught:
        groups.manifests("ner", spec)  # what --dry-run prints

    assert "needs KEDA reading the group's demand from Prometheus" in str(caught.value)
    assert f"{project.config_path} names no Prometheus server" in str(caught.value)
    assert "serves no KEDA" not in str(caught.value)
