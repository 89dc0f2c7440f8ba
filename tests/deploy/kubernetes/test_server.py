"""The feature server on a real API server (``kube_cluster``), each test in its own namespace:
server-side apply, re-apply, status, delete; and groups' endpoints read from inside and
outside the cluster.

Our server runs no controllers: tests write the Deployment's status themselves.
"""

from __future__ import annotations

import base64
from typing import Any

import pyarrow as pa
import pytest
import yaml

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.errors import ConflictError, NotFoundError, UnreachableGroupError
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.config import Project, load_project
from chalk.deploy.errors import DeployError
from chalk.deploy.groups import create_group
from chalk.deploy.kubernetes.backend import KubernetesBackend
from chalk.deploy.kubernetes.server import KubernetesServer, ServerSecret, ServerSpec
from tests.deploy.kubernetes.helpers import is_absent, read_object
from tests.support.cli import run_chalk

pytestmark = pytest.mark.kube

IMAGE = "ghcr.io/acme/features:1"
NAME = "chalk-server"
CATALOG_URL = "postgresql://chalk:pw@db.infra:5432/chalk"
SECRET = ServerSecret(CATALOG_URL, "s3cret")
MERGE_PATCH = "application/merge-patch+json"
AUTOSCALING = ServerSpec(
    image=IMAGE,
    scaling=AutoScalingSpec(min_replicas=1, max_replicas=3),
    resources=ScalingGroupResourceRequest(cpu="500m", memory="1Gi"),
)


@pytest.fixture
def server(kube: KubernetesBackend) -> KubernetesServer:
    return KubernetesServer(kube)


def _kinds(kube: KubernetesBackend) -> list[tuple[str, str]]:
    return [
        ("v1", "Secret"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        (kube.features().autoscaling, "HorizontalPodAutoscaler"),
    ]


def _versions(kube: KubernetesBackend) -> dict[str, str]:
    return {
        kind: read_object(kube, v, kind, NAME)["metadata"]["resourceVersion"]
        for v, kind in _kinds(kube)
    }


def _user_secret(kube: KubernetesBackend, name: str, data: dict[str, str]) -> None:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
    kube.request("POST", kube.path("v1", "Secret"), body=secret)


def test_deploy_applies_every_object_server_side(
    server: KubernetesServer, kube: KubernetesBackend
) -> None:
    server.deploy(NAME, AUTOSCALING, SECRET)
    deployment = read_object(kube, "apps/v1", "Deployment", NAME)
    fields = deployment["metadata"]["managedFields"]
    assert ("scalegroup", "Apply") in {(f["manager"], f["operation"]) for f in fields}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": NAME,
        "key": "catalog-url",
    }
    stored = read_object(kube, "v1", "Secret", NAME)["data"]
    assert base64.b64decode(stored["catalog-url"]).decode() == CATALOG_URL
    hpa = read_object(kube, kube.features().autoscaling, "HorizontalPodAutoscaler", NAME)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert server.current_token(NAME) == "s3cret"


def test_redeploying_an_unchanged_spec_changes_nothing(
    server: KubernetesServer, kube: KubernetesBackend
) -> None:
    server.deploy(NAME, AUTOSCALING, SECRET)
    before = _versions(kube)
    server.deploy(NAME, AUTOSCALING, SECRET)
    assert _versions(kube) == before


def test_get_shows_replicas_image_and_address_and_fixed_size_drops_the_hpa(
    server: KubernetesServer, kube: KubernetesBackend
) -> None:
    server.deploy(NAME, AUTOSCALING, SECRET)
    fixed = ServerSpec(
        image="ghcr.io/acme/features:2", scaling=AutoScalingSpec(min_replicas=2, max_replicas=2)
    )
    server.deploy(NAME, fixed, SECRET)
    assert is_absent(kube, kube.features().autoscaling, "HorizontalPodAutoscaler", NAME)
    deployment = read_object(kube, "apps/v1", "Deployment", NAME)
    status = {"observedGeneration": deployment["metadata"]["generation"], "replicas": 2}
    status |= {"updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    path = kube.path("apps/v1", "Deployment", NAME) + "/status"
    kube.request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)
    state = server.observe(NAME)
    namespace = kube.placement.namespace
    assert (state.status, state.desired, state.ready) == ("Ready", 2, 2)
    assert (state.min_replicas, state.max_replicas) == (None, None)
    assert state.image == "ghcr.io/acme/features:2"
    assert state.address == f"http://{NAME}.{namespace}.svc.cluster.local:80"
    assert state.secret == NAME


def test_a_users_secret_replaces_its_own_and_outlives_the_server(
    server: KubernetesServer, kube: KubernetesBackend
) -> None:
    _user_secret(kube, "mine", {"catalog-url": CATALOG_URL, "token": "t"})
    server.deploy(NAME, AUTOSCALING, SECRET)
    server.deploy(NAME, ServerSpec(image=IMAGE, existing_secret="mine"), None)
    assert is_absent(kube, "v1", "Secret", NAME)  # its own goes once it uses yours
    assert server.observe(NAME).secret == "mine"
    assert server.delete(NAME) == [f"Service/{NAME}", f"Deployment/{NAME}"]
    assert is_absent(kube, "apps/v1", "Deployment", NAME)
    assert not is_absent(kube, "v1", "Secret", "mine")
    with pytest.raises(NotFoundError, match=f"no feature server named '{NAME}' in namespace"):
        server.delete(NAME)


def test_delete_removes_its_own_secret(server: KubernetesServer, kube: KubernetesBackend) -> None:
    server.deploy(NAME, AUTOSCALING, SECRET)
    deleted = server.delete(NAME)
    assert f"Secret/{NAME}" in deleted
    assert all(is_absent(kube, v, kind, NAME) for v, kind in _kinds(kube))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, r"--existing-secret mine names no Secret in namespace"),
        ({"token": "t"}, r"Secret .*/mine has no key 'catalog-url'"),
    ],
    ids=["missing", "without-catalog-url"],
)
def test_an_existing_secret_must_hold_both_keys(
    server: KubernetesServer, kube: KubernetesBackend, data: dict[str, str] | None, message: str
) -> None:
    if data is not None:
        _user_secret(kube, "mine", data)
    with pytest.raises(DeployError, match=message):
        server.deploy(NAME, ServerSpec(image=IMAGE, existing_secret="mine"), None)
    assert is_absent(kube, "apps/v1", "Deployment", NAME)


def test_a_name_held_by_another_owner_is_a_conflict(
    server: KubernetesServer, kube: KubernetesBackend
) -> None:
    theirs: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "labels": {"app": "legacy"}},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "legacy"}},
    }
    kube.request("POST", kube.path("v1", "Service"), body=theirs)
    with pytest.raises(ConflictError, match=f"feature server '{NAME}': a Service named"):
        server.deploy(NAME, AUTOSCALING, SECRET)
    assert is_absent(kube, "apps/v1", "Deployment", NAME)


def test_a_group_made_from_a_laptop_is_reached_from_inside_the_cluster(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The project without its gateway: the group has only its in-cluster name.
    config = yaml.safe_load(project.config_path.read_text())
    del config["kubernetes"]["gateway"]
    project.config_path.write_text(yaml.safe_dump(config))
    project = load_project(project.config_path)
    catalog: Catalog = open_catalog(project)
    text = pa.schema([("text", pa.large_string())])
    catalog.models.register("ner", input_schema=text, output_schema=text, image="ner:1")
    spec = GroupSpec(image="ghcr.io/acme/ner:1", port=6666, model=ModelRef("ner", 1))
    create_group(project, catalog, "ner", spec, port_given=True)  # from the laptop

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # the server's pod
    (endpoint,) = catalog.resolve("model.ner").endpoints
    namespace = project.config.kubernetes.namespace
    assert endpoint.target == f"dns:///ner.{namespace}.svc.cluster.local:6666"

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")  # the laptop again
    with pytest.raises(UnreachableGroupError, match="scaling group 'ner' is reachable only"):
        catalog.resolve("model.ner")


def test_the_cli_deploys_gets_and_deletes_the_server(
    project: Project, kube: KubernetesBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--image", IMAGE, "--min-replicas", "1", "--max-replicas", "2"]
    code, out, err = run_chalk(capsys, "server", "deploy", *flags, "--catalog-url", CATALOG_URL)
    assert code == 0, err
    namespace = kube.placement.namespace
    assert f"{NAME}.{namespace}.svc.cluster.local" in out
    assert "a new token" in out
    token = KubernetesServer(kube).current_token(NAME)
    code, out, err = run_chalk(capsys, "server", "deploy", *flags, "--catalog-url", CATALOG_URL)
    assert code == 0, err
    assert "its token kept" in out
    assert KubernetesServer(kube).current_token(NAME) == token
    code, out, err = run_chalk(capsys, "server", "get", "-o", "json")
    assert code == 0, err
    document = yaml.safe_load(out)
    assert (document["image"], document["minReplicas"], document["maxReplicas"]) == (IMAGE, 1, 2)
    assert (document["desiredReplicas"], document["readyReplicas"]) == (1, 0)
    code, out, err = run_chalk(capsys, "server", "delete")
    assert code == 0, err
    assert all(is_absent(kube, v, kind, NAME) for v, kind in _kinds(kube))
    code, out, err = run_chalk(capsys, "server", "get")
    assert (code, out) == (1, "")
    assert err == (
        f"error: no feature server named '{NAME}' in namespace {namespace}: deploy one with "
        f"`chalk server deploy --image <registry image>`\n"
    )
