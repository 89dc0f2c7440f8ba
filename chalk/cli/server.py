"""``chalk server deploy|get|delete``: the feature server (``chalk serve``) on the project's
Kubernetes cluster, beside its scaling groups.

Flags are read and checked here, before any cluster is asked; ``chalk.deploy.kubernetes.server``
builds and applies the objects.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from chalk.cli.output import add_output_flag, emit, emit_as_given
from chalk.cli.spec_flags import add_scaling_flags

# The deployers, the catalog's types and the kubernetes client are imported where a command
# uses them, so that `chalk server --help` loads none of them (see chalk.cli's docstring).
if TYPE_CHECKING:
    from collections.abc import Iterator

    from chalk.common.config import Project
    from chalk.deploy.kubernetes.server import KubernetesServer, ServerSpec

__all__ = ["register"]

_DEFAULT_NAME: Final = "chalk-server"  # chalk.deploy.kubernetes.server.DEFAULT_SERVER_NAME
_DIGEST: Final = re.compile(r"@sha256:[0-9a-f]{64}$")
_HIDDEN: Final = "<hidden>"
_TOKEN_BYTES: Final = 32


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chalk server`` and its subcommands to the ``chalk`` command."""
    parser = subparsers.add_parser(
        "server",
        help="run the feature server on Kubernetes: deploy, inspect and delete it",
        description="The feature server (chalk serve) as a Deployment, a Service and an "
        "autoscaler in the project's Kubernetes namespace. Exit codes: 0 done, 1 a value was "
        "not valid or the command failed, 2 the command line could not be read.",
    )
    commands = parser.add_subparsers(dest="server_command", metavar="COMMAND", required=True)

    deploy = commands.add_parser(
        "deploy",
        help="apply the feature server's objects (create or update)",
        description="Apply a Deployment running `chalk serve` on 0.0.0.0 with a token "
        "required, a Service, and an autoscaler when --max-replicas is above --min-replicas. "
        "The image must hold the project (its WORKDIR has chalk.yaml) and scalegroup[server]. "
        "The catalog URL and the token come from a Secret: the command writes one named like "
        "the server (the token from --token-file, else the current one, else a new random "
        "one), or uses the Secret --existing-secret names, which must hold the keys "
        "'catalog-url' and 'token'. Each deploy states the whole spec: flags not given take "
        "their defaults.",
    )
    _add_name(deploy)
    deploy.add_argument(
        "--image",
        required=True,
        help="the image the cluster pulls, e.g. ghcr.io/acme/features:1",
    )
    add_scaling_flags(deploy)
    deploy.add_argument(
        "--workers", type=int, default=1, help="server processes per replica (default 1)"
    )
    deploy.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="chalk serve's --deadline in the cluster: one request's time (default 30)",
    )
    deploy.add_argument(
        "--hold-timeout",
        type=float,
        metavar="SECONDS",
        help="chalk serve's --hold-timeout in the cluster: how long a model call waits for a "
        "group at zero to wake (KEDA's poll, Prometheus' scrape, the pod's start), at most "
        "--deadline (default 60)",
    )
    deploy.add_argument(
        "--catalog-url",
        help="the catalog's database URL the server reads, reachable from the cluster "
        "(default: CHALK_CATALOG_URL, else catalog_url in chalk.yaml); kept in the Secret",
    )
    deploy.add_argument(
        "--token-file",
        type=Path,
        help="a file holding the bearer token clients must send (default: keep the current "
        "one, or make a new random one); kept in the Secret",
    )
    deploy.add_argument(
        "--existing-secret",
        metavar="NAME",
        help="read the catalog URL and token from this Secret of yours (keys 'catalog-url' "
        "and 'token') instead of writing one; not with --catalog-url or --token-file",
    )
    deploy.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print the objects to apply (YAML, or a List with -o "
        "json), the Secret's values hidden; ask no cluster and apply nothing",
    )
    add_output_flag(deploy)
    deploy.set_defaults(run=_deploy)

    get = commands.add_parser(
        "get", help="show the feature server: status, replicas, image and address"
    )
    _add_name(get)
    add_output_flag(get)
    get.set_defaults(run=_get)

    delete = commands.add_parser(
        "delete",
        help="delete the feature server",
        description="Delete the feature server's Deployment, Service and autoscaler, and the "
        "Secret the command wrote (a Secret named by --existing-secret stays).",
    )
    _add_name(delete)
    add_output_flag(delete)
    delete.set_defaults(run=_delete)


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        default=_DEFAULT_NAME,
        help=f"the server's name, used for each of its objects (default {_DEFAULT_NAME})",
    )


def _project(name: str) -> Project:
    """The project, checked to run on Kubernetes, and ``name`` checked as an object name."""
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.common.errors import ConfigError, ValidationError  # noqa: PLC0415
    from chalk.common.names import is_dns_label  # noqa: PLC0415

    if not is_dns_label(name) or not name[0].isalpha():
        raise ValidationError(
            f"--name {name!r} is not valid: expected a DNS-1035 label (lowercase letters, "
            f"digits and '-', starting with a letter, at most 63), e.g. {_DEFAULT_NAME}"
        )
    project = find_project()
    if project.config.backend != "kubernetes":
        raise ConfigError(
            f"{project.config_path}: chalk server runs the feature server on Kubernetes, "
            f"beside the project's scaling groups: expected 'backend: kubernetes', got "
            f"{project.config.backend!r}; on this machine run `chalk serve` instead"
        )
    return project


@contextlib.contextmanager
def _connected(project: Project) -> Iterator[KubernetesServer]:
    """The project's feature servers, on a connection closed after the block."""
    from chalk.deploy.kubernetes.backend import connect  # noqa: PLC0415
    from chalk.deploy.kubernetes.server import KubernetesServer  # noqa: PLC0415

    backend = connect(project)
    try:
        yield KubernetesServer(backend)
    finally:
        backend.close()


def _server_spec(args: argparse.Namespace) -> ServerSpec:
    """The spec the flags describe, each checked, errors naming their flag."""
    from chalk.catalog.resources import ScalingGroupResourceRequest  # noqa: PLC0415
    from chalk.cli.spec_flags import read_resource_flags, read_scaling_flags  # noqa: PLC0415
    from chalk.common.errors import ValidationError  # noqa: PLC0415
    from chalk.common.names import is_dns_name  # noqa: PLC0415
    from chalk.deploy.kubernetes.server import ServerSpec  # noqa: PLC0415
    from chalk.deploy.local.image_tags import check_tag  # noqa: PLC0415

    image = args.image.strip()
    try:
        check_tag(_DIGEST.sub("", image))
    except ValidationError:
        raise ValidationError(
            f"--image {image!r} is not an image reference: expected "
            f"[registry/]name[:tag][@sha256:digest] with a lowercase name, e.g. "
            f"ghcr.io/acme/features:1"
        ) from None
    if args.existing_secret is not None:
        if not is_dns_name(args.existing_secret):
            raise ValidationError(
                f"--existing-secret {args.existing_secret!r} is not a Secret name: expected a "
                f"DNS name such as features-secrets"
            )
        given = [flag for flag in ("catalog_url", "token_file") if getattr(args, flag) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ValidationError(
                f"--existing-secret and {flag} both say where the server's secrets come "
                f"from: expected one of them; put the value into Secret {args.existing_secret}"
            )
    resources = ScalingGroupResourceRequest.from_dict(read_resource_flags(args, ("cpu", "memory")))
    return ServerSpec(
        image=image,
        scaling=read_scaling_flags(args),
        resources=resources,
        workers=args.workers,
        existing_secret=args.existing_secret,
        deadline_s=args.deadline,
        hold_timeout_s=args.hold_timeout,
    )


def _catalog_url(args: argparse.Namespace, project: Project) -> str:
    from chalk.catalog.store import check_catalog_url  # noqa: PLC0415
    from chalk.common.errors import ValidationError  # noqa: PLC0415

    given = args.catalog_url is not None
    url: str = args.catalog_url if given else project.catalog_url()
    source = "--catalog-url" if given else "CHALK_CATALOG_URL or catalog_url in chalk.yaml"
    if check_catalog_url(url, source=source).get_backend_name() == "sqlite":
        raise ValidationError(
            "the feature server in the cluster cannot read a SQLite catalog on this machine: "
            "expected a PostgreSQL URL the cluster reaches, in --catalog-url, "
            "CHALK_CATALOG_URL or catalog_url in chalk.yaml; or --existing-secret NAME"
        )
    return url


def _token(args: argparse.Namespace, server: KubernetesServer | None) -> tuple[str, str]:
    """The token, and a note of where it came from: the file given, the server's current
    Secret (kept across deploys), or made now."""
    import secrets  # noqa: PLC0415

    from chalk.server.settings import read_token  # noqa: PLC0415

    if args.token_file is not None:
        return read_token(args.token_file), f"the token from {args.token_file}"
    current = None if server is None else server.current_token(args.name)
    if current is not None:
        return current, "its token kept"
    return secrets.token_urlsafe(_TOKEN_BYTES), "a new token"


def _deploy(args: argparse.Namespace) -> int:
    from chalk.deploy.kubernetes.manifests import placement_of  # noqa: PLC0415
    from chalk.deploy.kubernetes.server import ServerSecret, server_manifests  # noqa: PLC0415

    spec = _server_spec(args)
    project = _project(args.name)
    catalog_url = None if spec.existing_secret else _catalog_url(args, project)
    if args.dry_run:
        secret = None
        if catalog_url is not None:
            # Values the output hides anyway: no token is made for a dry run.
            token = _HIDDEN if args.token_file is None else _token(args, None)[0]
            secret = ServerSecret(catalog_url, token)
        namespace = placement_of(project).namespace
        objects = server_manifests(args.name, spec, namespace, secret=secret)
        _emit_objects([_hide_values(obj) for obj in objects], args.output_format)
        return 0
    with _connected(project) as server:
        token_note = ""
        secret = None
        if catalog_url is not None:
            token, token_note = _token(args, server)
            secret = ServerSecret(catalog_url, token)
        server.deploy(args.name, spec, secret)
        state = server.observe(args.name)
    if args.output_format != "table":
        emit(state.to_json(), args.output_format)
        return 0
    where = f"Secret {state.namespace}/{spec.secret_name(args.name)}"
    print(
        f"applied feature server {args.name!r} in namespace {state.namespace} ({spec.image}, "
        f"{_replicas_text(spec)}); inside the cluster at {state.address}"
    )
    if token_note:
        print(
            f"its catalog URL and token are in {where} ({token_note}): read the token with "
            f"`kubectl get secret -n {state.namespace} {spec.secret_name(args.name)} "
            f"-o jsonpath='{{.data.token}}' | base64 -d`"
        )
    else:
        print(f"its catalog URL and token come from your {where}")
    return 0


def _replicas_text(spec: ServerSpec) -> str:
    scaling = spec.scaling
    if not scaling.autoscales:
        return f"{scaling.min_replicas} replica(s)"
    return (
        f"{scaling.min_replicas} to {scaling.max_replicas} replicas at "
        f"{scaling.effective_target_cpu}% CPU"
    )


def _hide_values(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj``, a Secret's values replaced by ``<hidden>`` (a dry run prints to a terminal)."""
    if obj["kind"] != "Secret":
        return obj
    return {**obj, "data": dict.fromkeys(obj.get("data") or {}, _HIDDEN)}


def _emit_objects(objects: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        emit_as_given({"apiVersion": "v1", "kind": "List", "items": objects}, "json")
        return
    import yaml  # noqa: PLC0415

    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))


def _get(args: argparse.Namespace) -> int:
    with _connected(_project(args.name)) as server:
        state = server.observe(args.name)
    if args.output_format != "table":
        emit(state.to_json(), args.output_format)
        return 0
    scaling = (
        "fixed"
        if state.min_replicas is None
        else f"autoscaling {state.min_replicas} to {state.max_replicas}"
    )
    lines = {
        "Name": state.name,
        "Namespace": state.namespace,
        "Status": state.status,
        "Reason": state.reason,
        "Replicas": f"{state.ready}/{state.desired} ready ({scaling})",
        "Image": state.image,
        "Address": state.address or "<no Service>",
        "Secret": state.secret,
    }
    if not state.reason:
        del lines["Reason"]
    width = max(len(key) for key in lines) + 2
    for key, value in lines.items():
        print(f"{key + ':':<{width}}{value}".rstrip())
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _connected(_project(args.name)) as server:
        deleted = server.delete(args.name)
    if args.output_format != "table":
        emit({"name": args.name, "deleted": deleted}, args.output_format)
    else:
        print(f"deleted feature server {args.name!r}: {', '.join(deleted)}")
    return 0
