"""Discovery of KEDA and the refusals where it or Prometheus is missing: kmock's emulator
(``tests/support/kube_fake.py``) serving KEDA's ScaledObject or not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalk.catalog import Catalog
from chalk.catalog.errors import ValidationError
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.deploy.groups import create_group, update_group
from chalk.deploy.kubernetes.backend import KubernetesBackend
from tests.deploy.kubernetes.helpers import is_absent, kube_project, read_object, scaling_group
from tests.support.kube_fake import FakeKube, fake_kube

IMAGE = "ghcr.io/acme/ner:1"
PROMETHEUS = "http://prometheus.monitoring:9090"
KEDA = ("keda.sh/v1alpha1", "ScaledObject")
ZERO = AutoScalingSpec(min_replicas=0, max_replicas=3)
NO_KEDA = "the cluster of context 'kmock' serves no KEDA ScaledObject (keda.sh/v1alpha1)"


@pytest.fixture
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeKube]:
    keda = bool(getattr(request, "param", False))
    with fake_kube(tmp_path, keda=keda) as server:
        yield server


def _project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeKube, url: str | None
) -> Project:
    return kube_project(
        tmp_path, monkeypatch, fake.kubeconfig, fake.context, "ml", prometheus_url=url
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeKube) -> Project:
    return _project(tmp_path, monkeypatch, fake, PROMETHEUS)


def test_discovery_without_keda_says_so(kube: KubernetesBackend) -> None:
    assert not kube.features().keda
    assert KEDA not in kube.optional_kinds()


@pytest.mark.parametrize("fake", [True], indirect=True, ids=["keda"])
def test_discovery_with_keda_finds_the_scaled_object(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    assert kube.features().keda
    assert KEDA in kube.optional_kinds()
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=ZERO), port_given=False)
    assert read_object(kube, *KEDA)["spec"]["minReplicaCount"] == 0
    assert is_absent(kube, "autoscaling/v2", "HorizontalPodAutoscaler")


@pytest.mark.parametrize(
    "scaling",
    [ZERO, AutoScalingSpec(max_replicas=3, queue_depth_target=4)],
    ids=["min-zero", "queue-depth"],
)
def test_what_needs_keda_is_refused_before_anything_is_stored_or_applied(
    project: Project, catalog: Catalog, kube: KubernetesBackend, scaling: AutoScalingSpec
) -> None:
    with pytest.raises(
        ValidationError, match=rf"scaling group 'ner' .*, and {re.escape(NO_KEDA)}: expected"
    ):
        create_group(
            project, catalog, "ner", GroupSpec(image=IMAGE, scaling=scaling), port_given=False
        )
    assert catalog.groups.find("ner") is None
    assert is_absent(kube, "apps/v1", "Deployment")

    create_group(project, catalog, "ner", GroupSpec(image=IMAGE), port_given=False)
    before = read_object(kube, "apps/v1", "Deployment")["metadata"]["resourceVersion"]
    with pytest.raises(ValidationError, match=re.escape(NO_KEDA)):
        update_group(project, catalog, "ner", {"scaling": scaling})
    assert GroupSpec.from_dict(catalog.groups.get("ner").spec).scaling == AutoScalingSpec()
    assert read_object(kube, "apps/v1", "Deployment")["metadata"]["resourceVersion"] == before


@pytest.mark.parametrize(
    ("fake", "url", "named", "unnamed"),
    [
        (True, None, "names no Prometheus server", "serves no KEDA"),
        (False, PROMETHEUS, "serves no KEDA", "names no Prometheus server"),
        (False, None, "serves no KEDA ScaledObject (keda.sh/v1alpha1) and ", "no KEDA and no"),
    ],
    indirect=["fake"],
    ids=["keda-no-url", "url-no-keda", "neither"],
)
def test_the_cli_refusal_names_what_is_missing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeKube,
    url: str | None,
    named: str,
    unnamed: str,
) -> None:
    project = _project(tmp_path, monkeypatch, fake, url)
    args = ("--min-replicas", "0", "--max-replicas", "3")
    result = scaling_group(project.root, "create", "--name", "ner", "--image", IMAGE, *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "scaling group 'ner' scales to zero (min_replicas=0)" in result.stderr
    assert named in result.stderr
    assert unnamed not in result.stderr
    if url is None:
        assert f"kubernetes.prometheus_url in {project.config_path}" in result.stderr
