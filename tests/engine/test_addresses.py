"""Counting the addresses behind a ``dns:`` target as gRPC's resolver finds them: at the DNS
server its authority names (a real DNS server on 127.0.0.1), else through the system's
resolver; NXDOMAIN and no data count none, a timeout or a server failure is a failed lookup;
and calls share the lookups (``AddressCounts``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from chalk.catalog import Endpoint
from chalk.catalog.records import Replica, Route
from chalk.engine import addresses
from chalk.engine.addresses import (
    AddressCounts,
    AddressLookupError,
    DnsName,
    dns_name,
    lookup_addresses,
    service_without_pods,
)
from chalk.engine.errors import ModelUnavailableError
from chalk.engine.holds import HeldCalls
from chalk.engine.routes import RouteCache
from tests.support.dns_service import ClusterDns, cluster_dns

SERVICE = "ner.ml.svc.cluster.local"
# Long enough for a DNS server on loopback, short enough for a test of one that never answers.
QUICK_TIMEOUT_S = 0.5


@pytest.fixture
def dns() -> Iterator[ClusterDns]:
    with cluster_dns(SERVICE) as running:
        yield running


def _lookup(dns: ClusterDns, host: str = SERVICE) -> frozenset[str]:
    name = DnsName(host, 8080, ("127.0.0.1", dns.port))
    return asyncio.run(lookup_addresses(name, timeout_s=QUICK_TIMEOUT_S))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("dns:///ner.ml.svc.cluster.local:8080", DnsName(SERVICE, 8080)),
        ("dns:ner.ml:80", DnsName("ner.ml", 80)),
        ("dns://10.96.0.10/ner:9", DnsName("ner", 9, ("10.96.0.10", 53))),
        ("dns://10.96.0.10:5353/ner", DnsName("ner", 443, ("10.96.0.10", 5353))),
        ("dns://[fd00::a]:53/[fd00::1]:7", DnsName("fd00::1", 7, ("fd00::a", 53))),
        ("127.0.0.1:7001", None),
        ("ner.example.com:443", None),
    ],
    ids=["no-authority", "no-slashes", "authority", "authority-port", "ipv6", "ip", "host"],
)
def test_a_targets_name_and_dns_server_are_read_as_grpc_reads_them(
    target: str, expected: DnsName | None
) -> None:
    assert dns_name(target) == expected


def test_a_name_with_addresses_finds_each_once(dns: ClusterDns) -> None:
    dns.pods = ["127.0.0.2", "127.0.0.3", "127.0.0.2"]

    assert _lookup(dns) == {"127.0.0.2", "127.0.0.3"}


def test_a_name_that_does_not_exist_has_none(dns: ClusterDns) -> None:
    assert _lookup(dns) == frozenset()  # NXDOMAIN: a headless Service with no ready pod


def test_a_name_with_no_address_record_has_none(dns: ClusterDns) -> None:
    dns.pods = ["127.0.0.2"]
    dns.no_data = True  # the name exists, with no A or AAAA record

    assert _lookup(dns) == frozenset()


@pytest.mark.parametrize("failure", ["silent", "servfail"], ids=["timeout", "servfail"])
def test_a_server_that_times_out_or_fails_is_a_failed_lookup(dns: ClusterDns, failure: str) -> None:
    dns.pods = ["127.0.0.2"]
    setattr(dns, failure, True)

    with pytest.raises(AddressLookupError, match=rf"looking up {SERVICE} at 127\.0\.0\.1:"):
        _lookup(dns)


def test_a_dns_server_named_by_host_name_is_refused_as_grpc_refuses_it() -> None:
    with pytest.raises(AddressLookupError, match="names DNS server 'kube-dns': expected an IP"):
        asyncio.run(lookup_addresses(DnsName(SERVICE, 8080, ("kube-dns", 53))))


def test_without_an_authority_the_system_resolver_reads_etc_hosts() -> None:
    assert asyncio.run(lookup_addresses(DnsName("localhost", 80)))


def test_calls_share_one_lookup_and_a_positive_count_stands(dns: ClusterDns) -> None:
    dns.pods = ["127.0.0.2"]
    target = dns.target(8080)

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        counts = AddressCounts()
        together = await asyncio.gather(*(counts.count(target) for _ in range(50)))
        asked = [dns.questions]
        dns.pods = []
        counted = [await counts.count(target)]  # a positive count stands: no lookup
        asked.append(dns.questions)
        counted.append(await counts.count(target, since=time.monotonic()))
        asked.append(dns.questions)
        counted.append(await counts.count(target))  # a zero does not stand: looked up again
        asked.append(dns.questions)
        return together, counted, asked

    together, counted, asked = asyncio.run(scenario())

    assert together == [1] * 50
    assert counted == [1, 0, 0]
    # One lookup (A, then AAAA) for the fifty; none for the standing count; NXDOMAIN ends a
    # lookup at its A question.
    assert asked == [2, 2, 3, 4]


def test_a_service_without_pods_is_told_only_when_every_lookup_says_so(dns: ClusterDns) -> None:
    service = [Endpoint(dns.target(8080))]

    async def verdicts() -> list[str]:
        counts = AddressCounts()
        found = [await service_without_pods(service, counts)]
        dns.pods = ["127.0.0.2"]
        found.append(await service_without_pods(service, counts, since=time.monotonic()))
        found.append(await service_without_pods([*service, Endpoint("127.0.0.1:1")], counts))
        dns.silent = True
        quick = AddressCounts(functools.partial(lookup_addresses, timeout_s=QUICK_TIMEOUT_S))
        found.append(await service_without_pods(service, quick))
        found.append(await service_without_pods([], counts))
        return found

    assert asyncio.run(verdicts()) == [SERVICE, "", "", "", ""]


TARGET = f"dns:///{SERVICE}:8080"
# A guard for a test whose step must not wait for a lookup that never ends (it hangs without).
GUARD_S = 10.0


class _Lookups:
    """A stand-in for ``lookup_addresses``: answers from ``answers`` in turn (the addresses,
    a count of them, an error to raise, or None: a lookup that never ends), counting the
    lookups made."""

    def __init__(self, *answers: int | frozenset[str] | OSError | None) -> None:
        self.answers = list(answers)
        self.made = 0

    async def __call__(self, name: DnsName) -> frozenset[str]:
        answer = self.answers[min(self.made, len(self.answers) - 1)]
        self.made += 1
        if answer is None:
            await asyncio.Event().wait()
        if isinstance(answer, OSError):
            raise answer
        if isinstance(answer, frozenset):
            return answer
        return frozenset(f"10.0.0.{pod}" for pod in range(answer))


class _Catalog:
    def __init__(self, status: str = "Ready") -> None:
        self.route = Route(
            "ner", "ner", 1, pa.schema([]), pa.schema([]), 8080, (Endpoint(TARGET),), status=status
        )

    def resolve(self, name: str) -> Route:
        return self.route

    def replica_at(self, group: str, endpoint: str) -> Replica | None:
        return None


def test_with_pods_up_a_route_read_never_waits_for_a_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups = _Lookups(2, None)  # pods counted, then a DNS server that never answers

    async def scenario() -> list[bool]:
        counts = AddressCounts(lookups)
        assert await counts.count(TARGET) == 2
        monkeypatch.setattr(addresses, "DNS_RECOUNT_S", 0.0)  # the count is old now
        cache = RouteCache(_Catalog(), counts)
        held = []
        for _ in range(3):
            routed = await asyncio.wait_for(cache.resolve("t.y", "model.ner"), GUARD_S)
            held.append(routed.held)
            cache._routes.clear()  # past ROUTE_TTL_S: read again
        return held

    assert asyncio.run(scenario()) == [False, False, False]
    assert lookups.made == 2  # the first count, and one recount in the background


def test_after_a_failed_lookup_the_last_count_stands_until_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups = _Lookups(2, AddressLookupError("timed out"), 0)
    monkeypatch.setattr(addresses, "DNS_RECOUNT_S", 0.0)

    async def scenario() -> list[int | str]:
        counts = AddressCounts(lookups)
        found: list[int | str] = [await counts.count(TARGET)]
        try:
            await counts.count(TARGET)
        except AddressLookupError as error:
            found.append(str(error))
        found.append(await counts.count(TARGET))  # backing off: the last count, no lookup
        found.append(lookups.made)
        found.append(await counts.count(TARGET, since=time.monotonic()))  # a held call's
        return found

    assert asyncio.run(scenario()) == [2, "timed out", 2, 2, 0]


def test_a_lookup_that_finds_other_addresses_says_so_and_the_next_confirms_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Any later lookup may confirm (a confirming one must start DNS_RECOUNT_S after the
    # change: the next test). Two pods; the same two; a third added; the three again; a failed
    # lookup; one of the three replaced (as many as before); the same; none (scaled to zero);
    # none again.
    monkeypatch.setattr(addresses, "DNS_RECOUNT_S", 0.0)
    three = frozenset({"10.0.0.0", "10.0.0.1", "10.0.0.2"})
    replaced = frozenset({"10.0.0.0", "10.0.0.1", "10.0.0.9"})
    failed = AddressLookupError("timed out")
    lookups = _Lookups(2, 2, three, three, failed, replaced, replaced, 0, 0)
    told: list[int] = []  # after which lookup (1, 2, ...) ``changed`` was told

    async def scenario() -> None:
        counts = AddressCounts(lookups, changed=lambda target, at: told.append(lookups.made))
        for _ in range(9):
            with contextlib.suppress(AddressLookupError):
                await counts.count(TARGET, since=time.monotonic())

    asyncio.run(scenario())

    # The first lookup has nothing to differ from; a failed one changes nothing.
    assert told == [3, 4, 6, 7, 8, 9]


def test_only_a_lookup_past_the_dns_cache_confirms_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A held call's lookup right after the change may read the same stale cache as the new
    # channel did: it confirms nothing; one a recount period later does.
    monkeypatch.setattr(addresses, "DNS_RECOUNT_S", 0.3)
    lookups = _Lookups(1, 2, 2, 2, 2)
    told: list[int] = []

    async def scenario() -> None:
        counts = AddressCounts(lookups, changed=lambda target, at: told.append(lookups.made))
        for pause in (0.0, 0.0, 0.05, 0.35, 0.0):
            await asyncio.sleep(pause)
            await counts.count(TARGET, since=time.monotonic())

    asyncio.run(scenario())

    assert told == [2, 4]


def test_a_lookup_older_than_the_last_one_counted_tells_nothing() -> None:
    slow = asyncio.Event()
    changes: list[float] = []

    async def lookups(name: DnsName) -> frozenset[str]:
        if not slow.is_set():  # the first lookup: answers after the second
            slow.set()
            await asyncio.sleep(0.2)
            return frozenset({"10.0.0.1", "10.0.0.3"})
        return frozenset({"10.0.0.2"})

    async def scenario() -> int | None:
        counts = AddressCounts(lookups, changed=lambda target, at: changes.append(at))
        first = asyncio.ensure_future(counts.count(TARGET, since=time.monotonic()))
        await slow.wait()
        await counts.count(TARGET, since=time.monotonic())  # a newer lookup, done first
        await first
        return counts.last(TARGET)

    assert asyncio.run(scenario()) == 1
    assert changes == []


def test_a_held_call_fails_at_its_bound_while_a_lookup_is_slow() -> None:
    lookups = _Lookups(None)  # the system resolver retrying a DNS server that does not answer
    catalog = _Catalog(status="Idle")
    held = HeldCalls(catalog, hold_timeout_s=0.3, addresses=AddressCounts(lookups))

    async def hold() -> None:
        await asyncio.wait_for(
            held.until_ready("t.y", "model.ner", catalog.route, no_pod=SERVICE, deadline_s=GUARD_S),
            GUARD_S,
        )

    bound = r"expected one within the hold bound of 0\.3 s"
    with pytest.raises(ModelUnavailableError, match=bound):
        asyncio.run(hold())
    assert lookups.made == 1


def test_a_lookup_through_the_system_resolver_is_bounded_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(name: DnsName) -> frozenset[str]:
        await asyncio.Event().wait()
        return frozenset()

    monkeypatch.setattr(addresses, "_lookup_by_system", never)

    with pytest.raises(AddressLookupError, match=f"looking up {SERVICE} failed: no answer within"):
        asyncio.run(lookup_addresses(DnsName(SERVICE, 8080), timeout_s=QUICK_TIMEOUT_S))
