"""The Redis Cluster protocol: each region presents itself as one Redis Cluster.

Cluster-aware clients (redis-py `RedisCluster`, ioredis `Cluster`, node-redis
`createCluster`, go-redis, Lettuce, Jedis) ask a node for the slot map and send each
key straight to its owner. The map comes from placement: hash slot -> digest bucket
(slot >> 4, 16 slots a bucket) -> the bucket's owners among the alive members of the
asking node's region (rendezvous hashing), the first owner the primary and the others
its replicas. Adjacent buckets with the same owners are merged into one slot range.

A key sent to a node that does not own it is forwarded, never answered with `MOVED`:
plain clients and cluster-aware ones with a stale map get the right reply either way,
and the cluster-aware ones refresh their map on their own schedule. Every node is a
primary for some ranges and a replica for others, so CLUSTER NODES shows every member
as a master with the slots it is primary for.

Node ids are 40 hex digits, as Redis's: the SHA-1 of the geocache node id, the same on
every node. A standalone node answers as Redis does with cluster support disabled.
"""

from __future__ import annotations

import hashlib

from geocache.commands.context import MemberView, Session, Topology
from geocache.commands.strings import NOT_INTEGER
from geocache.commands.table import SubHandler, command, subcommand
from geocache.protocol.types import OK, Error, Verbatim
from geocache.slots import BUCKETS, SLOTS, SLOTS_PER_BUCKET, key_slot
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

DISABLED = Error("ERR This instance has cluster support disabled")
INVALID_SLOT = Error("ERR Invalid or out of range slot")

_NO_KEYS = (0, 0, 0)


def redis_id(node_id: str) -> str:
    """A member's id as Redis Cluster shows one: 40 hex digits."""
    return hashlib.sha1(node_id.encode()).hexdigest()


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def region_members(topology: Topology) -> dict[str, MemberView]:
    """The alive members of the asking node's region, by node id."""
    return {
        m.node_id: m
        for m in topology.members()
        if m.region == topology.region and m.state.name == "ALIVE"
    }


def slot_ranges(topology: Topology) -> list[tuple[int, int, tuple[str, ...]]]:
    """(first slot, last slot, owners) for every run of buckets with the same owners."""
    ranges: list[tuple[int, int, tuple[str, ...]]] = []
    for bucket in range(BUCKETS):
        owners = tuple(topology.bucket_owners(bucket))
        first, last = bucket * SLOTS_PER_BUCKET, (bucket + 1) * SLOTS_PER_BUCKET - 1
        if ranges and ranges[-1][2] == owners and ranges[-1][1] == first - 1:
            ranges[-1] = (ranges[-1][0], last, owners)
        else:
            ranges.append((first, last, owners))
    return ranges


def _topology(session: Session) -> Topology | None:
    return session.node.topology


def _node_entry(member: MemberView) -> list[object]:
    host, port = split_addr(member.addr)
    return [host.encode(), port, redis_id(member.node_id).encode(), {}]


def cluster_slots(session: Session, argv: list[bytes]) -> object:
    topology = _topology(session)
    if topology is None:
        return DISABLED
    members = region_members(topology)
    reply: list[object] = []
    for first, last, owners in slot_ranges(topology):
        nodes = [_node_entry(members[o]) for o in owners if o in members]
        if nodes:
            reply.append([first, last, *nodes])
    return reply


def cluster_shards(session: Session, argv: list[bytes]) -> object:
    """One shard per distinct owner list: its slot ranges, its primary and replicas."""
    topology = _topology(session)
    if topology is None:
        return DISABLED
    members = region_members(topology)
    shards: dict[tuple[str, ...], list[int]] = {}
    for first, last, owners in slot_ranges(topology):
        shards.setdefault(owners, []).extend((first, last))
    reply: list[object] = []
    for owners, slots in shards.items():
        nodes: list[object] = []
        for rank, owner in enumerate(o for o in owners if o in members):
            host, port = split_addr(members[owner].addr)
            nodes.append(
                {
                    b"id": redis_id(owner).encode(),
                    b"port": port,
                    b"ip": host.encode(),
                    b"endpoint": host.encode(),
                    b"role": b"master" if rank == 0 else b"replica",
                    b"replication-offset": 0,
                    b"health": b"online",
                }
            )
        reply.append({b"slots": slots, b"nodes": nodes})
    return reply


def cluster_nodes(session: Session, argv: list[bytes]) -> object:
    topology = _topology(session)
    if topology is None:
        return DISABLED
    members = region_members(topology)
    primary_of: dict[str, list[str]] = {node_id: [] for node_id in members}
    for first, last, owners in slot_ranges(topology):
        if owners and owners[0] in primary_of:
            primary_of[owners[0]].append(f"{first}-{last}" if last > first else str(first))
    lines = []
    for node_id, member in sorted(members.items()):
        host, port = split_addr(member.addr)
        flags = "myself,master" if node_id == topology.node_id else "master"
        slots = " ".join(primary_of[node_id])
        line = f"{redis_id(node_id)} {host}:{port}@{port + 10000} {flags} - 0 0 1 connected"
        lines.append(f"{line} {slots}".rstrip())
    return Verbatim("".join(line + "\n" for line in lines))


def cluster_myid(session: Session, argv: list[bytes]) -> object:
    topology = _topology(session)
    return DISABLED if topology is None else redis_id(topology.node_id).encode()


def cluster_info(session: Session, argv: list[bytes]) -> object:
    topology = _topology(session)
    if topology is None:
        return DISABLED
    members = region_members(topology)
    primaries = {owners[0] for _f, _l, owners in slot_ranges(topology) if owners}
    facts = {
        "cluster_state": "ok",
        "cluster_slots_assigned": SLOTS,
        "cluster_slots_ok": SLOTS,
        "cluster_slots_pfail": 0,
        "cluster_slots_fail": 0,
        "cluster_known_nodes": len(members),
        "cluster_size": len(primaries),
        "cluster_current_epoch": 1,
        "cluster_my_epoch": 1,
        "cluster_stats_messages_sent": 0,
        "cluster_stats_messages_received": 0,
        "total_cluster_links_buffer_limit_exceeded": 0,
    }
    return Verbatim("".join(f"{k}:{v}\r\n" for k, v in facts.items()))


def cluster_keyslot(session: Session, argv: list[bytes]) -> object:
    return DISABLED if _topology(session) is None else key_slot(argv[2])


def _slot_arg(raw: bytes) -> int | Error:
    try:
        slot = parse_int(raw)
    except StoreError:
        return INVALID_SLOT
    return slot if 0 <= slot < SLOTS else INVALID_SLOT


def _keys_in_slot(session: Session, slot: int) -> list[bytes]:
    return [key for key in session.store.keys() if key_slot(key) == slot]  # noqa: SIM118


def cluster_countkeysinslot(session: Session, argv: list[bytes]) -> object:
    if _topology(session) is None:
        return DISABLED
    slot = _slot_arg(argv[2])
    return slot if isinstance(slot, Error) else len(_keys_in_slot(session, slot))


def cluster_getkeysinslot(session: Session, argv: list[bytes]) -> object:
    if _topology(session) is None:
        return DISABLED
    slot = _slot_arg(argv[2])
    if isinstance(slot, Error):
        return slot
    try:
        count = parse_int(argv[3])
    except StoreError:
        return NOT_INTEGER
    if count < 0:
        return Error("ERR Invalid number of keys")
    return _keys_in_slot(session, slot)[:count]


HELP = [
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node.",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "SLOTS",
    "    Return information about slots range mappings.",
    "HELP",
    "    Print this help.",
]


def cluster_help(session: Session, argv: list[bytes]) -> object:
    return [line.encode() for line in HELP]


SUBCOMMANDS: dict[bytes, tuple[int, SubHandler]] = {
    b"SLOTS": (2, cluster_slots),
    b"SHARDS": (2, cluster_shards),
    b"NODES": (2, cluster_nodes),
    b"MYID": (2, cluster_myid),
    b"INFO": (2, cluster_info),
    b"KEYSLOT": (3, cluster_keyslot),
    b"COUNTKEYSINSLOT": (3, cluster_countkeysinslot),
    b"GETKEYSINSLOT": (4, cluster_getkeysinslot),
    b"HELP": (2, cluster_help),
}


@command("cluster", -2, "", keys=_NO_KEYS, group="cluster", summary="The cluster's slot map")
def cmd_cluster(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, SUBCOMMANDS, "CLUSTER")


def _cluster_only(session: Session) -> object:
    return DISABLED if _topology(session) is None else OK


@command("readonly", 1, "fast", keys=_NO_KEYS, group="cluster", summary="Reads from replicas")
def cmd_readonly(session: Session, argv: list[bytes]) -> object:
    """Every node serves reads of every key already: nothing to switch."""
    return _cluster_only(session)


@command("readwrite", 1, "fast", keys=_NO_KEYS, group="cluster", summary="Reads from primaries")
def cmd_readwrite(session: Session, argv: list[bytes]) -> object:
    return _cluster_only(session)


@command("asking", 1, "fast", keys=_NO_KEYS, group="cluster", summary="After an ASK redirect")
def cmd_asking(session: Session, argv: list[bytes]) -> object:
    return _cluster_only(session)
