"""The Kubernetes backend: discovery, server-side apply, status, events and delete.

``chalk.deploy.groups`` calls it for projects with ``backend: kubernetes``. With ``logs.py``
(the pods' logs), the only module that imports the official ``kubernetes`` client; it sends
every request as plain JSON on the client's connection (one code path for built-in kinds and
the HTTPRoute custom resource).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import urllib3
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chalk.catalog.errors import ConflictError
from chalk.catalog.records import Event, Replica
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.common.errors import ConfigError
from chalk.deploy.errors import DeployError
from chalk.deploy.kubernetes.keda import KEDA_API_VERSION, SCALED_OBJECT, SCALED_OBJECTS
from chalk.deploy.kubernetes.manifests import (
    AUTOSCALING_V2,
    AUTOSCALING_V2BETA2,
    FIELD_MANAGER,
    GATEWAY_API_VERSION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    Owner,
    Placement,
    ServerFeatures,
    group_manifests,
    is_owned,
    placement_of,
    selector_labels,
)
from chalk.deploy.kubernetes.observed import event_time, group_status, pod_replica, version_number
from chalk.deploy.states import GroupStatus

__all__ = [
    "APPLIED_DIGEST",
    "APPLY_PATCH",
    "GroupState",
    "KubeError",
    "KubernetesBackend",
    "connect",
    "manifest_digest",
    "unreachable_cause",
]

APPLY_PATCH: Final = "application/apply-patch+yaml"
# The digest of the manifest an object was last applied from (``KubernetesBackend.apply_object``).
APPLIED_DIGEST: Final = "chalk.ai/applied-digest"
_EVENTS_SHOWN: Final = 20
_AUTOSCALER_KINDS: Final = frozenset({"HorizontalPodAutoscaler", SCALED_OBJECT})


class KubeError(DeployError):
    """The cluster refused or could not serve a request; ``status`` is its HTTP status (0:
    no answer)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group as the cluster shows it: counts, status with its reason, pods and events."""

    status: str
    reason: str
    desired: int
    ready: int
    available: int
    replicas: tuple[Replica, ...]
    events: tuple[Event, ...]


def connect(project: Project, env: Mapping[str, str] | None = None) -> KubernetesBackend:
    """A backend on the cluster of chalk.yaml's ``kubernetes.context`` (default: the kubeconfig's
    current context; inside a pod with no kubeconfig, the pod's service account)."""
    env = os.environ if env is None else env
    context = project.config.kubernetes.context
    kubeconfig = env.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    has_file = any(os.path.exists(path) for path in kubeconfig.split(os.pathsep) if path)
    if has_file or context is not None or not env.get("KUBERNETES_SERVICE_HOST"):
        if not has_file:
            where = " (KUBECONFIG)" if env.get("KUBECONFIG") else ""
            raise ConfigError(_no_kubeconfig(project, kubeconfig + where, context))
        try:
            api = kube_config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
            if context is None:
                _contexts, current = kube_config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
                context = str(current["name"])
        except (ConfigException, OSError, yaml.YAMLError, TypeError, AttributeError) as error:
            raise ConfigError(_bad_kubeconfig(project, kubeconfig, context, error)) from None
        cluster = f"the cluster of context {context!r}"
        return KubernetesBackend(api, placement_of(project), cluster=cluster)
    configuration = kube_client.Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as error:
        raise ConfigError(
            f"{project.config_path}: cannot use this pod's service account for the Kubernetes "
            f"API: {error}; expected a mounted service account token, or a kubeconfig "
            f"(KUBECONFIG)"
        ) from None
    return KubernetesBackend(
        kube_client.ApiClient(configuration), placement_of(project), cluster="this pod's cluster"
    )


def _no_kubeconfig(project: Project, kubeconfig: str, context: str | None) -> str:
    named = f" with context {context!r} (kubernetes.context)" if context else ""
    return (
        f"{project.config_path}: no kubeconfig at {kubeconfig} for this backend: "
        f"kubernetes project: expected one{named}; set KUBECONFIG to your cluster's kubeconfig "
        f"or write ~/.kube/config (e.g. with your cloud's get-credentials command)"
    )


def _bad_kubeconfig(
    project: Project, kubeconfig: str, context: str | None, error: Exception
) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = f"not YAML: {error.problem} at line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(error, yaml.YAMLError):
        problem = f"not YAML: {str(error).splitlines()[0]}"
    elif isinstance(error, TypeError | AttributeError):
        problem = "not a kubeconfig (expected a mapping with clusters, contexts and users)"
    else:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
    if not isinstance(error, ConfigException | OSError):
        expected = "fix the file, or point KUBECONFIG at your cluster's kubeconfig"
    elif context:
        expected = (
            f"expected a kubeconfig with context {context!r} (kubernetes.context in chalk.yaml)"
        )
    else:
        expected = (
            "expected a kubeconfig with a current-context (or set kubernetes.context in chalk.yaml)"
        )
    return f"{project.config_path}: cannot load the kubeconfig {kubeconfig}: {problem}; {expected}"


class KubernetesBackend:
    """Applies, observes and deletes scaling groups' objects in one namespace.

    Parameters
    ----------
    api
        A connected ``kubernetes.client.ApiClient``.
    placement
        The namespace, environment and gateway from chalk.yaml.
    cluster
        Which cluster, for messages: ``the cluster of context 'prod'``.
    """

    def __init__(
        self, api: kube_client.ApiClient, placement: Placement, *, cluster: str = "the cluster"
    ) -> None:
        self._api = api
        self.placement = placement
        self.cluster = cluster
        self._features: ServerFeatures | None = None
        self._served: frozenset[str] | None = None

    @property
    def api(self) -> kube_client.ApiClient:
        """The connection, for the pods' logs (``chalk.deploy.kubernetes.logs``)."""
        return self._api

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    # --- discovery

    def served(self) -> frozenset[str]:
        """Every ``group/version`` the server serves (``v1`` for the core group)."""
        if self._served is None:
            core = self._get("/api")["versions"]
            groups = self._get("/apis")["groups"]
            names = {version["groupVersion"] for g in groups for version in g["versions"]}
            self._served = frozenset({*core, *names})
        return self._served

    def features(self) -> ServerFeatures:
        """What the server supports that changes the manifests (found once per backend)."""
        if self._features is None:
            version = self._get("/version")
            features = ServerFeatures.from_discovery(
                (version_number(version["major"]), version_number(version["minor"])), self.served()
            )
            if features.keda:
                features = replace(features, keda=self._serves_scaled_objects())
            self._features = features
        return self._features

    def _serves_scaled_objects(self) -> bool:
        """Whether KEDA's group version lists the ScaledObject resource (a cluster may have
        only some of KEDA's CRDs)."""
        resources = self._get(f"/apis/{KEDA_API_VERSION}").get("resources") or []
        return any(resource.get("name") == SCALED_OBJECTS for resource in resources)

    # --- apply

    def manifests(self, name: str, spec: GroupSpec) -> list[dict[str, Any]]:
        """The group's objects for this server, carrying the Deployment's live replica count
        (an autoscaling group keeps what its autoscaler set)."""
        current = self.read_path(self.path("apps/v1", "Deployment", name))
        live = None if current is None else current.get("spec", {}).get("replicas")
        return group_manifests(name, spec, self.placement, self.features(), live_replicas=live)

    def check(self, name: str, objects: Sequence[Mapping[str, Any]]) -> None:
        """Refuse objects the server cannot take, or whose names another owner holds."""
        if self.placement.has_gateway and GATEWAY_API_VERSION not in self.served():
            raise KubeError(
                f"scaling group {name!r} needs an HTTPRoute for kubernetes.gateway, but the "
                f"cluster serves no {GATEWAY_API_VERSION}: expected the Gateway API CRDs "
                f"installed; install them, or remove kubernetes.gateway from chalk.yaml"
            )
        self.check_owned(Owner.group(name), objects)

    def check_owned(self, owner: Owner, objects: Sequence[Mapping[str, Any]]) -> None:
        """Refuse objects whose names another owner holds."""
        for obj in objects:
            current = self._read(obj)
            if current is not None:
                _require_ours(owner, obj, current)

    def apply(self, name: str, spec: GroupSpec) -> list[dict[str, Any]]:
        """Server-side apply the group's objects and remove the ones it no longer has (an HPA
        once it stops autoscaling or gets a ScaledObject, a ScaledObject once it no longer
        needs KEDA, an HTTPRoute once the gateway goes). Returns the objects as the server
        stored them. Unchanged objects are not changed.

        The Deployment, Service and HTTPRoute go first, so that a refused one leaves the old
        autoscaler in place; then the kinds the group no longer has go, before the new
        autoscaler lands, so that no two autoscalers ever drive the Deployment (KEDA's
        admission webhook refuses a ScaledObject for a Deployment another HPA scales).
        """
        objects = self.manifests(name, spec)
        self.check(name, objects)
        stored = {
            id(obj): self.apply_object(obj)
            for obj in objects
            if obj["kind"] not in _AUTOSCALER_KINDS
        }
        kept = {(obj["apiVersion"], obj["kind"]) for obj in objects}
        removed = [
            kind
            for api_version, kind in self.optional_kinds()
            if (api_version, kind) not in kept
            and self.delete_owned(Owner.group(name), api_version, kind)
        ]
        for obj in objects:
            if obj["kind"] in _AUTOSCALER_KINDS:
                stored[id(obj)] = self._apply_autoscaler(name, obj, removed)
        return [stored[id(obj)] for obj in objects]

    def _apply_autoscaler(
        self, name: str, obj: Mapping[str, Any], removed: Sequence[str]
    ) -> dict[str, Any]:
        try:
            return self.apply_object(obj)
        except KubeError as error:
            if not removed and self._read(obj) is not None:
                raise
            gone = f" (its {' and '.join(removed)} was deleted)" if removed else ""
            raise KubeError(
                f"scaling group {name!r} has no autoscaler now{gone}: its {obj['kind']} was "
                f"refused: {error}; fix the cause, then apply it again with "
                f"`chalk scaling-group update --name {name}`",
                status=error.status,
            ) from None

    # --- observe

    def observe(self, name: str, group_id: str, *, idle_seconds: int | None = None) -> GroupState:
        """Read the Deployment's status, its pods and the events about them and about its
        autoscaler (ours, or KEDA's ScaledObject and the HPA KEDA made of it).
        ``idle_seconds``: the group's idle time when its minimum is 0 (a Deployment at 0 is
        then Idle, when its ScaledObject is there to wake it); None otherwise."""
        namespace = self.placement.namespace
        deployment = self.read_path(self.path("apps/v1", "Deployment", name))
        if deployment is None:
            return GroupState(
                status=GroupStatus.FAILED.value,
                reason=(
                    f"its Deployment {namespace}/{name} is gone: apply it again with "
                    f"`chalk scaling-group update --name {name}`"
                ),
                desired=0,
                ready=0,
                available=0,
                replicas=(),
                events=(),
            )
        selector = ",".join(f"{k}={v}" for k, v in selector_labels(name).items())
        replica_sets = self._list("apps/v1", "ReplicaSet", selector)
        pods = self._list("v1", "Pod", selector)
        revisions = {
            rs["metadata"]["name"]: version_number(
                rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", 0)
            )
            for rs in replica_sets
        }
        replicas = tuple(pod_replica(group_id, pod, revisions) for pod in pods)
        involved = {
            ("Deployment", name),
            ("HorizontalPodAutoscaler", name),
            (SCALED_OBJECT, name),
            ("HorizontalPodAutoscaler", f"keda-hpa-{name}"),
        }
        involved |= {("ReplicaSet", rs["metadata"]["name"]) for rs in replica_sets}
        involved |= {("Pod", pod["metadata"]["name"]) for pod in pods}
        events = self._events(group_id, involved)
        at_zero = idle_seconds is not None and int(deployment["spec"].get("replicas", 0)) == 0
        scaled_object = at_zero and self._scaled_object(name) is not None
        status, reason = group_status(
            deployment, pods, events, idle_seconds=idle_seconds, scaled_object=scaled_object
        )
        reason = reason.replace("--name <group>", f"--name {name}")
        counts = deployment.get("status") or {}
        return GroupState(
            status=status.value,
            reason=reason,
            desired=int(deployment["spec"].get("replicas", 0)),
            ready=int(counts.get("readyReplicas") or 0),
            available=int(counts.get("availableReplicas") or 0),
            replicas=replicas,
            events=tuple(events[-_EVENTS_SHOWN:]),
        )

    def _scaled_object(self, name: str) -> dict[str, Any] | None:
        """The group's ScaledObject; None where it or KEDA is missing."""
        if not self.features().keda:
            return None
        return self.read_path(self.path(KEDA_API_VERSION, SCALED_OBJECT, name))

    # --- delete

    def delete(self, name: str) -> list[str]:
        """Delete every object of the group; returns ``Kind/name`` of those deleted."""
        deleted = []
        for api_version, kind in (
            *self.optional_kinds(),
            ("v1", "Service"),
            ("apps/v1", "Deployment"),
        ):
            if self.delete_owned(Owner.group(name), api_version, kind):
                deleted.append(f"{kind}/{name}")
        return deleted

    def path(self, api_version: str, kind: str, name: str | None = None) -> str:
        """The API path of the object ``kind``/``name`` in the backend's namespace, or of
        the collection of ``kind`` without a name."""
        collection = _collection(api_version, kind, self.placement.namespace)
        return collection if name is None else f"{collection}/{name}"

    # --- requests

    def optional_kinds(self) -> list[tuple[str, str]]:
        """The kinds an object may come and go with its spec: the autoscaler this server
        serves, KEDA's ScaledObject where KEDA is served, and the HTTPRoute where the Gateway
        API is served."""
        kinds = []
        features = self.features()
        if features.autoscaling in (AUTOSCALING_V2, AUTOSCALING_V2BETA2):
            kinds.append((features.autoscaling, "HorizontalPodAutoscaler"))
        if features.keda:
            kinds.append((KEDA_API_VERSION, SCALED_OBJECT))
        if GATEWAY_API_VERSION in self.served():
            kinds.append((GATEWAY_API_VERSION, "HTTPRoute"))
        return kinds

    def delete_owned(self, owner: Owner, api_version: str, kind: str) -> bool:
        """Delete ``kind``/``owner.name`` when it exists and is ``owner``'s (refused when it is
        another's); whether it was deleted."""
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": owner.name}}
        current = self._read(obj)
        if current is None:
            return False
        _require_ours(owner, obj, current)
        # Background: the garbage collector removes ReplicaSets and pods after the Deployment.
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self.request("DELETE", self._path(obj), body=body)
        except KubeError as error:
            if error.status != 404:
                raise
            return False
        return True

    def apply_object(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` as the field manager ``scalegroup``; the stored object.

        An object whose last apply was this same manifest (its ``APPLIED_DIGEST`` annotation)
        and whose live fields still hold every value of it is not sent again: API servers
        write some no-op applies all the same (a custom resource's, when the apply lands in a
        new second: kubernetes#95460, #121404), which moves its resourceVersion and wakes
        every watcher for nothing. A manifest that dropped a field has a new digest, so the
        apply that removes the field is sent.
        """
        digest = manifest_digest(obj)
        live = self._read(obj)
        if live is not None and _applied_unchanged(live, obj, digest):
            return live
        body = dict(obj)
        metadata = dict(body.get("metadata") or {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}), APPLIED_DIGEST: digest}
        body["metadata"] = metadata
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        stored = self.request(
            "PATCH", self._path(obj), query=query, body=body, content_type=APPLY_PATCH
        )
        return dict(stored)

    def _read(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.read_path(self._path(obj))

    def read_path(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``; None when the server answers 404."""
        try:
            return dict(self._get(path))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def _list(self, api_version: str, kind: str, selector: str) -> list[dict[str, Any]]:
        path = _collection(api_version, kind, self.placement.namespace)
        reply = self.request("GET", path, query=[("labelSelector", selector)])
        return list(reply.get("items") or [])

    def _events(self, group_id: str, involved: set[tuple[str, str]]) -> list[Event]:
        path = _collection("v1", "Event", self.placement.namespace)
        items = self.request("GET", path).get("items") or []
        events = []
        for item in items:
            about = item.get("involvedObject") or {}
            key = (about.get("kind", ""), about.get("name", ""))
            if key not in involved:
                continue
            prefix = "" if key[0] == "Deployment" else f"{key[0].lower()}/{key[1]}: "
            events.append(
                Event(
                    group_id=group_id,
                    time=event_time(item),
                    type=item.get("type") or "Normal",
                    reason=item.get("reason") or "",
                    message=prefix + (item.get("message") or "").strip(),
                )
            )
        events.sort(key=lambda event: event.time)
        return events

    def _path(self, obj: Mapping[str, Any]) -> str:
        return self.path(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])

    def _get(self, path: str) -> Any:
        return self.request("GET", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request on the backend's connection: ``body`` sent as JSON, the reply's JSON
        returned. A refusal is a ``KubeError`` carrying the HTTP status and the server's
        message."""
        serialized = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        method_, url, headers, payload, _post = serialized
        host = self._api.configuration.host
        try:
            response = self._api.call_api(method_, url, header_params=headers, body=payload)
            data = response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeError(
                f"cannot reach the Kubernetes API server at {host}: {unreachable_cause(error)}",
                status=0,
            ) from None
        except ApiException as error:
            raise KubeError(
                f"the Kubernetes API server at {host}: {error.reason}", status=0
            ) from None
        if not 200 <= response.status <= 299:
            raise KubeError(
                _api_message(method, path, response.status, data), status=response.status
            )
        return json.loads(data) if data else {}


def unreachable_cause(error: Exception) -> str:
    """Why a request got no answer, in a few words (connection refused, timed out, a name not
    found), instead of urllib3's nested retry report."""
    reason: BaseException = error
    while isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return f"DNS cannot resolve the host {reason.conn.host!r}"
    if isinstance(reason, urllib3.exceptions.SSLError):
        return f"TLS failed: {_last_line(reason)}"
    text = _last_line(reason)
    for marker, cause in _CAUSES:
        if marker in text:
            return cause
    # urllib3's NewConnectionError is a ConnectTimeoutError too: its text was read first.
    if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        return "no answer in time (read timed out)"
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError | TimeoutError):
        return "connection timed out"
    return text


_CAUSES: Final = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "DNS cannot resolve the host"),
    ("nodename nor servname", "DNS cannot resolve the host"),
    ("Temporary failure in name resolution", "DNS cannot resolve the host"),
    ("timed out", "connection timed out"),
    ("No route to host", "no route to host"),
    ("Connection reset", "connection reset"),
)


def _last_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _api_message(method: str, path: str, status: int, data: bytes) -> str:
    try:
        message = str(json.loads(data).get("message") or "")
    except (ValueError, AttributeError):
        message = data.decode("utf-8", "replace")[:500]
    missing = _MISSING_NAMESPACE.fullmatch(message) if status == 404 else None
    if missing is not None:
        namespace = missing.group(1)
        return (
            f"namespace {namespace!r} does not exist in the cluster: expected "
            f"kubernetes.namespace in chalk.yaml to name an existing namespace; create it "
            f"(`kubectl create namespace {namespace}`) or change kubernetes.namespace"
        )
    return f"the Kubernetes API server refused {method} {path} ({status}): {message}"


# The API server's words for a request into a namespace that does not exist.
_MISSING_NAMESPACE: Final = re.compile(r'namespaces "([a-z0-9-]+)" not found')


def _collection(api_version: str, kind: str, namespace: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    # Every kind the backend touches has the regular plural.
    return f"{prefix}/namespaces/{namespace}/{kind.lower()}s"


def _require_ours(owner: Owner, obj: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    name = owner.name
    if is_owned(owner, current):
        return
    metadata = current.get("metadata") or {}
    managers = sorted({entry.get("manager", "?") for entry in metadata.get("managedFields") or []})
    by = f" (written by {', '.join(managers)})" if managers else ""
    where = f"{metadata.get('namespace', '')}/{metadata.get('name', name)}"
    raise ConflictError(
        f"{owner}: a {obj['kind']} named {where} already exists and is not managed by "
        f"scalegroup{by}: expected no object of that name, or one labelled "
        f"{MANAGED_BY_LABEL}={MANAGED_BY} and {owner.label}={name}; choose another "
        f"{owner.noun.rsplit(' ', 1)[-1]} name or remove that {obj['kind']}"
    )


def manifest_digest(obj: Mapping[str, Any]) -> str:
    """A digest of the manifest ``obj`` as we apply it (key order does not count).

    Examples
    --------
    >>> manifest_digest({"a": 1, "b": [2]}) == manifest_digest({"b": [2], "a": 1})
    True
    """
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _applied_unchanged(live: Mapping[str, Any], obj: Mapping[str, Any], digest: str) -> bool:
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return annotations.get(APPLIED_DIGEST) == digest and _holds(live, obj)


def _holds(live: Any, wanted: Any) -> bool:
    """Whether ``live`` has every value of ``wanted``: mappings may have more keys (the
    server's defaults, other managers' fields), lists hold item by item, the rest is equal.

    Examples
    --------
    >>> _holds({"spec": {"replicas": 2, "paused": False}}, {"spec": {"replicas": 2}})
    True
    >>> _holds({"spec": {"replicas": 3}}, {"spec": {"replicas": 2}})
    False
    >>> _holds({"ports": [{"port": 1, "protocol": "TCP"}]}, {"ports": [{"port": 1}, {"port": 2}]})
    False
    """
    if isinstance(wanted, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and _holds(live[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(live) == len(wanted)
            and all(_holds(have, want) for have, want in zip(live, wanted, strict=True))
        )
    return bool(live == wanted)
