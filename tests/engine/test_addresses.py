"""Counting the addresses behind a ``dns:`` target as gRPC's resolver finds them: at the DNS
server its authority names (a real DNS server on 127.0.0.1), else through the system's
resolver; NXDOMAIN and no data count none, a timeout or a server failure is a failed lookup;
and calls share the lookups (``AddressCounts``)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator

import pytest

from chalk.catalog import Endpoint
from chalk.engine.addresses import (
    AddressCounts,
    AddressLookupError,
    DnsName,
    count_addresses,
    dns_name,
    service_without_pods,
)
from tests.support.dns_service import ClusterDns, cluster_dns

SERVICE = "ner.ml.svc.cluster.local"
# Long enough for a DNS server on loopback, short enough for a test of one that never answers.
QUICK_TIMEOUT_S = 0.5


@pytest.fixture
def dns() -> Iterator[ClusterDns]:
    with cluster_dns(SERVICE) as running:
        yield running


def _count(dns: ClusterDns, host: str = SERVICE) -> int:
    name = DnsName(host, 8080, ("127.0.0.1", dns.port))
    return asyncio.run(count_addresses(name, timeout_s=QUICK_TIMEOUT_S))


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


def test_a_name_with_addresses_counts_each_once(dns: ClusterDns) -> None:
    dns.pods = ["127.0.0.2", "127.0.0.3", "127.0.0.2"]

    assert _count(dns) == 2


def test_a_name_that_does_not_exist_counts_none(dns: ClusterDns) -> None:
    assert _count(dns) == 0  # NXDOMAIN: a headless Service with no ready pod


def test_a_name_with_no_address_record_counts_none(dns: ClusterDns) -> None:
    dns.pods = ["127.0.0.2"]
    dns.no_data = True  # the name exists, with no A or AAAA record

    assert _count(dns) == 0


@pytest.mark.parametrize("failure", ["silent", "servfail"], ids=["timeout", "servfail"])
def test_a_server_that_times_out_or_fails_is_a_failed_lookup(dns: ClusterDns, failure: str) -> None:
    dns.pods = ["127.0.0.2"]
    setattr(dns, failure, True)

    with pytest.raises(AddressLookupError, match=rf"looking up {SERVICE} at 127\.0\.0\.1:"):
        _count(dns)


def test_a_dns_server_named_by_host_name_is_refused_as_grpc_refuses_it() -> None:
    with pytest.raises(AddressLookupError, match="names DNS server 'kube-dns': expected an IP"):
        asyncio.run(count_addresses(DnsName(SERVICE, 8080, ("kube-dns", 53))))


def test_without_an_authority_the_system_resolver_reads_etc_hosts() -> None:
    assert asyncio.run(count_addresses(DnsName("localhost", 80))) >= 1


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
        quick = AddressCounts(functools.partial(count_addresses, timeout_s=QUICK_TIMEOUT_S))
        found.append(await service_without_pods(service, quick))
        found.append(await service_without_pods([], counts))
        return found

    assert asyncio.run(verdicts()) == [SERVICE, "", "", "", ""]
