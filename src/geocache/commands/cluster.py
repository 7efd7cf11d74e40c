"""Cluster commands: peer authentication, versions (GETVER, CAS) and the topology.

`GC.CHALLENGE` and `GC.AUTH` let a peer prove the cluster secret (cluster/auth.py);
other `GC.*` commands that change data are refused on connections that have not.
`GC.TOPOLOGY` and `GC.OWNERS` are read-only and open to every client, since smart
clients route with them.

`GC.DIGEST`, `GC.BUCKET b` and `GC.REPAIR copy` serve repair (cluster/repair.py): a
peer compares digests, lists differing buckets and pulls newer records with `GC.FETCH`.

`GETVER key` returns the key's version (nil when absent). `CAS key version value [EX
seconds]` writes only if the key's version is still `version` (0: the key must not
exist), returning the new version, or nil when another write got there first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geocache.cluster import auth, digest
from geocache.cluster.geo import decode_batch
from geocache.commands.context import Deferred, Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR
from geocache.commands.table import command, dispatch
from geocache.protocol.types import OK, Error
from geocache.protocol.writer import encode
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

if TYPE_CHECKING:
    from geocache.cluster.cluster import Cluster

_NO_KEYS = (0, 0, 0)


@command("gc.challenge", 1, "fast noauth", keys=_NO_KEYS, group="cluster", summary="Get a nonce")
def cmd_gc_challenge(session: Session, argv: list[bytes]) -> object:
    session.nonce = auth.new_nonce()
    return session.nonce


@command("gc.auth", 3, "fast noauth", keys=_NO_KEYS, group="cluster", summary="Prove the secret")
def cmd_gc_auth(session: Session, argv: list[bytes]) -> object:
    nonce, session.nonce = session.nonce, b""  # one proof per challenge
    node_id = argv[1].decode("utf-8", "surrogateescape")
    if not auth.verify(session.node.config.cluster_secret, nonce, node_id, argv[2]):
        return Error("NOPERM cluster authentication failed")
    session.peer_id = node_id
    session.authenticated = True
    return OK


@command("gc.topology", 1, "readonly", keys=_NO_KEYS, group="cluster", summary="The cluster map")
def cmd_gc_topology(session: Session, argv: list[bytes]) -> object:
    config = session.node.config
    cluster = session.node.cluster
    if cluster is not None:
        return [
            {
                b"id": m.node_id.encode(),
                b"region": m.region.encode(),
                b"addr": m.addr.encode(),
                b"state": m.state.name.lower().encode(),
                b"incarnation": m.incarnation,
                b"replicas": cluster.replicas,
                b"self": int(m.node_id == cluster.node_id),
            }
            for m in cluster.members()
        ]
    addr = config.advertise_addr or f"{config.bind}:{session.node.resp_port}"
    return [
        {
            b"id": config.effective_node_id.encode(),
            b"region": config.region.encode(),
            b"addr": addr.encode(),
            b"state": b"alive",
            b"incarnation": 0,
            b"replicas": 1,
            b"self": 1,
        }
    ]


@command("gc.owners", 2, "readonly", group="cluster", summary="The nodes owning a key")
def cmd_gc_owners(session: Session, argv: list[bytes]) -> object:
    cluster = session.node.cluster
    if cluster is not None:
        return [owner.encode() for owner in cluster.owners(argv[1])]
    return [session.node.config.effective_node_id.encode()]


@command("getver", 2, "readonly fast", group="string", summary="Get the version of a key")
def cmd_getver(session: Session, argv: list[bytes]) -> object:
    entry = session.store.lookup(argv[1])
    return None if entry is None else entry[2]


@command("cas", -4, "write", group="string", summary="Set a key if its version is unchanged")
def cmd_cas(session: Session, argv: list[bytes]) -> object:
    try:
        expected = parse_int(argv[2])
    except StoreError:
        return NOT_INTEGER
    expires_at = 0
    if len(argv) > 4:
        if len(argv) != 6 or argv[4].upper() != b"EX":
            return SYNTAX_ERROR
        try:
            seconds = parse_int(argv[5])
        except StoreError:
            return NOT_INTEGER
        if seconds <= 0:
            return Error("ERR invalid expire time in 'cas' command")
        expires_at = session.node.clock.wall_ms() + seconds * 1000
    if len(argv[3]) > session.node.config.max_value_bytes:
        return Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    store = session.store
    entry = store.peek(argv[1])
    if (entry[2] if entry is not None else 0) != expected:
        return None
    return store.set(argv[1], argv[3], expires_at)[2]


# -- peer commands (need GC.AUTH) --------------------------------------------------------

NOT_A_PEER = Error("NOPERM this command is for cluster peers (GC.AUTH first)")


def _cluster(session: Session) -> Cluster | None:
    return session.node.cluster if session.peer_id else None


@command("gc.swim", 3, "fast", keys=_NO_KEYS, group="cluster", summary="A membership message")
def cmd_gc_swim(session: Session, argv: list[bytes]) -> object:
    cluster = _cluster(session)
    if cluster is None:
        return NOT_A_PEER
    cluster.on_swim(argv[1].decode("utf-8", "surrogateescape"), argv[2])
    return OK


@command("gc.apply", 6, "write", keys=_NO_KEYS, group="cluster", summary="Apply a replicated write")
def cmd_gc_apply(session: Session, argv: list[bytes]) -> object:
    if _cluster(session) is None:
        return NOT_A_PEER
    try:
        expires_at, version = int(argv[3]), int(argv[4])
    except ValueError:
        return NOT_INTEGER
    entry = (argv[2], expires_at, version, argv[5].decode("utf-8", "surrogateescape"))
    return 1 if session.store.apply(argv[1], entry) else 0


@command(
    "gc.applydel", 4, "write", keys=_NO_KEYS, group="cluster", summary="Apply a replicated delete"
)
def cmd_gc_applydel(session: Session, argv: list[bytes]) -> object:
    if _cluster(session) is None:
        return NOT_A_PEER
    try:
        version = int(argv[2])
    except ValueError:
        return NOT_INTEGER
    origin = argv[3].decode("utf-8", "surrogateescape")
    return 1 if session.store.apply_delete(argv[1], version, origin) else 0


@command(
    "gc.fetch", 2, "readonly", keys=_NO_KEYS, group="cluster", summary="A key's entry or tombstone"
)
def cmd_gc_fetch(session: Session, argv: list[bytes]) -> object:
    if _cluster(session) is None:
        return NOT_A_PEER
    entry = session.store.peek(argv[1])
    if entry is not None:
        return [entry[0], entry[1], entry[2], entry[3].encode()]
    tomb = session.store.tombstones.get(argv[1])
    return None if tomb is None else [tomb[0], tomb[1].encode(), tomb[2]]


@command("gc.fwd", -4, "", keys=_NO_KEYS, group="cluster", summary="Run a forwarded command")
def cmd_gc_fwd(session: Session, argv: list[bytes]) -> object:
    """Run a command another node forwarded, as its coordinator; reply with its RESP bytes.

    `GC.FWD proto version command...`: a write carries the version the forwarding node
    minted when its client asked (0 for a read), and gets exactly that version here. So
    a forwarded write that arrives late (held in a stalled connection while the client
    was answered through another owner) cannot overwrite the writes and deletes made
    since: if the key already holds that version or a newer one, it does nothing and
    answers `TRYAGAIN newer version <v>` (the forwarding node then mints a newer one).
    """
    cluster = _cluster(session)
    if cluster is None:
        return NOT_A_PEER
    proto = 3 if argv[1] == b"3" else 2
    try:
        version = int(argv[2])
    except ValueError:
        return encode(NOT_INTEGER, proto)
    inner = argv[3:]
    table = session.node.table
    cmd = table.get(inner[0]) or table.get(inner[0].lower())
    arity_ok = cmd is not None and (
        len(inner) == cmd.arity if cmd.arity > 0 else len(inner) >= -cmd.arity
    )
    if cmd is None or not arity_ok or cmd.first_key == 0:
        return encode(dispatch(table, session, inner), proto)
    key = cmd.keys(inner)[0]
    store = cluster.store
    if version and cmd.write:
        held = store.version_of(key)
        if held is not None and held[0] >= version:
            return encode(Error(f"TRYAGAIN newer version {held[0]}"), proto)
        store.hlc.pin(version)
        try:
            reply = cluster.router.coordinate(table, session, inner, cmd, key)
        finally:
            store.hlc.pin(0)
    else:
        reply = cluster.router.coordinate(table, session, inner, cmd, key)
    if isinstance(reply, Deferred):
        return Deferred(_encoded_later(reply, proto))
    return encode(reply, proto)


async def _encoded_later(deferred: Deferred, proto: int) -> bytes:
    return encode(await deferred.awaitable, proto)


# -- repair (cluster/repair.py) ----------------------------------------------------------


@command("gc.digest", 1, "readonly", keys=_NO_KEYS, group="cluster", summary="Bucket digests")
def cmd_gc_digest(session: Session, argv: list[bytes]) -> object:
    """This node's 1024 bucket digests, 8 KiB of little-endian uint64s."""
    cluster = _cluster(session)
    if cluster is None:
        return NOT_A_PEER
    return digest.encode_buckets(cluster.store.digest.buckets)


@command("gc.bucket", 2, "readonly", keys=_NO_KEYS, group="cluster", summary="A bucket's records")
def cmd_gc_bucket(session: Session, argv: list[bytes]) -> object:
    """Flat key, version, origin, is_tombstone for every record held in one bucket."""
    cluster = _cluster(session)
    if cluster is None:
        return NOT_A_PEER
    try:
        bucket = parse_int(argv[1])
    except StoreError:
        return NOT_INTEGER
    if not 0 <= bucket < digest.BUCKETS:
        return Error(f"ERR bucket must be 0..{digest.BUCKETS - 1}")
    return digest.encode_records(cluster.store.digest.keys_in_bucket(bucket))


@command("gc.repair", 2, "fast", keys=_NO_KEYS, group="cluster", summary="Pull from the caller")
def cmd_gc_repair(session: Session, argv: list[bytes]) -> object:
    """Run a repair round against the calling peer soon; `1`: copy keys this node lacks."""
    cluster = _cluster(session)
    if cluster is None:
        return NOT_A_PEER
    cluster.repairer.request(session.peer_id, copy_missing=argv[1] == b"1")
    return OK


@command(
    "gc.geo", -2, "write", keys=_NO_KEYS, group="cluster", summary="Apply another region's writes"
)
def cmd_gc_geo(session: Session, argv: list[bytes]) -> object:
    """A batch from another region's stream (cluster/geo.py): applied at this region's
    owners; the reply is this node's wall clock once they have it (for the lag)."""
    cluster = _cluster(session)
    if cluster is None:
        return NOT_A_PEER
    try:
        writes = decode_batch(argv[2:])
    except ValueError as exc:
        return Error(f"ERR bad GC.GEO batch: {exc}")
    return Deferred(cluster.geo.receive(writes))
