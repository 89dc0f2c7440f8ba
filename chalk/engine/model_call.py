"""One ``catalog_call`` in progress: its route, its chunks and how sending them went, and the
errors that name it when it fails.

``ModelCaller`` makes one ``ModelCall`` per call; the dispatch sends its chunks and raises
``handler_error`` and ``transport_error`` for them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

import pyarrow as pa

from chalk.catalog.records import Replica, Route
from chalk.engine.errors import (
    ModelCallError,
    ModelHandlerError,
    ModelResultError,
    ModelTransportError,
)
from chalk.engine.recorder import CallRecorder
from chalk.shim.client import DEFAULT_DEADLINE_S
from chalk.shim.errors import RemoteHandlerError, TransportError

__all__ = [
    "DEADLINE_EXCEEDED",
    "Chunk",
    "ModelCall",
    "crashed_error",
    "handler_error",
    "queue_deadline_error",
    "transport_error",
]

# The gRPC status of a chunk that let its deadline pass.
DEADLINE_EXCEEDED: Final = "DEADLINE_EXCEEDED"


@dataclass(eq=False, slots=True)
class Chunk:
    """Rows ``start`` to ``start + len(batch) - 1`` of one call, and how sending them went.

    ``distinct``: the rows count among the call's distinct argument rows (it was deduplicated),
    not among the rows it was asked for.
    """

    index: int
    start: int
    batch: pa.RecordBatch
    attempts: int = 0
    tried: list[str] = field(default_factory=list)
    last_error: TransportError | None = None
    failing_since: float | None = None
    # Endpoints that let the chunk's deadline pass: the model is slow there, so it is not
    # sent there again (that would only wait out the deadline once more).
    timed_out: set[str] = field(default_factory=set)
    # Connections lost after the chunk was sent (the replica died): the second fails the call.
    deaths: int = 0
    # Sent alone, never merged with other calls' rows again (its merged call failed).
    alone: bool = False
    distinct: bool = False

    @property
    def rows(self) -> str:
        rows = f"rows {self.start}-{self.start + self.batch.num_rows - 1}"
        return f"{rows} of the distinct argument rows" if self.distinct else rows


@dataclass(slots=True)
class ModelCall:
    """One ``catalog_call`` in progress: what error messages name, and the chunks' answers."""

    feature: str
    name: str
    route: Route
    results: dict[int, pa.Array] = field(default_factory=dict)
    pending: deque[Chunk] = field(default_factory=deque)
    # When ``route`` was read: a long call reads it again after ROUTE_TTL_S.
    resolved_at: float = 0.0
    recorder: CallRecorder | None = None
    # Model calls carrying rows of this call now: while any is, its queued chunks wait for
    # a free slot (see ``chalk.engine.batching.GroupQueue``).
    in_flight: int = 0
    # Set when a chunk failed the call: its chunks still queued are not sent.
    ended: bool = False

    @property
    def prefix(self) -> str:
        return f"{self.feature}: catalog_call({self.name!r})"

    @property
    def model(self) -> str:
        return f"model {self.route.model_name} version {self.route.model_version}"

    @property
    def output_type(self) -> pa.DataType:
        return self.route.output_schema.field(0).type


def handler_error(call: ModelCall, chunk: Chunk, error: RemoteHandlerError) -> ModelCallError:
    """The error of a handler that raised on ``chunk`` (or of an answer our client refused)."""
    if error.code == "OK":
        # Our client found the answer malformed (wrong length or shape); no handler raised.
        return ModelResultError(
            f"{call.prefix}: {call.model} answered badly at {error.endpoint} for {chunk.rows}: "
            f"{error.remote_message}"
        )
    what = f"{error.kind}: {error.remote_message}" if error.kind else error.remote_message
    message = (
        f"{call.feature}: the handler of scaling group {call.route.group!r} ({call.model}) "
        f"failed at {error.endpoint} on {chunk.rows}: {what}"
    )
    if error.remote_traceback:
        message += f"\n\nRemote traceback:\n{error.remote_traceback.rstrip()}"
    return ModelHandlerError(
        message,
        kind=error.kind,
        remote_message=error.remote_message,
        remote_traceback=error.remote_traceback,
        endpoint=error.endpoint,
    )


def transport_error(call: ModelCall, chunk: Chunk, deadline_s: float | None) -> ModelTransportError:
    """The error of ``chunk`` that no replica answered, after every attempt."""
    tried = list(dict.fromkeys(chunk.tried))
    if chunk.last_error is not None and chunk.last_error.code == DEADLINE_EXCEEDED:
        deadline = DEFAULT_DEADLINE_S if deadline_s is None else deadline_s
        return ModelTransportError(
            f"{call.prefix}: scaling group {call.route.group!r} did not answer {chunk.rows} "
            f"within the deadline of {deadline:g}s (tried {', '.join(tried)}): expected each "
            f"model call to finish within it; give a slow model a longer one with "
            f"ChalkClient(model_call_deadline_s=...)",
            endpoints=tried,
        )
    if chunk.last_error is None:
        detail = "no replica was ready to take them"
    else:
        detail = (
            f"they failed {chunk.attempts} times (tried {', '.join(tried)}); last error: "
            f"{chunk.last_error.code}: {chunk.last_error.details}"
        )
    return ModelTransportError(
        f"{call.prefix} could not reach scaling group {call.route.group!r} for {chunk.rows}: "
        f"{detail}: expected a ready replica to answer; check the group with "
        f"`chalk scaling-group get --name {call.route.group}`",
        endpoints=tried,
    )


def crashed_error(
    call: ModelCall, chunk: Chunk, error: TransportError, replica: Replica | None = None
) -> ModelTransportError:
    """The error of ``chunk`` whose replica died twice while it ran: the handler is the
    likely cause, so it is not sent a third time. ``replica``: the replica that died the
    second time, its exit recorded (the local backend); without it, only "connection lost"."""
    group = call.route.group
    if replica is None:
        crashed = f"replica {error.endpoint}"
        how = f"connection lost ({error.details})"
        log = f"`chalk scaling-group get --name {group}`"
    else:
        # The exit's first line (``exit code 3``, ``signal SIGKILL``); its log tail follows.
        exit_reason = replica.last_exit_reason.splitlines()[0]
        crashed = f"replica {replica.replica_id} ({exit_reason})"
        how = f"at {error.endpoint}"
        log = f"`chalk logs {group} --replica {replica.replica_id}`"
    return ModelTransportError(
        f"{call.prefix}: the model's handler crashed {crashed} of scaling group {group!r} on "
        f"{chunk.rows}, twice: {how}: expected the handler to answer or raise; check its log "
        f"with {log}",
        endpoints=list(dict.fromkeys(chunk.tried)),
    )


def queue_deadline_error(call: ModelCall, chunk: Chunk, waited_s: float) -> ModelTransportError:
    """The error of ``chunk`` that waited in its group's queue past the call's deadline."""
    return ModelTransportError(
        f"{call.prefix}: {chunk.rows} waited {waited_s:.1f}s in the queue of scaling group "
        f"{call.route.group!r} without a free replica slot, past the deadline of the call: "
        f"expected a replica to take them in time; add replicas to the group or give a longer "
        f"deadline with ChalkClient(model_call_deadline_s=...)",
        endpoints=[],
    )
