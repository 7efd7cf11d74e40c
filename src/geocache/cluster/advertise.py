"""Where peers reach this node: `--advertise-addr`, or the address this node binds, or,
for a wildcard bind (`0.0.0.0`, `::`), the local address of the interface toward the
first seed.

A wildcard is no address to dial: a node that advertised `0.0.0.0:7379` would have
every peer dial itself. The route toward the first seed is what the kernel would use
to reach it (a UDP socket's connect sends nothing, it only picks the route), so the
address found is one that network can reach. With no seed to look toward (the first
node of a cluster, mDNS alone) the node cannot tell which of its addresses peers use,
and refuses to start, saying to set `--advertise-addr`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from geocache.cluster.discovery import (
    DnsSeed,
    StaticSeed,
    join_host_port,
    parse_seeds,
    split_server,
)
from geocache.config import NodeConfig

WILDCARDS = frozenset({"0.0.0.0", "::", "", "*"})
# Any port does for a route lookup: nothing is sent.
ROUTE_PROBE_PORT = 9

Route = Callable[[str], str]


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in WILDCARDS


def local_address_toward(host: str) -> str:
    """The local address the kernel would send from to reach `host` (nothing is sent)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(host, ROUTE_PROBE_PORT, type=socket.SOCK_DGRAM)[
        0
    ]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(sockaddr)
        return str(probe.getsockname()[0])


def first_seed_host(config: NodeConfig) -> str | None:
    """The host of the first seed, an address when DNS must say it (None: no seed)."""
    seeds = parse_seeds(config.seeds)
    if not seeds:
        return None
    first = seeds[0]
    if isinstance(first, StaticSeed):
        return first.addr.rpartition(":")[0].strip("[]")
    name = first.name if isinstance(first, DnsSeed) else _srv_target(first.name, config)
    if name is None or not config.dns_server:
        return name  # the system's resolver answers getaddrinfo
    return _resolve_with(name, config.dns_server)


def _resolver(server: str) -> object:
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=not server)
    if server:
        host, port = split_server(server)
        resolver.nameservers, resolver.port = [host], port
    resolver.lifetime = 2.0
    return resolver


def _srv_target(name: str, config: NodeConfig) -> str | None:
    import dns.exception
    import dns.resolver

    resolver = _resolver(config.dns_server)
    assert isinstance(resolver, dns.resolver.Resolver)
    try:
        records = sorted(resolver.resolve(name, "SRV"), key=lambda r: r.priority)
    except dns.exception.DNSException:
        return None
    return records[0].target.to_text().rstrip(".") if records else None


def _resolve_with(name: str, server: str) -> str | None:
    import dns.exception
    import dns.resolver

    resolver = _resolver(server)
    assert isinstance(resolver, dns.resolver.Resolver)
    for rdtype in ("A", "AAAA"):
        try:
            return str(next(iter(resolver.resolve(name, rdtype))).to_text())
        except (dns.exception.DNSException, StopIteration):
            continue
    return None


def advertise_addr(config: NodeConfig, route: Route = local_address_toward) -> tuple[str, str]:
    """(address, why): where peers reach this node, and how that was chosen.

    ValueError when the node binds a wildcard, has no --advertise-addr and no seed
    (or none that resolves) to look toward."""
    if config.advertise_addr:
        return config.advertise_addr, "--advertise-addr"
    # Peers dial the TLS port when peer links run TLS (--tls-cluster).
    port = config.tls_port if config.tls_cluster else config.port
    if not is_wildcard(config.bind):
        return join_host_port(config.bind.strip("[]"), port), "the bind address"
    host = first_seed_host(config)
    if host is None:
        raise ValueError(
            f"bound to {config.bind or 'every address'} with no seed to look toward:"
            " cannot tell which address peers reach this node at; set --advertise-addr"
        )
    try:
        local = route(host)
    except OSError as exc:
        raise ValueError(
            f"no route toward the first seed {host} ({exc}); set --advertise-addr"
        ) from exc
    if ipaddress.ip_address(local).is_unspecified:
        raise ValueError(f"no address toward {host}; set --advertise-addr")
    return join_host_port(local, port), f"the interface toward the first seed {host}"


def with_advertise_addr(
    config: NodeConfig, route: Route = local_address_toward
) -> tuple[NodeConfig, str]:
    """`config` with its advertise address filled in (and, on a wildcard bind with no
    node id, that address as the node id: `0.0.0.0:7379` would name every node alike)."""
    addr, why = advertise_addr(config, route)
    changes = {"advertise_addr": addr}
    if not config.node_id and is_wildcard(config.bind):
        changes["node_id"] = addr
    return config.replace(**changes), why
