"""Pods' logs for ``chalk logs`` on Kubernetes, through the official client's ``CoreV1Api``.

``chalk.deploy.logs.group_logs`` calls ``cluster_logs``. Pods are the group's (its selector
labels). Every line is asked with the kubelet's timestamp, so the lines of several pods merge
exactly by time; while following, the lines that arrive within one batch (0.2 s) are merged,
and the pod list is read again every 2 s: a new pod's log is read from its start, a pod whose
stream ended (its container restarted) is read again after the last line it gave, and a pod
that left is dropped once its stream ends.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import urllib3
from kubernetes import client as kube_client
from kubernetes.client.exceptions import ApiException

from chalk.common.config import Project
from chalk.deploy.errors import DeployError
from chalk.deploy.kubernetes.backend import unreachable_cause
from chalk.deploy.kubernetes.manifests import selector_labels
from chalk.deploy.log_lines import LogLine, LogQuery, check_replica, line_time, merge_in_time

__all__ = ["cluster_logs", "pod_logs"]

_BATCH_S: Final = 0.2
_RELIST_S: Final = 2.0
_CHUNK: Final = 64 * 1024


class _LogUnavailable(DeployError):
    """A pod's log cannot be read (yet): its container has not started, or it is gone."""


def cluster_logs(project: Project, group: str, query: LogQuery) -> Iterator[LogLine]:
    """``pod_logs`` on the cluster and namespace of chalk.yaml."""
    from chalk.deploy.kubernetes.backend import connect  # noqa: PLC0415

    cluster = connect(project)
    try:
        yield from pod_logs(cluster.api, cluster.placement.namespace, group, query)
    finally:
        cluster.close()


def pod_logs(
    api: kube_client.ApiClient,
    namespace: str,
    group: str,
    query: LogQuery,
    *,
    batch_s: float = _BATCH_S,
    relist_s: float = _RELIST_S,
) -> Iterator[LogLine]:
    """The lines of ``group``'s pods in ``namespace`` that ``query`` asks for, oldest first.

    A pod whose container has not started is left out (while following, tried again at the
    next listing); with ``query.replica`` naming it, that is an error. Following one pod ends
    when its stream ends.
    """
    core = kube_client.CoreV1Api(api)
    pods = _pod_names(core, namespace, group)
    check_replica(group, query.replica, pods)
    chosen = [query.replica] if query.replica else sorted(pods)
    if not query.follow:
        yield from merge_in_time(_whole_logs(core, namespace, group, chosen, query))
        return
    streams = _Streams(core, namespace, group, query)
    try:
        for pod in chosen:
            streams.start(pod, tail=query.tail, since_s=_since_s(query))
        listed_at = time.monotonic()
        while streams.active or query.replica is None:
            yield from sorted(streams.take(batch_s), key=lambda line: line.time)
            if query.replica is not None and streams.refused:
                raise streams.refused[query.replica]
            if query.replica is None and time.monotonic() - listed_at >= relist_s:
                listed_at = time.monotonic()
                streams.follow_pods(_pod_names(core, namespace, group))
    finally:
        streams.close()


def _whole_logs(
    core: kube_client.CoreV1Api, namespace: str, group: str, pods: list[str], query: LogQuery
) -> Iterator[list[LogLine]]:
    for pod in pods:
        try:
            response = _open_log(
                core, namespace, group, pod, tail=query.tail, since_s=_since_s(query), follow=False
            )
        except _LogUnavailable:
            if query.replica is not None:
                raise
            continue
        try:
            yield [_line(pod, raw) for raw in _split(response.stream(_CHUNK))]
        finally:
            response.release_conn()


@dataclass
class _Streams:
    """One thread per followed pod, each putting the pod's lines on one queue."""

    core: kube_client.CoreV1Api
    namespace: str
    group: str
    query: LogQuery
    active: set[str] = field(default_factory=set)
    refused: dict[str, _LogUnavailable] = field(default_factory=dict)
    # Pods listed and read: when (monotonic) their last line came and its time, or when their
    # stream was started, so a stream opened again (the container restarted) goes on there.
    _read_up_to: dict[str, tuple[float, dt.datetime | None]] = field(default_factory=dict)
    _lines: queue.Queue[LogLine | _End] = field(default_factory=queue.Queue)
    _responses: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(
        self,
        pod: str,
        *,
        tail: int | None,
        since_s: int | None,
        after: dt.datetime | None = None,
    ) -> None:
        """Follow ``pod``: its last ``tail`` lines of the last ``since_s`` seconds, then new
        ones; none of time ``after`` or earlier."""
        self.active.add(pod)
        self._read_up_to.setdefault(pod, (time.monotonic(), None))
        thread = threading.Thread(target=self._stream, args=(pod, tail, since_s, after))
        thread.daemon = True
        thread.start()

    def follow_pods(self, listed: set[str]) -> None:
        """Follow every listed pod not followed now: a new one from its start, one read before
        after what it gave; forget the pods no longer listed."""
        for pod in set(self._read_up_to) - listed:
            del self._read_up_to[pod]
        for pod in sorted(listed - self.active):
            resume = self._read_up_to.get(pod)
            if resume is None:
                self.start(pod, tail=None, since_s=_since_s(self.query))
                continue
            # Relative to each side's own clock, so a skewed clock moves nothing; a second
            # more, since the API counts whole seconds, and ``after`` drops what was given.
            read_at, after = resume
            since_s = math.ceil(time.monotonic() - read_at) + 1
            self.start(pod, tail=None, since_s=since_s, after=after)

    def take(self, wait_s: float) -> list[LogLine]:
        """The lines that arrive within ``wait_s``; ended streams leave ``active``."""
        taken: list[LogLine] = []
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(item, LogLine):
                taken.append(item)
                self._read_up_to[item.replica] = (time.monotonic(), item.time)
                continue
            self.active.discard(item.pod)
            if item.refused is not None:
                self.refused[item.pod] = item.refused
        return taken

    def close(self) -> None:
        with self._lock:
            responses = list(self._responses.values())
        for response in responses:
            response.close()

    def _stream(
        self, pod: str, tail: int | None, since_s: int | None, after: dt.datetime | None
    ) -> None:
        try:
            response = _open_log(
                self.core, self.namespace, self.group, pod, tail=tail, since_s=since_s, follow=True
            )
        except _LogUnavailable as refused:
            self._lines.put(_End(pod, refused))
            return
        with self._lock:
            self._responses[pod] = response
        try:
            for raw in _split(response.stream(_CHUNK)):
                line = _line(pod, raw)
                if after is None or line.time > after:
                    self._lines.put(line)
        except Exception:
            # Closed by ``close`` (Ctrl-C) or the connection was lost: the stream is over
            # either way, and nothing is printed.
            pass
        finally:
            with self._lock:
                self._responses.pop(pod, None)
            self._lines.put(_End(pod, None))


@dataclass(frozen=True, slots=True)
class _End:
    """A pod's stream is over, or never began (``refused``)."""

    pod: str
    refused: _LogUnavailable | None


def _open_log(
    core: kube_client.CoreV1Api,
    namespace: str,
    group: str,
    pod: str,
    *,
    tail: int | None,
    since_s: int | None,
    follow: bool,
) -> Any:
    options: dict[str, Any] = {"container": group, "timestamps": True, "follow": follow}
    if tail is not None:
        options["tail_lines"] = tail
    if since_s is not None:
        options["since_seconds"] = since_s
    try:
        return core.read_namespaced_pod_log(pod, namespace, _preload_content=False, **options)
    except ApiException as error:
        raise _LogUnavailable(
            f"cannot read the log of replica {pod!r} of scaling group {group!r} "
            f"({error.status} {error.reason}): {_api_message(error)}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise DeployError(
            f"cannot reach the Kubernetes API server for the log of replica {pod!r}: "
            f"{unreachable_cause(error)}"
        ) from None


def _since_s(query: LogQuery) -> int | None:
    """``--since`` in the whole seconds the API takes (at least 1)."""
    return None if query.since is None else max(1, math.ceil(query.since.total_seconds()))


def _pod_names(core: kube_client.CoreV1Api, namespace: str, group: str) -> set[str]:
    selector = ",".join(f"{key}={value}" for key, value in selector_labels(group).items())
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=selector)
    except ApiException as error:
        raise DeployError(
            f"cannot list the pods of scaling group {group!r} in namespace {namespace!r} "
            f"({error.status} {error.reason}): {_api_message(error)}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise DeployError(
            f"cannot reach the Kubernetes API server to list the pods of scaling group "
            f"{group!r}: {unreachable_cause(error)}"
        ) from None
    return {pod.metadata.name for pod in pods.items if pod.metadata and pod.metadata.name}


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or b"{}").get("message") or error.body)
    except (ValueError, AttributeError):
        return str(error.body)


def _split(chunks: Iterable[bytes]) -> Iterator[str]:
    """Complete lines of a byte stream (a last line without a newline too)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _line(pod: str, raw: str) -> LogLine:
    """A line as the kubelet sends it with ``timestamps``: ``<RFC 3339 time> <text>``."""
    stamp, _space, text = raw.partition(" ")
    when = line_time(stamp)
    if when is None:  # no timestamp after all: the whole line is text
        return LogLine(pod, raw, dt.datetime.now(dt.UTC))
    return LogLine(pod, text, when)
