"""A DNS server on 127.0.0.1 standing in for a cluster's DNS (dnslib), whose answers a test
changes: a headless Service's name with one A record per ready pod, NXDOMAIN while it has
none (the group at zero), or no answer at all (a DNS server that times out).

Targets name it in their authority, as gRPC's naming allows:
``dns://127.0.0.1:<port>/<service>:<port>`` (``ClusterDns.target``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer

__all__ = ["ClusterDns", "cluster_dns"]


class ClusterDns(BaseResolver):
    """Answers for one Service name: ``pods`` (A records), NXDOMAIN while there are none;
    ``no_data`` answers the name with no record; ``silent`` drops every question (the client
    times out); ``servfail`` fails them."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.pods: list[str] = []
        self.no_data = False
        self.silent = False
        self.servfail = False
        self.port = 0
        self.questions = 0
        self._lock = threading.Lock()

    def target(self, port: int) -> str:
        """The gRPC target of the Service's ``port``, asking this server."""
        return f"dns://127.0.0.1:{self.port}/{self.service}:{port}"

    def resolve(self, request: Any, handler: Any) -> Any:
        with self._lock:
            self.questions += 1
        if self.silent:
            raise DNSError("silent")  # dnslib logs it (to nowhere) and sends nothing back
        reply = request.reply()
        question = request.q
        if self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if self.no_data:
            return reply
        if str(question.qname).rstrip(".") != self.service or not self.pods:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype == QTYPE.A:
            for address in self.pods:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply  # any other question about the Service: no data


@contextmanager
def cluster_dns(service: str) -> Iterator[ClusterDns]:
    """A running ``ClusterDns`` for ``service`` (no pods yet), stopped on leaving."""
    answers = ClusterDns(service)
    server = DNSServer(answers, port=0, address="127.0.0.1", logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    answers.port = int(server.server.server_address[1])
    try:
        yield answers
    finally:
        server.stop()
