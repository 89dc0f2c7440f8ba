"""Where a ``model.<group>`` call goes: routes read through the catalog, reused for a second.

``ModelCaller`` owns one ``RouteCache`` for all its calls and resolves each call's route with
it; the dispatch reads a long call's route again between chunks and after a failed round.
Used on the caller's event loop thread only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Protocol

from chalk.catalog.errors import ControllerDownError, NoReadyReplicaError, ResolveError
from chalk.catalog.records import Endpoint, Replica, Route
from chalk.engine.errors import ModelCallError
from chalk.engine.model_call import ModelCall

__all__ = ["EXIT_RECORD_WAIT_S", "ROUTE_TTL_S", "Resolver", "RouteCache"]

# How long a resolved route is reused before the catalog is read again.
ROUTE_TTL_S: Final = 1.0
# How long a call that lost a replica twice waits for the local controller to record the
# replica's exit (it observes exits every pass, 0.5 s) before it says only "connection lost".
EXIT_RECORD_WAIT_S: Final = 1.0
# Resolve errors that a controller restart clears: a later round may find endpoints (a group
# with no ready replica has a route with no endpoints instead).
_PASSING_RESOLVE_ERRORS: Final = (NoReadyReplicaError, ControllerDownError)


class Resolver(Protocol):
    """Anything that routes ``model.<group>`` calls: ``chalk.catalog.Catalog`` does."""

    def resolve(self, name: str) -> Route: ...

    def replica_at(self, group: str, endpoint: str) -> Replica | None: ...


class RouteCache:
    """Routes by ``catalog_call`` name, each with when it was read, reused for ``ROUTE_TTL_S``.

    Resolving reads the database (~0.5 ms, and a thread hop) on every call otherwise. Calls
    that find a route expired share one read of it: under 64 concurrent queries, each starting
    its own read made about one read per ten queries (bench/README.md, "Batching"). A call
    that finds an endpoint gone resolves afresh (``route_again``), so a stale route costs
    one retry at most.
    """

    def __init__(self, catalog: Resolver) -> None:
        self._catalog = catalog
        self._routes: dict[str, tuple[Route, float]] = {}
        # The read of a route in progress, by name, for the calls that found it expired.
        self._reads: dict[str, asyncio.Task[tuple[Route, float]]] = {}

    def fresh(self, name: str) -> tuple[Route, float] | None:
        """The route of ``name`` and when it was read, when that was under ``ROUTE_TTL_S``
        ago; else None. Safe from any thread (one read of a dict of immutable pairs)."""
        cached = self._routes.get(name)
        if cached is not None and time.monotonic() - cached[1] < ROUTE_TTL_S:
            return cached
        return None

    async def resolve(self, feature: str, name: str) -> tuple[Route, float]:
        """The route of ``name`` for a new call of ``feature``, and when it was read.

        The catalog's ``ResolveError`` subclasses keep their class and gain the feature as a
        prefix.
        """
        cached = self.fresh(name)
        if cached is not None:
            return cached
        read = self._reads.get(name)
        if read is None:
            read = asyncio.get_running_loop().create_task(self._read(name))
            self._reads[name] = read
            read.add_done_callback(lambda done: self._read_done(name, done))
        try:
            # Shielded: a call cancelled while waiting leaves the read to the others.
            return await asyncio.shield(read)
        except ResolveError as error:
            raise type(error)(f"{feature}: {error}") from None

    async def _read(self, name: str) -> tuple[Route, float]:
        now = time.monotonic()
        try:
            # The catalog reads a database: off the loop, which serves every call of the process.
            route = await asyncio.to_thread(self._catalog.resolve, name)
        except ResolveError:
            self._routes.pop(name, None)
            raise
        if route.endpoints:
            self._routes[name] = (route, now)
        else:  # no ready replica: each call holds, reading it again (chalk.engine.holds)
            self._routes.pop(name, None)
        return route, now

    def _read_done(self, name: str, read: asyncio.Task[tuple[Route, float]]) -> None:
        if self._reads.get(name) is read:
            del self._reads[name]
        if not read.cancelled():
            read.exception()  # retrieved: every waiter may have been cancelled

    async def route_again(self, call: ModelCall) -> Route | None:
        """The group's route read now, for ``call``: with endpoints, adopted as the call's
        route; with none (replicas restarting, or scaled away), as read, carrying the group's
        status for the caller to hold the call on; None while the catalog cannot route it
        (the controller is down)."""
        try:
            route = await asyncio.to_thread(self._catalog.resolve, call.name)
        except _PASSING_RESOLVE_ERRORS:
            return None
        except ResolveError as error:
            raise type(error)(f"{call.feature}: {error}") from None
        if not route.endpoints:
            return route
        return self.adopt(call, route, time.monotonic())

    def adopt(self, call: ModelCall, route: Route, read_at: float) -> Route:
        """``route``, read at ``read_at`` with endpoints, as ``call``'s route and the cache's."""
        self._routes[call.name] = (route, read_at)
        return _checked_route(call, route)

    async def endpoints_between_chunks(self, call: ModelCall) -> tuple[Endpoint, ...] | None:
        """The group's endpoints, read again when the call's route is older than ROUTE_TTL_S
        (another call's fresher read serves too); None when it is not, or none is ready."""
        now = time.monotonic()
        if now - call.resolved_at < ROUTE_TTL_S:
            return None
        # Claimed before the read, so the call's other workers do not read it as well.
        call.resolved_at = now
        cached = self._routes.get(call.name)
        if cached is not None and now - cached[1] < ROUTE_TTL_S:
            route: Route | None = _checked_route(call, cached[0])
        else:
            route = await self.route_again(call)
        return None if route is None or not route.endpoints else route.endpoints

    async def exited_replica(self, call: ModelCall, endpoint: str) -> Replica | None:
        """The replica of ``call``'s group that served at ``endpoint`` and exited, once its
        exit is recorded (waiting up to ``EXIT_RECORD_WAIT_S``); None when it is not known:
        Kubernetes replicas have no rows, and a restarted one serves elsewhere."""
        give_up = time.monotonic() + EXIT_RECORD_WAIT_S
        while True:
            try:
                replica = await asyncio.to_thread(
                    self._catalog.replica_at, call.route.group, endpoint
                )
            except Exception:  # the exit only details an error already decided: never hide it
                return None
            if replica is None:
                return None
            if not replica.ready and replica.last_exit_reason:
                return replica
            if time.monotonic() >= give_up:
                return None
            await asyncio.sleep(0.05)


def _checked_route(call: ModelCall, route: Route) -> Route:
    """``route`` as the call's route, unless the model's schemas changed since it began."""
    if not (
        route.input_schema.equals(call.route.input_schema)
        and route.output_schema.equals(call.route.output_schema)
    ):
        raise ModelCallError(
            f"{call.prefix}: scaling group {route.group!r} changed its model's schemas during "
            f"the call (to model {route.model_name} version {route.model_version}): expected "
            f"the schemas the call started with; run the query again"
        )
    call.route = route
    return route
