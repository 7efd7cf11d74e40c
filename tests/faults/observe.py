"""Reading what the nodes hold and think, for the runner's waits and the checker.

Everything is read with commands the product offers: `GC.TOPOLOGY` (who is alive),
`INFO` (counters, readiness), `GC.OWNERS` (a key's owners in the asking node's region)
and, on a connection that proved the cluster secret, `GC.BUCKET` over all 1024 buckets
(every (key, version, origin, tombstone) a node holds: what repair compares) and
`GC.FETCH` (a live entry's value and expiry). Final reads are plain GETs through every
node, as any client would make them.

A `Snapshot` is a plain value: the checker (checker.py) works on it without I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from geocache.cluster.digest import BUCKETS, decode_records

from . import wire
from .nodes import PORT, Node

# Introspection answers within milliseconds on a settled cluster; 5 s covers a loaded CI
# machine, and a node that does not answer in that time is a finding in itself.
READ_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Record:
    """What a node holds for a key: a live entry (value, expiry) or a tombstone."""

    version: int
    origin: str
    tombstone: bool
    value: str | None = None  # live entries only
    expires_at_ms: int = 0  # 0: no TTL
    # Listed by GC.BUCKET, but already expired when GC.FETCH asked (which shows no expired
    # entry): as good as the tombstone it is about to become, with the same version.
    expired: bool = False

    @property
    def ident(self) -> tuple[int, str]:
        return (self.version, self.origin)

    @property
    def dead(self) -> bool:
        """A tombstone, or an entry known to have expired."""
        return self.tombstone or self.expired


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node at the end of a run."""

    node_id: str
    region: str
    records: dict[str, Record]
    owners: dict[str, tuple[str, ...]]  # key -> owners in this node's region, primary first
    reads: dict[str, str | None]  # key -> what a GET through this node returned
    read_errors: dict[str, str]  # key -> the error of a GET that failed
    evicted_keys: int
    skipped_full: int  # keys repair and warm-up did not copy for want of room (INFO)


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_wall_ms: int
    views: dict[str, NodeView]
    # Evictions counted by earlier processes of a node (read just before it was killed).
    evicted_before: dict[str, int] = field(default_factory=dict)

    def room_losses(self, node_id: str) -> int:
        """Keys this node may lack for want of room: evicted, or not copied when full."""
        view = self.views[node_id]
        return view.evicted_keys + view.skipped_full + self.evicted_before.get(node_id, 0)


def text(value: object) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def as_map(item: object) -> dict[str, object]:
    """A RESP3 map, or a RESP2 flat array of name, value pairs."""
    if isinstance(item, dict):
        return {text(k): v for k, v in item.items()}
    if isinstance(item, list) and len(item) % 2 == 0:
        return {text(k): v for k, v in zip(item[::2], item[1::2], strict=True)}
    raise ValueError(f"not a map: {item!r:.100}")


def skipped_full(stats: dict[str, str]) -> int:
    """Keys repair and warm-up did not copy for want of room (INFO)."""
    return sum(int(stats.get(f"cluster_{kind}_skipped_full", "0")) for kind in ("repair", "warmup"))


def states(node: Node) -> dict[str, str]:
    """Member id -> state (alive, suspect, dead, left) as this node sees the cluster."""
    with wire.connect(node.addr, PORT, READ_TIMEOUT_S) as conn:
        topology = wire.call(conn, "GC.TOPOLOGY")
    if not isinstance(topology, list):
        raise ValueError(f"GC.TOPOLOGY answered {topology!r:.100}")
    members = [as_map(m) for m in topology]
    return {text(m["id"]): text(m["state"]) for m in members}


def info(node: Node) -> dict[str, str]:
    """INFO everything, as name -> value text."""
    with wire.connect(node.addr, PORT, READ_TIMEOUT_S) as conn:
        reply = wire.call(conn, "INFO", "everything")
    if not isinstance(reply, bytes):
        raise ValueError(f"INFO answered {reply!r:.100}")
    out = {}
    for line in reply.decode().splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            out[name] = value.strip()
    return out


def membership_settled(nodes: Iterable[Node]) -> bool:
    """Every given node answers and sees every given node alive."""
    nodes = list(nodes)
    ids = {n.node_id for n in nodes}
    try:
        views = [states(n) for n in nodes]
    except (OSError, ValueError):
        return False
    return all(view.get(i) == "alive" for view in views for i in ids)


def all_ready(nodes: Iterable[Node]) -> bool:
    """Every given node has finished warming up (INFO cluster_ready)."""
    try:
        return all(info(n).get("cluster_ready") == "1" for n in nodes)
    except (OSError, ValueError):
        return False


def held(node: Node) -> dict[str, Record]:
    """Every record the node holds, with the value and expiry of each live entry."""
    with wire.peer(node.addr, PORT, READ_TIMEOUT_S) as conn:
        replies = wire.pipeline(conn, [("GC.BUCKET", b) for b in range(BUCKETS)])
        records = [r for reply in replies for r in decode_records(reply)]
        live = [key for key, _, _, tomb, _, _ in records if not tomb]
        fetched = wire.pipeline(conn, [("GC.FETCH", k) for k in live])
    entries = dict(zip(live, fetched, strict=True))
    out = {}
    for key, version, origin, tomb, _x_version, _x_origin in records:
        entry = entries.get(key)
        if isinstance(entry, list) and len(entry) in (4, 6) and isinstance(entry[0], bytes):
            # Fetched a moment after the listing: the entry's own fields are the newer.
            value, expires, fetched_version, fetched_origin = entry[:4]
            out[text(key)] = Record(
                int(fetched_version), text(fetched_origin), False, text(value), int(expires)
            )
        elif isinstance(entry, list) and not isinstance(entry[0], bytes):  # deleted meanwhile
            out[text(key)] = Record(int(entry[0]), text(entry[1]), True)
        else:
            out[text(key)] = Record(version, origin, tomb, expired=not tomb)
    return out


def owners(node: Node, keys: list[str]) -> dict[str, tuple[str, ...]]:
    with wire.connect(node.addr, PORT, READ_TIMEOUT_S) as conn:
        replies = wire.pipeline(conn, [("GC.OWNERS", k) for k in keys])
    out = {}
    for key, reply in zip(keys, replies, strict=True):
        if not isinstance(reply, list):
            raise ValueError(f"GC.OWNERS {key} answered {reply!r:.100}")
        out[key] = tuple(text(o) for o in reply)
    return out


def reads(node: Node, keys: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """GET of every key through this node: values, and the errors of those that failed."""
    values: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    with wire.connect(node.addr, PORT, READ_TIMEOUT_S) as conn:
        replies = wire.pipeline(conn, [("GET", k) for k in keys])
    for key, reply in zip(keys, replies, strict=True):
        if isinstance(reply, wire.Error):
            errors[key] = str(reply)
        elif reply is None or isinstance(reply, bytes):
            values[key] = None if reply is None else text(reply)
        else:
            errors[key] = f"unexpected reply {reply!r:.100}"
    return values, errors


def snapshot(nodes: list[Node], keys: Iterable[str], evicted_before: dict[str, int]) -> Snapshot:
    """Every running node's records, owners, reads and counters, over the same key set:
    the keys of the history and every key any node holds."""
    taken_wall_ms = time.time_ns() // 1_000_000
    records = {n.node_id: held(n) for n in nodes}
    every_key = sorted(set(keys).union(*records.values()))
    views = {}
    for node in nodes:
        stats = info(node)
        values, errors = reads(node, every_key)
        views[node.node_id] = NodeView(
            node_id=node.node_id,
            region=node.spec.region,
            records=records[node.node_id],
            owners=owners(node, every_key),
            reads=values,
            read_errors=errors,
            evicted_keys=int(stats.get("evicted_keys", "0")),
            skipped_full=skipped_full(stats),
        )
    return Snapshot(taken_wall_ms, views, dict(evicted_before))
