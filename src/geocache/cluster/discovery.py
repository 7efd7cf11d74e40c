"""Seeds by name: `host:port`, `dns:NAME:PORT` and `srv:_NAME._tcp.DOMAIN`, resolved at
start and again every RESOLVE_INTERVAL_S.

`--seeds` is a comma-separated list of:

- `host:port` (an IPv6 host in brackets): one seed, dialed as given.
- `dns:NAME:PORT`: every A and AAAA record of NAME, each at PORT. A Kubernetes headless
  Service or a round-robin name lists every node, so one name is enough.
- `srv:_NAME._tcp.DOMAIN`: every SRV record's target (its A/AAAA records) at the
  record's port, lower priority first.

Names go through the system's resolver, or the server `--dns-server HOST:PORT` names
(tests, split-horizon setups). A name that does not resolve now is not an error: the
node starts alone and joins when it does, since the nodes behind a headless Service
appear in DNS only once they run. Each resolution hands the whole list of addresses to
a callback; membership (swim.py) syncs with the addresses it has not seen yet and keeps
the list as the seeds it retries while silent, so a name that now points elsewhere
(pods rescheduled with new addresses) feeds later joins.

The parsing is pure; the resolver is a seam (`Resolver`, one method per record kind)
with dnspython behind it, so tests resolve against a server they run or a fake.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("geocache.discovery")

# 5 s: a node rescheduled with a new address is found by its peers within seconds, and a
# few queries per name per 5 s is nothing for a DNS server (or CoreDNS's cache).
RESOLVE_INTERVAL_S = 5.0
# 2 s for one name's answers: a resolver that does not answer by then will be asked again
# at the next interval; start-up waits at most this long per name before joining.
RESOLVE_TIMEOUT_S = 2.0
# A seed list names a few nodes or names; more is a mistake (as swim.MAX_SEEDS).
MAX_SEED_SPECS = 64


@dataclass(frozen=True, slots=True)
class StaticSeed:
    """`host:port`: one address, dialed as given."""

    addr: str


@dataclass(frozen=True, slots=True)
class DnsSeed:
    """`dns:NAME:PORT`: every A/AAAA record of `name`, at `port`."""

    name: str
    port: int


@dataclass(frozen=True, slots=True)
class SrvSeed:
    """`srv:_NAME._tcp.DOMAIN`: every SRV record's target at its port."""

    name: str


Seed = StaticSeed | DnsSeed | SrvSeed


def join_host_port(host: str, port: int) -> str:
    """`host:port`, an IPv6 address in brackets (as peers.tcp_dial reads it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"seed {spec!r}: the port must be 1..65535")
    return int(text)


def parse_seed(spec: str) -> Seed:
    """One seed from its text; ValueError saying what is wrong."""
    spec = spec.strip()
    if spec.startswith("dns:"):
        name, sep, port = spec[4:].rpartition(":")
        if not sep or not name:
            raise ValueError(f"seed {spec!r}: a DNS seed is dns:NAME:PORT")
        return DnsSeed(name.rstrip("."), _port(port, spec))
    if spec.startswith("srv:"):
        name = spec[4:].rstrip(".")
        labels = name.split(".")
        if len(labels) < 3 or not labels[0].startswith("_") or labels[1] not in ("_tcp", "_udp"):
            raise ValueError(f"seed {spec!r}: an SRV seed is srv:_NAME._tcp.DOMAIN")
        return SrvSeed(name)
    host, sep, port = spec.rpartition(":")
    if not sep or not host.strip("[]"):
        raise ValueError(f"seed {spec!r} is not host:port, dns:NAME:PORT or srv:_NAME._tcp.DOMAIN")
    _port(port, spec)
    return StaticSeed(spec)


def parse_seeds(text: str) -> list[Seed]:
    """Every seed of a comma-separated list (blank entries skipped)."""
    seeds = [parse_seed(part) for part in text.split(",") if part.strip()]
    if len(seeds) > MAX_SEED_SPECS:
        raise ValueError(f"at most {MAX_SEED_SPECS} seeds (names count once)")
    return seeds


def is_named(seeds: Sequence[Seed]) -> bool:
    """Whether any seed needs DNS (and so is resolved again every interval)."""
    return any(not isinstance(seed, StaticSeed) for seed in seeds)


class Resolver(Protocol):
    """Answers for one name; an empty list when it has none (or none now)."""

    async def addresses(self, name: str) -> list[str]:
        """The A and AAAA records of `name`, as address text."""
        ...

    async def services(self, name: str) -> list[tuple[str, int]]:
        """The SRV records of `name` as (target, port), lower priority first."""
        ...


def split_server(server: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) of a DNS server; the port defaults to 53."""
    host, sep, port = server.rpartition(":")
    if not sep or "]" in port or (":" in host and not host.startswith("[")):
        host, port = server, "53"
    host = host.strip("[]")
    ipaddress.ip_address(host)  # ValueError: a DNS server is named by its address
    return host, _port(port, server)


class DnsResolver:
    """dnspython's asyncio resolver: the system's configuration, or one server."""

    def __init__(self, server: str = "") -> None:
        import dns.asyncresolver

        self._resolver = dns.asyncresolver.Resolver(configure=not server)
        if server:
            host, port = split_server(server)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        self._resolver.lifetime = RESOLVE_TIMEOUT_S

    async def addresses(self, name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            found += [rr.to_text() for rr in await self._query(name, rdtype)]
        return found

    async def services(self, name: str) -> list[tuple[str, int]]:
        records = sorted(await self._query(name, "SRV"), key=lambda r: (r.priority, -r.weight))
        return [(r.target.to_text().rstrip("."), int(r.port)) for r in records]

    async def _query(self, name: str, rdtype: str) -> list[Any]:
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver.resolve(name, rdtype, search=True)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        except dns.exception.Timeout:
            log.warning("DNS timed out", extra={"name": name, "type": rdtype})
            return []
        return list(answer)


async def resolve_seeds(seeds: Sequence[Seed], resolver: Resolver) -> list[str]:
    """The addresses the seeds stand for now, in order, without repeats."""
    found: list[str] = []
    for seed in seeds:
        if isinstance(seed, StaticSeed):
            found.append(seed.addr)
        elif isinstance(seed, DnsSeed):
            found += [join_host_port(ip, seed.port) for ip in await resolver.addresses(seed.name)]
        else:
            for target, port in await resolver.services(seed.name):
                found += [join_host_port(ip, port) for ip in await resolver.addresses(target)]
    return list(dict.fromkeys(found))


class NoResolver:
    """The null resolver of a seed list without names: asking it is a bug."""

    async def addresses(self, name: str) -> list[str]:
        raise AssertionError(f"no resolver for {name}")

    async def services(self, name: str) -> list[tuple[str, int]]:
        raise AssertionError(f"no resolver for {name}")


class SeedWatcher:
    """Resolves the seeds at start and, when any is a name, every `interval_s`, handing
    each changed list of addresses to `on_addrs` (the last good list stays when a
    resolution finds nothing)."""

    def __init__(
        self,
        seeds: Sequence[Seed],
        resolver: Resolver,
        on_addrs: Callable[[list[str]], None],
        interval_s: float = RESOLVE_INTERVAL_S,
    ) -> None:
        self.seeds = list(seeds)
        self._resolver = resolver
        self._on_addrs = on_addrs
        self._interval_s = interval_s
        self.addrs: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def resolve(self, notify: bool = True) -> list[str]:
        """Resolve now; `on_addrs` hears of a list that differs from the last one (unless
        `notify` is off: the first resolution, which the caller joins with itself)."""
        try:
            addrs = await resolve_seeds(self.seeds, self._resolver)
        except Exception as exc:  # a resolver's failure must not stop the node
            log.warning("seeds did not resolve", extra={"error": repr(exc)})
            addrs = []
        if addrs and addrs != self.addrs:
            if self.addrs or is_named(self.seeds):
                log.info("seeds resolved", extra={"addrs": ",".join(addrs)})
            self.addrs = addrs
            if notify:
                self._on_addrs(addrs)
        return self.addrs

    def start(self) -> None:
        if is_named(self.seeds) and self._task is None:
            self._task = asyncio.create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.resolve()
