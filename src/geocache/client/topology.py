"""The cluster map as the client sees it: nodes, regions, states, and each key's owners.

Built from a `GC.TOPOLOGY` reply: a list of maps (RESP2 sends each map as a flat array
of key, value) with id, region, addr, state, incarnation and replicas. Placement matches
what the nodes compute, exactly: a key falls in a digest bucket (cluster/digest.py), and
the bucket's owners are the first `replicas` of the region's live members (alive or
suspect, as SWIM counts them) ranked by rendezvous weight (cluster/placement.py). The
rest of the ranking orders the non-owners, which answer any key by forwarding it, so
the whole ranking is the client's failover order within a region.

Before the first reply, and against a server without `GC.TOPOLOGY` (a plain Redis), the
map is the seed list: each seed a node of its own, in one unnamed region, one copy.

A refresh merges the new view into the old one (`merge`), as SWIM merges records: per
node id, the higher incarnation wins, and at equal incarnations the graver state (a node
suspected or declared dead by someone). A node that just joined may not list every
member yet, so a live member missing from one view is kept; one missing from every view
for `FORGET_AFTER_S` is dropped, as is a dead or left one at once.

Addresses are what the nodes advertise; a node bound to a wildcard (0.0.0.0, ::) names
no host a client can dial, so the host we asked through stands in for it. A client
with `routes` dials another address for some of them (a delay relay), but still names
each node by the address the cluster gave it: routes change where bytes go, not the map.

Sans-IO and immutable once built (but for its cache): a refresh builds a new Topology.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from geocache.cluster import digest, placement

LIVE_STATES = frozenset({"alive", "suspect"})
# At one incarnation, a later state in this order overrides an earlier one (SWIM's rule).
_STATE_RANK = {"alive": 0, "suspect": 1, "dead": 2, "left": 3}
# A live member absent from every view for this long (seconds) is gone: longer than the
# membership takes to reach a new node (a second or two), shorter than anyone waits.
FORGET_AFTER_S = 60.0
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
SEED_REGION = ""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    region: str
    addr: str
    state: str = "alive"
    incarnation: int = 0
    replicas: int = 1

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def check_routes(routes: Mapping[str, str] | None) -> dict[str, str]:
    """A copy of a client's `routes` (node address -> address to dial), each checked."""
    checked = dict(routes or {})
    for addr, via in checked.items():
        split_addr(addr)
        split_addr(via)
    return checked


SCHEMES = {"redis://": False, "rediss://": True}


def parse_seeds(seeds: Sequence[str] | str) -> tuple[list[str], bool]:
    """Seed addresses without their scheme, and whether they ask for TLS: "host:port",
    "redis://host:port" (plaintext) or "rediss://host:port" (TLS), never mixed."""
    listed = [seeds] if isinstance(seeds, str) else list(seeds)
    addrs: list[str] = []
    tls: set[bool | None] = set()
    for seed in listed:
        scheme = next((s for s in SCHEMES if seed.lower().startswith(s)), "")
        addr = seed[len(scheme) :].rstrip("/")
        split_addr(addr)
        addrs.append(addr)
        tls.add(SCHEMES.get(scheme, False) if scheme else None)
    if True in tls and len(tls) > 1:
        raise ValueError("seeds mix rediss:// (TLS) with plaintext addresses")
    return addrs, True in tls


def split_addr(addr: str) -> tuple[str, int]:
    """("host", port) from "host:port" (an IPv6 host may be bracketed)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not a host:port address: {addr!r}")
    return host.strip("[]"), int(port)


class Topology:
    """One snapshot of the cluster map, with placement by bucket cached."""

    __slots__ = ("_live", "_rankings", "_replicas", "by_addr", "nodes", "via")

    def __init__(self, nodes: Iterable[NodeInfo], via: str | None = None) -> None:
        self.nodes: tuple[NodeInfo, ...] = tuple(sorted(nodes, key=lambda n: n.node_id))
        self.via = via  # the address this map came from (None: the seed list)
        self.by_addr = {n.addr: n for n in self.nodes}
        # Per region: live member ids sorted as the nodes sort them, and the copies.
        self._live: dict[str, list[NodeInfo]] = {}
        self._replicas: dict[str, int] = {}
        for node in self.nodes:
            if node.live:
                self._live.setdefault(node.region, []).append(node)
            self._replicas[node.region] = max(self._replicas.get(node.region, 1), node.replicas)
        self._rankings: dict[tuple[int, str], tuple[str, ...]] = {}

    @classmethod
    def from_seeds(cls, seeds: Sequence[str]) -> Topology:
        return cls(NodeInfo(node_id=s, region=SEED_REGION, addr=s) for s in seeds)

    @classmethod
    def from_reply(cls, reply: object, via: str) -> Topology:
        """Parse a GC.TOPOLOGY reply received from `via`; ValueError if it is not one."""
        if not isinstance(reply, list) or not reply:
            raise ValueError(f"GC.TOPOLOGY reply is not a non-empty list: {reply!r:.200}")
        fields = [_fields(item) for item in reply]
        nodes = [_node(f, via, alone=len(fields) == 1) for f in fields]
        return cls(nodes, via=via)

    def same_as(self, other: Topology) -> bool:
        return self.nodes == other.nodes

    @property
    def is_seed_list(self) -> bool:
        return self.via is None

    def regions(self) -> list[str]:
        return sorted(self._live)

    def region_of(self, addr: str) -> str | None:
        node = self.by_addr.get(addr)
        return None if node is None else node.region

    def live_addrs(self, region: str | None = None) -> list[str]:
        if region is not None:
            return [n.addr for n in self._live.get(region, ())]
        return [n.addr for nodes in self._live.values() for n in nodes]

    def replicas(self, region: str) -> int:
        return min(self._replicas.get(region, 1), len(self._live.get(region, ())))

    def ranking(self, bucket: int, region: str) -> tuple[str, ...]:
        """The region's live members for a bucket, owners first (primary first), as addrs."""
        cached = self._rankings.get((bucket, region))
        if cached is not None:
            return cached
        members = self._live.get(region, [])
        addr_of = {n.node_id: n.addr for n in members}
        ids = placement.owners(digest.bucket_token(bucket), list(addr_of), len(addr_of))
        ranked = self._rankings[(bucket, region)] = tuple(addr_of[i] for i in ids)
        return ranked

    def owners(self, key: bytes, region: str) -> tuple[str, ...]:
        """The addrs owning `key` in `region`, primary first (what GC.OWNERS answers there)."""
        ranked = self.ranking(digest.bucket_of(key), region)
        return ranked[: self.replicas(region)]


def merge(old: Topology, new: Topology, absent_since: dict[str, float], now: float) -> Topology:
    """`new` with what `old` knew better (see the module docstring).

    `absent_since` (node id -> first refresh it was missing from) is the caller's,
    updated here.
    """
    if old.is_seed_list:
        absent_since.clear()
        return new
    nodes = {n.node_id: n for n in new.nodes}
    for node in old.nodes:
        seen = nodes.get(node.node_id)
        if seen is None:
            since = absent_since.setdefault(node.node_id, now)
            if node.live and now - since < FORGET_AFTER_S:
                nodes[node.node_id] = node
            continue
        absent_since.pop(node.node_id, None)
        if _newer(node, seen):
            nodes[node.node_id] = node
    for node_id in [i for i in absent_since if i not in nodes]:
        del absent_since[node_id]
    return Topology(nodes.values(), via=new.via)


def _newer(a: NodeInfo, b: NodeInfo) -> bool:
    if a.incarnation != b.incarnation:
        return a.incarnation > b.incarnation
    return _STATE_RANK.get(a.state, 0) > _STATE_RANK.get(b.state, 0)


def _fields(item: object) -> dict[bytes, object]:
    if isinstance(item, dict):
        return {_text_key(k): v for k, v in item.items()}
    if isinstance(item, list) and len(item) % 2 == 0:
        return {_text_key(k): v for k, v in zip(item[::2], item[1::2], strict=True)}
    raise ValueError(f"a GC.TOPOLOGY entry is a map, not {item!r:.200}")


def _text_key(key: object) -> bytes:
    if not isinstance(key, bytes):
        raise ValueError(f"a GC.TOPOLOGY field name is a string, not {key!r:.50}")
    return key


def _node(fields: dict[bytes, object], via: str, alone: bool) -> NodeInfo:
    def text(name: bytes, default: str = "") -> str:
        value = fields.get(name, default.encode())
        if not isinstance(value, bytes):
            raise ValueError(f"GC.TOPOLOGY field {name!r} is not a string")
        return value.decode("utf-8", "replace")

    def number(name: bytes, default: int) -> int:
        value = fields.get(name, default)
        if isinstance(value, bytes) and value.lstrip(b"-").isdigit():
            return int(value)
        if not isinstance(value, int):
            raise ValueError(f"GC.TOPOLOGY field {name!r} is not an integer")
        return value

    addr = _dialable(text(b"addr"), via, alone)
    return NodeInfo(
        node_id=text(b"id") or addr,
        region=text(b"region"),
        addr=addr,
        state=text(b"state", "alive").lower(),
        incarnation=number(b"incarnation", 0),
        replicas=max(1, number(b"replicas", 1)),
    )


def _dialable(addr: str, via: str, alone: bool) -> str:
    """An address a client can connect to: wildcards and port 0 replaced by what we used."""
    via_host, via_port = split_addr(via)
    try:
        host, port = split_addr(addr)
    except ValueError:
        if alone:
            return via
        raise
    if port == 0:
        if not alone:
            raise ValueError(f"GC.TOPOLOGY gives port 0 for {addr!r}")
        port = via_port
    if host in _WILDCARD_HOSTS:
        host = via_host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
