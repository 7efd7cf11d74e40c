"""Cluster commands: peer authentication, versions (GETVER, CAS) and the topology.

`GC.CHALLENGE` and `GC.AUTH` let a peer prove the cluster secret (cluster/auth.py);
other `GC.*` commands that change data are refused on connections that have not.
`GC.TOPOLOGY` and `GC.OWNERS` are read-only and open to every client, since smart
clients route with them.

`GETVER key` returns the key's version (nil when absent). `CAS key version value [EX
seconds]` writes only if the key's version is still `version` (0: the key must not
exist), returning the new version, or nil when another write got there first.
"""

from __future__ import annotations

from geocache.cluster import auth
from geocache.commands.context import Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR
from geocache.commands.table import command
from geocache.protocol.types import OK, Error
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

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
    return [
        {
            b"id": config.effective_node_id.encode(),
            b"region": config.region.encode(),
            b"addr": f"{config.bind}:{config.port}".encode(),
            b"state": b"alive",
        }
    ]


@command("gc.owners", 2, "readonly", group="cluster", summary="The nodes owning a key")
def cmd_gc_owners(session: Session, argv: list[bytes]) -> object:
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
