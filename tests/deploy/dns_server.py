"""A small authoritative DNS server for tests (dnslib): A, AAAA and SRV records that a
test may change while it runs, served over UDP and TCP on one address.

Only names in `records` are answered (NXDOMAIN otherwise); nothing is forwarded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

# A short TTL: tests change records and resolve again at once.
TTL_S = 1


@dataclass
class Zone(BaseResolver):  # type: ignore[misc]
    """name -> addresses, and name -> SRV (priority, weight, port, target) records."""

    addresses: dict[str, list[str]] = field(default_factory=dict)
    services: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)
    queries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_addresses(self, name: str, addrs: list[str]) -> None:
        with self._lock:
            self.addresses[name.rstrip(".")] = list(addrs)

    def set_service(self, name: str, records: list[tuple[int, int, int, str]]) -> None:
        with self._lock:
            self.services[name.rstrip(".")] = list(records)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries += 1
            addrs = list(self.addresses.get(name, []))
            srvs = list(self.services.get(name, []))
        if name not in self.addresses and name not in self.services:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for addr in addrs:
            if qtype == "A" and ":" not in addr:
                reply.add_answer(RR(name, QTYPE.A, rdata=A(addr), ttl=TTL_S))
            elif qtype == "AAAA" and ":" in addr:
                reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(addr), ttl=TTL_S))
        if qtype == "SRV":
            for priority, weight, port, target in srvs:
                rdata = SRV(priority=priority, weight=weight, port=port, target=target)
                reply.add_answer(RR(name, QTYPE.SRV, rdata=rdata, ttl=TTL_S))
        return reply


# Tries to find a port free for both UDP and TCP.
ATTEMPTS = 20


class TestDnsServer:
    """`Zone` served on `address:port` (port 0: a free one) until `stop()`."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, zone: Zone, address: str = "127.0.0.1", port: int = 0) -> None:
        self.zone = zone
        self.address = address
        quiet = _Quiet()
        # UDP and TCP on one port: a free UDP port may be taken for TCP (an outgoing
        # connection's ephemeral port), so try again, closing what was opened.
        for attempt in range(ATTEMPTS):
            self._udp = DNSServer(zone, address=address, port=port, tcp=False, logger=quiet)
            self.port = int(self._udp.server.server_address[1])
            try:
                self._tcp = DNSServer(zone, address=address, port=self.port, tcp=True, logger=quiet)
            except OSError:
                self._udp.server.server_close()
                if port or attempt == ATTEMPTS - 1:
                    raise
                continue
            break
        for server in (self._udp, self._tcp):
            server.start_thread()

    @property
    def addr(self) -> str:
        return f"{self.address}:{self.port}"

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.stop()
            server.server.server_close()


class _Quiet:
    """dnslib's logger prints every query; the tests need none of it."""

    def __getattr__(self, name: str) -> object:
        return lambda *args, **kwargs: None
