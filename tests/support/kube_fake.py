"""A stateful fake Kubernetes API server for what our kube-apiserver 1.20 cannot show: a newer
server version and ``autoscaling/v2``.

kmock's ``KubernetesEmulator`` (an aiohttp server keeping objects in memory) runs on 127.0.0.1
in a background thread with its own event loop. It serves discovery (``/version``, ``/api``,
``/apis`` and the group documents) for the resources declared here, and server-side apply as
one field manager's create-or-replace: the applied object becomes the stored one, keeping what
the server set (uid, creationTimestamp; resourceVersion and generation move only on a change).
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs
import kmock
import yaml
from kmock._internal.rendering import Payload

__all__ = ["APPLY_PATCH", "FakeKube", "fake_kube"]

APPLY_PATCH: Final = "application/apply-patch"
_CONTEXT: Final = "kmock"
# group/version/plural -> kind: what a group's commands read and write.
_RESOURCES: Final = {
    "v1/pods": "Pod",
    "v1/services": "Service",
    "v1/events": "Event",
    "apps/v1/deployments": "Deployment",
    "apps/v1/replicasets": "ReplicaSet",
    "autoscaling/v2/horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "gateway.networking.k8s.io/v1/httproutes": "HTTPRoute",
}
# Served only where a test asks for KEDA (``fake_kube(..., keda=True)``).
_KEDA_RESOURCES: Final = {"keda.sh/v1alpha1/scaledobjects": "ScaledObject"}
_SERVER_SET: Final = ("uid", "creationTimestamp", "resourceVersion", "generation")


@attrs.define(kw_only=True)
class ApplyingEmulator(kmock.KubernetesEmulator):
    """kmock's emulator reporting ``version`` and taking server-side apply."""

    version: tuple[int, int] = (1, 31)
    _next_version: int = attrs.field(default=1, init=False)

    async def _serve_server_version(self, request: kmock.Request) -> Payload:
        major, minor = self.version
        return {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0"}

    async def _handle(self, request: kmock.Request) -> Any:
        content_type = request.headers.get("Content-Type", "")
        if (
            request.method == kmock.method.PATCH
            and content_type.startswith(APPLY_PATCH)
            and request.name is not None
            and request.subresource is None
        ):
            async with self._lock:
                self._apply(request)
        # The emulator then merges the same object over the stored one (no change) and answers.
        return await super()._handle(request)

    def _apply(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        applied: dict[str, Any] = copy.deepcopy(request.data)
        metadata = applied.setdefault("metadata", {})
        metadata.setdefault("namespace", request.namespace)
        if key not in self.objects or self.objects[key].deleted:
            metadata.update(
                uid=str(uuid.uuid4()),
                creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                resourceVersion=self._bump(),
                generation=1,
            )
            if key in self.objects:
                self.objects[key].create(applied)
            else:
                self.objects[key] = applied
            return
        current = self.objects[key].raw
        kept = {k: v for k, v in current["metadata"].items() if k in _SERVER_SET}
        metadata.update(kept)
        if "status" in current:
            applied["status"] = current["status"]
        if applied == current:
            return
        metadata["resourceVersion"] = self._bump()
        if applied.get("spec") != current.get("spec"):
            metadata["generation"] = int(kept.get("generation", 0)) + 1
        self.objects[key].history.append(applied)

    def _bump(self) -> str:
        self._next_version += 1
        return str(self._next_version)


@dataclass(frozen=True)
class FakeKube:
    """The running fake: its URL, a kubeconfig naming it (context ``kmock``), its version."""

    url: str
    kubeconfig: Path
    context: str
    version: tuple[int, int]


@contextmanager
def fake_kube(
    base: Path, version: tuple[int, int] = (1, 31), *, keda: bool = False
) -> Iterator[FakeKube]:
    """Run the fake on a free port of 127.0.0.1 until the block ends; with ``keda``, it serves
    KEDA's ScaledObject too."""
    emulator = ApplyingEmulator(version=version)
    resources = {**_RESOURCES, **(_KEDA_RESOURCES if keda else {})}
    for resource, kind in resources.items():
        emulator.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs={"get", "list", "create", "patch", "delete"}
        )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kmock", daemon=True)
    thread.start()
    stack = AsyncExitStack()
    try:
        start = asyncio.run_coroutine_threadsafe(_serve(stack, emulator), loop)
        url = start.result(timeout=30)
        yield FakeKube(url, _write_kubeconfig(base, url), _CONTEXT, version)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


async def _serve(stack: AsyncExitStack, emulator: ApplyingEmulator) -> str:
    await stack.enter_async_context(emulator)
    server = await stack.enter_async_context(kmock.Server(emulator))
    return str(server.url).rstrip("/")


def _write_kubeconfig(base: Path, url: str) -> Path:
    path = base / "kmock-kubeconfig"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": _CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": _CONTEXT, "user": {"token": "kmock"}}],
        "contexts": [{"name": _CONTEXT, "context": {"cluster": _CONTEXT, "user": _CONTEXT}}],
        "current-context": _CONTEXT,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
