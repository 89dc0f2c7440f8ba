"""Where a ``model.<group>`` call goes: routes read through the catalog, reused for a second.

``ModelCaller`` owns one ``RouteCache`` for all its calls and resolves each call's route with
it; the dispatch reads a long call's route again between chunks and after a failed round.
Used on the caller's event loop thread only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, NamedTuple, Protocol

from chalk.catalog.errors import ControllerDownError, NoReadyReplicaError, ResolveError
from chalk.catalog.records import Endpoint, Replica, Route
from chalk.engine.addresses import AddressCounts, retrieved, service_without_pods
from chalk.engine.errors import ModelCallError
from chalk.engine.model_call import ModelCall

__all__ = ["EXIT_RECORD_WAIT_S", "ROUTE_TTL_S", "Resolver", "RouteCache", "Routed"]

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


class Routed(NamedTuple):
    """A route as read, when its read started (``time.monotonic()``), and ``no_pod``: the DNS
    name of its Service when each of its endpoints is a ``dns:`` target that resolves to no
    address (on Kubernetes, a group at zero or with no pod ready yet), else ""."""

    route: Route
    read_at: float
    no_pod: str = ""

    @property
    def held(self) -> bool:
        """Whether a call on this route waits for a ready replica (``chalk.engine.holds``):
        it has no endpoint, or none with a pod behind it."""
        return not self.route.endpoints or bool(self.no_pod)


class RouteCache:
    """Routes by ``catalog_call`` name, each with when it was read, reused for ``ROUTE_TTL_S``.

    Resolving reads the database (~0.5 ms, and a thread hop) on every call otherwise. Calls
    that find a route expired share one read of it: under 64 concurrent queries, each starting
    its own read made about one read per ten queries (bench/README.md, "Batching"). A call
    that finds an endpoint gone resolves afresh (``route_again``), so a stale route costs
    one retry at most.

    A route whose endpoints are all ``dns:`` targets has their addresses counted
    (``addresses``, shared with the in-flight slots): when none has one, the route is not kept
    and its calls are held, as for a route with no endpoints. A positive count stands for
    ``chalk.engine.addresses.DNS_RECOUNT_S``; a call that finds the pods gone reads the route
    again with a fresh count (``route_again``).
    """

    def __init__(self, catalog: Resolver, addresses: AddressCounts | None = None) -> None:
        self._catalog = catalog
        self._addresses = AddressCounts() if addresses is None else addresses
        self._routes: dict[str, Routed] = {}
        # The read of a route in progress, by name, for the calls that found it expired.
        self._reads: dict[str, asyncio.Task[Routed]] = {}

    def fresh(self, name: str) -> Routed | None:
        """The route of ``name`` and when it was read, when that was under ``ROUTE_TTL_S``
        ago; else None. Only a route whose calls need not wait is kept. Safe from any thread
        (one read of a dict of immutable tuples)."""
        cached = self._routes.get(name)
        if cached is not None and time.monotonic() - cached.read_at < ROUTE_TTL_S:
            return cached
        return None

    async def resolve(self, feature: str, name: str) -> Routed:
        """The route of ``name`` for a new call of ``feature``, when it was read, and whether
        its Service has no pod.

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

    async def _read(self, name: str) -> Routed:
        try:
            # The catalog reads a database: off the loop, which serves every call of the process.
            route = await asyncio.to_thread(self._catalog.resolve, name)
        except ResolveError:
            self._routes.pop(name, None)
            raise
        no_pod = await service_without_pods(route.endpoints, self._addresses)
        # Kept from when its count ended (when one ran: the pods' count was 0 or unknown), not
        # when the read began: a slow lookup must not leave a route already stale.
        routed = Routed(route, time.monotonic(), no_pod)
        if routed.held:  # no ready replica: each call holds, reading it again (chalk.engine.holds)
            self._routes.pop(name, None)
        else:
            self._routes[name] = routed
        return routed

    def _read_done(self, name: str, read: asyncio.Task[Routed]) -> None:
        if self._reads.get(name) is read:
            del self._reads[name]
        retrieved(read)

    async def route_again(self, call: ModelCall, *, recount: bool = False) -> Routed | None:
        """The group's route read now, for ``call``: ready, adopted as the call's route; with
        no endpoint (replicas restarting, or scaled away) or no pod behind its Service, as
        read, carrying the group's status for the caller to hold the call on; None while the
        catalog cannot route it (the controller is down). ``recount``: count the Service's
        addresses afresh (a call just failed on it), not from a count that still stands."""
        now = time.monotonic()
        try:
            route = await asyncio.to_thread(self._catalog.resolve, call.name)
        except _PASSING_RESOLVE_ERRORS:
            return None
        except ResolveError as error:
            raise type(error)(f"{call.feature}: {error}") from None
        no_pod = await service_without_pods(
            route.endpoints, self._addresses, since=now if recount else None
        )
        if no_pod or not route.endpoints:
            return Routed(route, now, no_pod)
        return Routed(self.adopt(call, route, now), now)

    def adopt(self, call: ModelCall, route: Route, read_at: float) -> Route:
        """``route``, read at ``read_at`` and ready, as ``call``'s route and the cache's."""
        self._routes[call.name] = Routed(route, read_at)
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
        if cached is not None and now - cached.read_at < ROUTE_TTL_S:
            return _checked_route(call, cached.route).endpoints
        routed = await self.route_again(call)
        return None if routed is None or routed.held else routed.route.endpoints

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
