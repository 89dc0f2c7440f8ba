"""The addresses behind a ``dns:`` endpoint, looked up as gRPC's resolver finds them: a
headless Service resolves to one per ready pod, each with its own in-flight slots
(``chalk.engine.batching.EndpointSlots``), and to none while its group is at zero, when a call
is held (``chalk.engine.holds``). ``ModelCaller`` owns one ``AddressCounts`` shared by both,
and renews a target's channel when a lookup finds its addresses changed: gRPC's resolver looks
again only when a connection fails, so without that a group scaled up would send no call to
its new pods.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chalk.catalog.records import Endpoint

__all__ = [
    "DNS_LOOKUP_S",
    "DNS_RECOUNT_S",
    "DNS_RETRY_S",
    "AddressCounts",
    "AddressLookupError",
    "DnsName",
    "LookupAddresses",
    "dns_name",
    "lookup_addresses",
    "retrieved",
    "service_without_pods",
]

_LOG = logging.getLogger(__name__)

# How long a positive count of a dns: target's addresses stands (pods come and go; a call that
# finds them gone counts again at once): a pod a group scaled up to takes calls within about
# this long of being ready. A lookup at the cluster's DNS takes milliseconds.
DNS_RECOUNT_S: Final = 5.0
# How long after a failed lookup of a target the last count stands before it is looked up
# again (a caller that asks for a fresh count, a held call, looks up all the same).
DNS_RETRY_S: Final = 5.0
# How long a lookup at a target's own DNS server may take before it counts as failed (a
# cluster's DNS answers in milliseconds).
DNS_LOOKUP_S: Final = 2.0
# getaddrinfo's answers that say the name has no address: it does not exist (NXDOMAIN), or
# has no address record (no data). Any other error is a failed lookup.
_NO_ADDRESS: Final = frozenset(
    {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
)
_DNS_PORT: Final = 53


@dataclass(frozen=True, slots=True)
class DnsName:
    """What a gRPC ``dns:`` target names: the host to resolve, the port to call, and the DNS
    server its authority names (``dns://<server>/<host>:<port>``; None: the system's resolver,
    which reads /etc/hosts and applies search domains)."""

    host: str
    port: int
    server: tuple[str, int] | None = None


class AddressLookupError(OSError):
    """A lookup that failed (timed out, the server failed or refused): how many addresses the
    name has is not known."""


# The addresses a name resolves to (``lookup_addresses``; tests pass their own).
LookupAddresses = Callable[[DnsName], Awaitable[frozenset[str]]]
# Told that a lookup started at a time found a target's addresses changed: (target, started).
AddressesChanged = Callable[[str, float], None]


def dns_name(target: str) -> DnsName | None:
    """What the ``dns:`` gRPC target ``target`` names (port 443 when it names none, the DNS
    server's port 53 when its authority names none); None for any other target.

    Examples
    --------
    >>> dns_name("dns:///ner.ml.svc.cluster.local:6666")
    DnsName(host='ner.ml.svc.cluster.local', port=6666, server=None)
    >>> dns_name("dns://10.96.0.10:5353/ner.ml.svc.cluster.local:8080").server
    ('10.96.0.10', 5353)
    >>> dns_name("dns://8.8.8.8/example.com")
    DnsName(host='example.com', port=443, server=('8.8.8.8', 53))
    >>> dns_name("dns://[::1]:5353/[::1]:80"), dns_name("127.0.0.1:7001")
    (DnsName(host='::1', port=80, server=('::1', 5353)), None)
    """
    if not target.startswith("dns:"):
        return None
    name = target.removeprefix("dns:")
    server = None
    if name.startswith("//"):
        authority, _, name = name[2:].partition("/")
        if authority:
            host, port = _host_port(authority)
            server = (host, int(port) if port.isdigit() else _DNS_PORT)
    host, port = _host_port(name)
    return DnsName(host, int(port) if port.isdigit() else 443, server)


def _host_port(text: str) -> tuple[str, str]:
    """``host:port``, ``[v6]:port`` or a bare host, split (the port "" when none)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest.removeprefix(":")
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host, port


async def lookup_addresses(name: DnsName, *, timeout_s: float = DNS_LOOKUP_S) -> frozenset[str]:
    """The distinct addresses ``name`` resolves to (what gRPC's round_robin spreads over):
    none when the name does not exist or has no address record (NXDOMAIN, no data: a
    headless Service with no ready pod). Raises ``AddressLookupError`` when the lookup itself
    failed (a timeout, a server failure): that is the transport's to report. ``timeout_s``
    bounds the whole lookup (both the A and the AAAA query at a named server; the system's
    resolver, which may retry for longer, is abandoned then)."""
    try:
        async with asyncio.timeout(timeout_s):
            if name.server is None:
                return await _lookup_by_system(name)
            return await _lookup_at_server(name, name.server, timeout_s)
    except TimeoutError:
        at = "" if name.server is None else f" at {name.server[0]}:{name.server[1]}"
        raise AddressLookupError(
            f"looking up {name.host}{at} failed: no answer within {timeout_s:g} s"
        ) from None


async def _lookup_by_system(name: DnsName) -> frozenset[str]:
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            name.host, name.port, type=socket.SOCK_STREAM
        )
    except socket.gaierror as error:
        if error.errno in _NO_ADDRESS:
            return frozenset()
        raise AddressLookupError(f"looking up {name.host} failed: {error.strerror}") from None
    except UnicodeError as error:  # a label too long for IDNA, say: gRPC cannot resolve it
        raise AddressLookupError(f"looking up {name.host} failed: {error}") from None
    return frozenset(str(info[4][0]) for info in found)


async def _lookup_at_server(
    name: DnsName, server: tuple[str, int], timeout_s: float
) -> frozenset[str]:
    """The A and AAAA records of ``name`` at ``server``, as gRPC's resolver asks for them."""
    # Imported here (about 0.15 s): only a target naming its DNS server needs it.
    import dns.asyncresolver  # noqa: PLC0415
    import dns.exception  # noqa: PLC0415
    import dns.resolver  # noqa: PLC0415

    try:
        ipaddress.ip_address(server[0])
    except ValueError:
        raise AddressLookupError(
            f"looking up {name.host} failed: the target names DNS server {server[0]!r}: "
            f"expected an IP address, as gRPC's resolver does"
        ) from None
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [server[0]]
    resolver.port = server[1]
    resolver.lifetime = timeout_s
    addresses: set[str] = set()
    try:
        for kind in ("A", "AAAA"):
            answer = await resolver.resolve(name.host, kind, search=False, raise_on_no_answer=False)
            addresses.update(str(record) for record in answer.rrset or ())
    except dns.resolver.NXDOMAIN:
        return frozenset()
    except (dns.exception.DNSException, OSError) as error:
        raise AddressLookupError(
            f"looking up {name.host} at {server[0]}:{server[1]} failed: {error}"
        ) from None
    return frozenset(addresses)


class AddressCounts:
    """How many addresses each ``dns:`` target of a process resolves to, as last counted.

    One lookup of a target runs at a time, shared by every caller that asks while it runs: a
    thousand calls held for a group at zero make about ten lookups a second, not ten
    thousand. A positive count stands for ``DNS_RECOUNT_S``, so calls to a group whose pods
    are up make no lookup; a count of zero stands for no one who did not ask for it.
    ``changed(target, started)`` is told when a lookup started at ``started`` found other
    addresses than the one before it (a pod added, gone or replaced), and again when a lookup
    ``DNS_RECOUNT_S`` or more later finds the same ones. Used on the caller's event loop.
    """

    def __init__(
        self,
        lookup: LookupAddresses = lookup_addresses,
        *,
        changed: AddressesChanged | None = None,
    ) -> None:
        self._lookup_addresses = lookup
        self._changed = changed
        # The last finished count of each target: when its lookup started, and the count.
        self._counted: dict[str, tuple[float, int]] = {}
        # The addresses that lookup found.
        self._addresses: dict[str, frozenset[str]] = {}
        # Targets whose addresses changed at a lookup (when it started) not yet confirmed by a
        # later one (see ``_note``).
        self._unconfirmed: dict[str, float] = {}
        # The lookup of each target in progress: when it started, and the lookup.
        self._lookups: dict[str, tuple[float, asyncio.Task[int]]] = {}
        # When the last lookup of each target that failed started (cleared by one that did not).
        self._failed: dict[str, float] = {}

    def last(self, target: str) -> int | None:
        """The last count of ``target``; None before one finished."""
        counted = self._counted.get(target)
        return None if counted is None else counted[1]

    def has_addresses(self, target: str) -> bool:
        """Whether the last count of ``target`` found an address, for a call that must not
        wait for a lookup: when that count is older than ``DNS_RECOUNT_S``, a recount starts
        in the background (unless one runs, or one failed in the last ``DNS_RETRY_S``)."""
        counted = self._counted.get(target)
        if counted is None or not counted[1]:
            return False
        now = time.monotonic()
        if (
            now - counted[0] >= DNS_RECOUNT_S
            and target not in self._lookups
            and not self._failed_within(target, now)
        ):
            self._start(target, now)
        return True

    async def count(self, target: str, *, since: float | None = None) -> int:
        """How many addresses the ``dns:`` target ``target`` resolves to now.

        With ``since`` (a ``time.monotonic()``), from a lookup started then or later (one
        in progress is shared); without, a positive count from the last ``DNS_RECOUNT_S``
        serves too, and any last count after a lookup failed in the last ``DNS_RETRY_S``.
        Raises ``AddressLookupError`` when the lookup failed (or, without ``since``, failed
        in the last ``DNS_RETRY_S`` and nothing was counted before).
        """
        now = time.monotonic()
        counted = self._counted.get(target)
        if counted is not None:
            started, addresses = counted
            if started >= (now - DNS_RECOUNT_S if since is None else since) and (
                addresses or since is not None
            ):
                return addresses
        if since is None and self._failed_within(target, now):
            if counted is not None:
                return counted[1]
            raise AddressLookupError(
                f"looking up {target} failed in the last {DNS_RETRY_S:g} s; not yet retried"
            )
        running = self._lookups.get(target)
        if running is None or (since is not None and running[0] < since):
            running = self._start(target, now)
        # Shielded: a caller cancelled while waiting leaves the lookup to the others.
        return await asyncio.shield(running[1])

    def _failed_within(self, target: str, now: float) -> bool:
        failed = self._failed.get(target)
        return failed is not None and now - failed < DNS_RETRY_S

    def _start(self, target: str, now: float) -> tuple[float, asyncio.Task[int]]:
        """Start a lookup of ``target`` (on the running loop), shared by whoever asks."""
        name = dns_name(target)
        if name is None:
            raise ValueError(f"{target!r} is not a dns: target")
        task = asyncio.get_running_loop().create_task(self._lookup(target, name, now))
        task.add_done_callback(retrieved)
        running = (now, task)
        self._lookups[target] = running
        return running

    async def _lookup(self, target: str, name: DnsName, started: float) -> int:
        try:
            addresses = await self._lookup_addresses(name)
        except OSError:
            self._failed[target] = started
            raise
        finally:
            running = self._lookups.get(target)
            if running is not None and running[0] == started:
                del self._lookups[target]
        counted = self._counted.get(target)
        if counted is None or counted[0] <= started:
            self._counted[target] = (started, len(addresses))
            self._failed.pop(target, None)
            self._note(target, addresses, started)
        return len(addresses)

    def _note(self, target: str, addresses: frozenset[str], started: float) -> None:
        """Keep ``addresses`` as ``target``'s, telling ``changed`` when they differ from the
        last lookup's, and once more when a lookup started ``DNS_RECOUNT_S`` or more after
        that one finds them again: the channel opened after the change resolves the name
        itself, and may have read a DNS cache (CoreDNS keeps an answer 5 s) not yet updated;
        renewed once more, it reads the settled one (an earlier lookup, a held call's, may
        read the same cache). A failing ``changed`` is logged: the count stands."""
        before = self._addresses.get(target)
        self._addresses[target] = addresses
        if before is None:
            return
        if before != addresses:
            self._unconfirmed[target] = started
        elif started - self._unconfirmed.get(target, math.inf) >= DNS_RECOUNT_S:
            del self._unconfirmed[target]
        else:
            return
        if self._changed is not None:
            try:
                self._changed(target, started)
            except Exception:  # a renewal is an optimisation: never fail the lookup's callers
                _LOG.exception("renewing the channels to %s failed", target)


def retrieved(task: asyncio.Future[Any]) -> None:
    """Mark the error of a shared task ``task`` as retrieved (a done callback): every caller
    waiting for it may have been cancelled, and asyncio would log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def service_without_pods(
    endpoints: Sequence[Endpoint], counts: AddressCounts, *, since: float | None = None
) -> str:
    """The DNS name behind ``endpoints`` when every one is a ``dns:`` target that resolves to
    no address (a headless Service with no ready pod: its group is at zero, or its pods are
    not ready yet); "" otherwise: no endpoint, another kind of target, an address found, or a
    lookup that failed (a timeout or a server failure stays the transport's to report).
    ``since``: as ``AddressCounts.count``'s; without it, an endpoint whose last count found an
    address answers at once (``AddressCounts.has_addresses``), so the calls to a group with
    pods up make no lookup."""
    names = [dns_name(endpoint.target) for endpoint in endpoints]
    if not names or any(name is None for name in names):
        return ""
    for endpoint in endpoints:
        if since is None and counts.has_addresses(endpoint.target):
            return ""  # pods were up: no call waits for a lookup (a recount runs behind)
        try:
            if await counts.count(endpoint.target, since=since):
                return ""
        except OSError:  # AddressLookupError, or the network itself failing the lookup
            return ""
    first = names[0]
    assert first is not None
    return first.host
