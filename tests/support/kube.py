"""A real Kubernetes API server for the Kubernetes backend's tests: ours, or the user's cluster.

``tests/deploy/kubernetes/conftest.py`` enters ``open_cluster()`` once per session. By default
it starts etcd and a kube-apiserver 1.20 (built by ``scripts/kube_apiserver.sh`` when missing)
on 127.0.0.1; with ``$SCALEGROUP_TEST_KUBECONFIG`` set it uses that cluster instead. Each test
then works in its own namespace from ``create_namespace``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

__all__ = [
    "CONTEXT_ENV",
    "HTTPROUTE_CRD",
    "KEDA_CRD",
    "KUBECONFIG_ENV",
    "REQUIRE_ENV",
    "KubeCluster",
    "KubeUnavailableError",
    "create_namespace",
    "delete_namespace",
    "find_apiserver",
    "open_cluster",
    "own_cluster",
    "strip_empty_defaults",
]

KUBECONFIG_ENV: Final = "SCALEGROUP_TEST_KUBECONFIG"
CONTEXT_ENV: Final = "SCALEGROUP_TEST_KUBE_CONTEXT"
REQUIRE_ENV: Final = "SCALEGROUP_REQUIRE_KUBE"
HTTPROUTE_CRD: Final = Path(__file__).parents[1] / "data" / "k8s" / "gateway-api-httproute-crd.yaml"
KEDA_CRD: Final = Path(__file__).parents[1] / "data" / "k8s" / "keda-scaledobject-crd.yaml"
BUILD_SCRIPT: Final = Path(__file__).parents[2] / "scripts" / "kube_apiserver.sh"
_HOST: Final = "127.0.0.1"
_CONTEXT: Final = "scalegroup-test"
_USER: Final = "scalegroup-test-admin"
_SERVICE_CIDR: Final = "10.96.0.0/12"
# The machine running the tests may be busy: the first start of a cold server takes ~20 s there.
_START_TIMEOUT_S: Final = 180.0
_BUILD_TIMEOUT_S: Final = 3600.0
_STOP_TIMEOUT_S: Final = 15.0
# Admission plugins on by default in 1.20 that need a controller we do not run, or add nothing
# here: ServiceAccount, for one, refuses every Pod until a token controller makes a secret.
_DISABLED_ADMISSION: Final = (
    "ServiceAccount",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "ResourceQuota",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "LimitRanger",
    "TaintNodesByCondition",
)


class KubeUnavailableError(Exception):
    """No API server for the tests; the message says why and what to do."""


@dataclass(frozen=True)
class KubeCluster:
    """An API server the tests may use, through a kubeconfig file and one of its contexts.

    ``runs_controllers`` is False for our own kube-apiserver: nothing there turns a Deployment
    into Pods or fills in its status, so tests write the status themselves.
    """

    kubeconfig: Path
    context: str
    runs_controllers: bool

    def api_client(self) -> client.ApiClient:
        """A new ``kubernetes.client.ApiClient`` for this cluster; close it when done."""
        return config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)


@contextmanager
def open_cluster() -> Iterator[KubeCluster]:
    """The cluster for a test session: ``$SCALEGROUP_TEST_KUBECONFIG``'s, else our own.

    Raises ``KubeUnavailableError`` when there is none.
    """
    given = os.environ.get(KUBECONFIG_ENV)
    if given:
        with _external_cluster(Path(given), os.environ.get(CONTEXT_ENV)) as cluster:
            yield cluster
        return
    with own_cluster(find_apiserver(), _find_etcd()) as cluster:
        yield cluster


@contextmanager
def own_cluster(apiserver: Path, etcd: Path) -> Iterator[KubeCluster]:
    """etcd and kube-apiserver on free ports of 127.0.0.1, with the HTTPRoute and KEDA's
    ScaledObject CRDs installed.

    Everything lives in a temporary directory (certificates, etcd's data, logs, the
    kubeconfig); both processes are stopped and the directory removed on the way out.
    """
    base = Path(tempfile.mkdtemp(prefix="scalegroup-kube-"))
    try:
        with ExitStack() as processes:
            token = secrets.token_hex(16)
            _write_credentials(base, token)
            etcd_url = processes.enter_context(_running_etcd(etcd, base))
            server_url = processes.enter_context(
                _running_apiserver(apiserver, base, etcd_url=etcd_url)
            )
            cluster = KubeCluster(
                kubeconfig=_write_kubeconfig(base, server_url, token),
                context=_CONTEXT,
                runs_controllers=False,
            )
            _install_crds(cluster)
            yield cluster
    finally:
        shutil.rmtree(base, ignore_errors=True)


def find_apiserver() -> Path:
    """The cached kube-apiserver binary, built by ``scripts/kube_apiserver.sh`` when missing."""
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KubeUnavailableError(f"running {BUILD_SCRIPT} failed: {error}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        raise KubeUnavailableError(
            f"no kube-apiserver for the Kubernetes tests: {BUILD_SCRIPT} failed (exit code "
            f"{done.returncode}):\n{_tail(done.stderr)}\nexpected it to print the path of the "
            f"binary it built; or set {KUBECONFIG_ENV} to the kubeconfig of a cluster to test on"
        )
    return Path(lines[-1])


def create_namespace(api_client: client.ApiClient, prefix: str = "sg-test") -> str:
    """Create a namespace with a name no one else uses; its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    client.CoreV1Api(api_client).create_namespace(body=body)
    return name


def delete_namespace(api_client: client.ApiClient, name: str) -> None:
    """Delete the namespace ``name`` and all in it; without waiting, and gone already is fine.

    Our own server runs no namespace controller, so there the namespace stays Terminating with
    its objects until the server stops; its name is never used again.
    """
    try:
        client.CoreV1Api(api_client).delete_namespace(
            name=name, propagation_policy="Background", _preload_content=False
        )
    except ApiException as error:
        if error.status != 404:
            raise


def strip_empty_defaults(schema: Any) -> Any:
    """``schema`` without any ``default: ""``: API servers before 1.25 reject them with 422."""
    if isinstance(schema, dict):
        return {
            key: strip_empty_defaults(value)
            for key, value in schema.items()
            if not (key == "default" and value == "")
        }
    if isinstance(schema, list):
        return [strip_empty_defaults(item) for item in schema]
    return schema


@contextmanager
def _external_cluster(kubeconfig: Path, context: str | None) -> Iterator[KubeCluster]:
    if not kubeconfig.is_file():
        raise KubeUnavailableError(
            f"{KUBECONFIG_ENV}={kubeconfig} names no file: expected a kubeconfig, e.g. "
            f"~/.kube/config"
        )
    names, current = _contexts(kubeconfig)
    chosen = context or current
    if chosen is None:
        raise KubeUnavailableError(
            f"the kubeconfig {kubeconfig} has no current-context: expected "
            f"{CONTEXT_ENV} to name one of {', '.join(names) or '(none)'}"
        )
    if chosen not in names:
        raise KubeUnavailableError(
            f"the kubeconfig {kubeconfig} has no context {chosen!r}: expected one of "
            f"{', '.join(names)}; set {CONTEXT_ENV} to one of them"
        )
    cluster = KubeCluster(kubeconfig=kubeconfig, context=chosen, runs_controllers=True)
    try:
        _install_crds(cluster)
    except (ApiException, config.ConfigException, urllib3.exceptions.HTTPError, OSError) as error:
        raise KubeUnavailableError(
            f"cannot use the cluster of context {chosen!r} in {kubeconfig}: {error}"
        ) from None
    yield cluster


def _contexts(kubeconfig: Path) -> tuple[list[str], str | None]:
    """The context names in ``kubeconfig``, and its current-context if it has one."""
    try:
        document = yaml.safe_load(kubeconfig.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise KubeUnavailableError(f"cannot read the kubeconfig {kubeconfig}: {error}") from None
    if not isinstance(document, dict):
        raise KubeUnavailableError(
            f"the kubeconfig {kubeconfig} is not a kubeconfig: expected a YAML mapping with "
            f"clusters, users and contexts"
        )
    names = [entry.get("name", "") for entry in document.get("contexts") or []]
    return names, document.get("current-context") or None


def _find_etcd() -> Path:
    found = shutil.which("etcd")
    if found is None:
        raise KubeUnavailableError(
            "no etcd for the Kubernetes tests: expected etcd on PATH; install Debian's "
            f"etcd-server package (bash {BUILD_SCRIPT} does so when run as root)"
        )
    return Path(found)


def _write_credentials(base: Path, token: str) -> None:
    """A CA, the server's certificate, the service-account key pair and the token file."""
    host_extensions = base / "server.ext"
    host_extensions.write_text(
        f"subjectAltName=IP:{_HOST},DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    steps = [
        "req -x509 -newkey rsa:2048 -nodes -days 7 -keyout ca.key -out ca.crt"
        " -subj /CN=scalegroup-test-ca -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign",
        "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=kube-apiserver",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7"
        f" -out server.crt -extfile {host_extensions.name}",
        "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key",
        "pkey -in sa.key -pubout -out sa.pub",
    ]
    openssl = shutil.which("openssl")
    if openssl is None:
        raise KubeUnavailableError(
            "no openssl to make the test API server's certificates: install Debian's openssl "
            "package"
        )
    for step in steps:
        done = subprocess.run(
            [openssl, *step.split()], cwd=base, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise KubeUnavailableError(
                f"openssl {step} failed (exit code {done.returncode}): {done.stderr}"
            )
    (base / "tokens.csv").write_text(f'{token},{_USER},{_USER},"system:masters"\n')


@contextmanager
def _running_etcd(etcd: Path, base: Path) -> Iterator[str]:
    """etcd serving its clients on a free port; yields its URL."""
    client_url = f"http://{_HOST}:{_free_port()}"
    peer_url = f"http://{_HOST}:{_free_port()}"
    argv = [
        str(etcd),
        "--name=scalegroup-test",
        f"--data-dir={base / 'etcd'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=scalegroup-test={peer_url}",
        "--logger=zap",
        "--log-level=warn",
    ]
    with _process(argv, base / "etcd.log") as process:
        _wait_until(
            lambda: _http_ok(f"{client_url}/health"),
            process,
            base / "etcd.log",
            doing=f"starting etcd on {client_url}",
        )
        yield client_url


@contextmanager
def _running_apiserver(apiserver: Path, base: Path, *, etcd_url: str) -> Iterator[str]:
    """kube-apiserver on a free secure port, backed by etcd at ``etcd_url``; yields its URL."""
    port = _free_port()
    server_url = f"https://{_HOST}:{port}"
    argv = [
        str(apiserver),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={_HOST}",
        f"--advertise-address={_HOST}",
        f"--secure-port={port}",
        # 1.20 also serves plain HTTP on 127.0.0.1:8080 unless told not to.
        "--insecure-port=0",
        f"--cert-dir={base}",
        f"--tls-cert-file={base / 'server.crt'}",
        f"--tls-private-key-file={base / 'server.key'}",
        f"--client-ca-file={base / 'ca.crt'}",
        f"--token-auth-file={base / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={base / 'sa.pub'}",
        f"--service-account-signing-key-file={base / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={_SERVICE_CIDR}",
        "--enable-admission-plugins=NamespaceLifecycle",
        f"--disable-admission-plugins={','.join(_DISABLED_ADMISSION)}",
        "--profiling=false",
        "--logtostderr=true",
        "--v=0",
    ]
    context = ssl.create_default_context(cafile=str(base / "ca.crt"))
    log = base / "kube-apiserver.log"
    with _process(argv, log) as process:
        _wait_until(
            lambda: _http_ok(f"{server_url}/readyz", context),
            process,
            log,
            doing=f"starting kube-apiserver on {server_url}",
        )
        yield server_url


def _write_kubeconfig(base: Path, server_url: str, token: str) -> Path:
    path = base / "kubeconfig"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": _CONTEXT,
                "cluster": {
                    "server": server_url,
                    "certificate-authority": str(base / "ca.crt"),
                },
            }
        ],
        "users": [{"name": _USER, "user": {"token": token}}],
        "contexts": [{"name": _CONTEXT, "context": {"cluster": _CONTEXT, "user": _USER}}],
        "current-context": _CONTEXT,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def _install_crds(cluster: KubeCluster) -> None:
    """The CRDs our groups' objects need: the Gateway API's HTTPRoute, KEDA's ScaledObject."""
    _install_crd(cluster, HTTPROUTE_CRD)
    _install_crd(cluster, KEDA_CRD)


def _install_crd(cluster: KubeCluster, path: Path) -> None:
    """Create the CRD at ``path`` unless the cluster has it, and wait until it is Established."""
    crd = yaml.safe_load(path.read_text())
    name = crd["metadata"]["name"]
    with cluster.api_client() as api_client:
        extensions = client.ApiextensionsV1Api(api_client)
        version = client.VersionApi(api_client).get_code()
        if (int(version.major), _minor(version.minor)) < (1, 25):
            crd = strip_empty_defaults(crd)
        try:
            extensions.create_custom_resource_definition(body=crd)
        except ApiException as error:
            # A cluster of the user's may have the Gateway API or KEDA already: leave theirs.
            if error.status != 409:
                raise
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _established(extensions.read_custom_resource_definition(name=name)):
            if time.monotonic() > deadline:
                raise KubeUnavailableError(
                    f"the CRD {name} did not become Established within {_START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.1)
        _wait_for_openapi(api_client, crd, deadline)


def _wait_for_openapi(api_client: client.ApiClient, crd: dict[str, Any], deadline: float) -> None:
    """Wait until the server publishes the CRD's schema in /openapi/v2.

    Until then server-side apply treats the custom objects as schemaless, and an apply made in
    that window is re-recorded (a new resourceVersion) by the same apply made after it.
    """
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    # /openapi/v2 names definitions by the reversed group: io.k8s.networking.gateway.v1.HTTPRoute
    wanted = {
        ".".join([*reversed(group.split(".")), version["name"], kind])
        for version in crd["spec"]["versions"]
        if version.get("served", True)
    }
    while True:
        method, url, headers, body, _post = api_client.param_serialize(
            method="GET",
            resource_path="/openapi/v2",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = api_client.call_api(method, url, header_params=headers, body=body)
        definitions = json.loads(response.read()).get("definitions", {})
        if wanted <= definitions.keys():
            return
        if time.monotonic() > deadline:
            raise KubeUnavailableError(
                f"the server did not publish the schema of {sorted(wanted)} within "
                f"{_START_TIMEOUT_S:.0f} s"
            )
        time.sleep(0.2)


def _established(crd: client.V1CustomResourceDefinition) -> bool:
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _minor(text: str) -> int:
    """25 for "25", and for the "25+" that some managed clusters report."""
    digits = "".join(character for character in text if character.isdigit())
    return int(digits or 0)


@contextmanager
def _process(argv: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with its output in ``log``; terminate it (then kill it) on the way out."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        # Should the test process die without cleaning up, Linux sends the server SIGTERM.
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    log: Path,
    *,
    doing: str,
) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            raise KubeUnavailableError(
                f"{doing} failed: it exited with code {process.returncode}; "
                f"the end of its log:\n{_tail(log.read_text(errors='replace'))}"
            )
        if time.monotonic() > deadline:
            raise KubeUnavailableError(
                f"{doing} failed: not ready within {_START_TIMEOUT_S:.0f} s; "
                f"the end of its log:\n{_tail(log.read_text(errors='replace'))}"
            )
        time.sleep(0.2)


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
