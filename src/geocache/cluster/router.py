"""Routing in cluster mode: any node answers any command.

- Keyless commands (PING, INFO, KEYS, SCAN, DBSIZE, FLUSHALL...) run on this node only.
- A read of one key runs here if this node owns the key, else at the first owner that
  answers. A miss at an owner asks, in turn: the other members of the region while it is
  warming up or has just gained keys (a membership change); the nearest other region
  (`read_remote_on_miss`); the read-through origin, which only the key's primary
  loads from (others forward the read to it).
- A write of one key is coordinated by the key's primary owner: another node forwards
  it (`GC.FWD`), falling back to the next owner if the primary does not answer. The
  coordinator writes locally, then replicates (cluster.py) and answers after
  `write_acks` owners have applied the write.
- Commands on several keys (MGET, MSET, DEL, EXISTS, UNLINK) are split per key and
  their replies combined; other multi-key commands need keys with the same owners
  (CROSSSLOT otherwise, as Redis Cluster says). MULTI is refused: its commands could
  not run atomically across nodes.

Forwarded replies travel pre-encoded in the client's protocol, so they reach the client
byte for byte as the owner produced them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from geocache.commands.context import Deferred, Session
from geocache.commands.table import Command, dispatch
from geocache.protocol.types import OK, Error, Raw
from geocache.protocol.writer import encode

if TYPE_CHECKING:
    from geocache.cluster.cluster import Cluster

# Forwarded reads get what a replica gets; forwarded writes also wait for replication
# at their coordinator (cluster.py).
PEER_TIMEOUT_MS = 500
FORWARD_TIMEOUT_MS = 2 * PEER_TIMEOUT_MS + 200

Table = dict[bytes, Command]
NO_MULTI = Error("ERR MULTI is not supported in cluster mode; send commands without it")
LOADING = Error("LOADING geocache is joining its cluster")
CROSSSLOT = Error("CROSSSLOT Keys in request don't hash to the same slot")
_SUMMED = {b"del", b"unlink", b"exists", b"touch"}
NEWER = b"-TRYAGAIN newer version "


class Router:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def dispatch(self, table: Table, session: Session, argv: list[bytes]) -> object:
        """The node's dispatch in cluster mode (see the module docstring)."""
        cmd = table.get(argv[0]) or table.get(argv[0].lower())
        if cmd is None or cmd.first_key == 0 or not session.authenticated:
            if cmd is not None and cmd.name == b"multi" and session.authenticated:
                return NO_MULTI
            return dispatch(table, session, argv)
        arity = cmd.arity
        if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
            return dispatch(table, session, argv)  # the arity error
        if self.cluster.alone_before_joining():
            return LOADING
        keys = cmd.keys(argv)
        if not keys:  # a key-taking command called without one (OBJECT HELP)
            return dispatch(table, session, argv)
        if len(keys) == 1 and cmd.name != b"mget":  # MGET's reply is an array, always
            return self.route(table, session, argv, cmd, keys[0])
        return self._route_many(table, session, argv, cmd, keys)

    def route(
        self, table: Table, session: Session, argv: list[bytes], cmd: Command, key: bytes
    ) -> object:
        cluster = self.cluster
        owners = cluster.owners(key)
        me = cluster.node_id
        if cmd.write:
            if owners[0] == me:
                return self.coordinate(table, session, argv, cmd, key)
            return Deferred(self._forward_write(table, session, argv, cmd, key, owners))
        if me in owners:
            if not cluster.ready and len(owners) > 1:
                # Still warming up: an owner that has been up all along answers, so a
                # write this node missed while joining cannot be read back stale.
                others = [o for o in owners if o != me]
                return Deferred(self._read_elsewhere(table, session, argv, cmd, key, others))
            return self.coordinate(table, session, argv, cmd, key)
        origin = cluster.node.origin
        if origin is not None and origin.serves(cmd.name):
            # The owner may load the key from the origin first: wait for that, or a slow
            # origin would make this node ask the next owner, which would load it again.
            timeout_ms = origin.timeout_ms + FORWARD_TIMEOUT_MS
        else:
            timeout_ms = PEER_TIMEOUT_MS
        return Deferred(self._forward(argv, owners, session.proto, timeout_ms))

    def coordinate(
        self, table: Table, session: Session, argv: list[bytes], cmd: Command, key: bytes
    ) -> object:
        """Run here as the key's coordinator: replicate what it wrote, read through on a miss."""
        cluster = self.cluster
        store = cluster.store
        store.journal.clear()
        reply = dispatch(table, session, argv)
        writes = store.take_journal()
        if writes:
            cluster.geo.ship(writes)
            return cluster.replicate(writes, reply)
        if not cmd.write and store.peek(key) is None and self._fills_misses(cmd):
            return Deferred(self._after_miss(table, session, argv, cmd, key, reply))
        return reply

    def _fills_misses(self, cmd: Command) -> bool:
        cluster = self.cluster
        node = cluster.node
        return (
            cluster.warming()
            or node.config.read_remote_on_miss
            or (node.origin is not None and node.origin.serves(cmd.name))
        )

    async def _after_miss(
        self,
        table: Table,
        session: Session,
        argv: list[bytes],
        cmd: Command,
        key: bytes,
        reply: object,
    ) -> object:
        """A read missed at an owner: ask, in turn, the region's other members (while
        owners may have moved), the nearest other region (read_remote_on_miss), and the
        origin (at the key's primary only); the first that has the key answers."""
        cluster = self.cluster
        node = cluster.node
        if cluster.warming() and await cluster.fetch_newest(key):
            return dispatch(table, session, argv)
        if node.config.read_remote_on_miss and await cluster.geo.read_remote(key):
            return dispatch(table, session, argv)
        origin = node.origin
        if origin is None or not origin.serves(cmd.name):
            return reply
        owners = cluster.owners(key)
        if owners[0] != cluster.node_id and not session.peer_id:
            # Only the primary loads, so concurrent misses on every owner load once.
            budget = origin.timeout_ms + FORWARD_TIMEOUT_MS
            loaded = await cluster.forward(argv, owners[:1], session.proto, budget)
            if isinstance(loaded, bytes):
                return Raw(loaded)
            # The primary did not answer: this owner loads rather than fail the read.
        fill = await origin.fill(key)
        if fill is None or isinstance(fill, Error):
            return reply if fill is None else fill
        if fill.store and node.store.peek(key) is None:
            set_argv = [b"SET", key, fill.value]
            if fill.ttl_ms:
                set_argv += [b"PX", b"%d" % fill.ttl_ms]
            written = self.coordinate(table, session, set_argv, table[b"set"], key)
            if isinstance(written, Deferred):
                await written.awaitable
        return fill.value

    async def _read_elsewhere(
        self,
        table: Table,
        session: Session,
        argv: list[bytes],
        cmd: Command,
        key: bytes,
        others: list[str],
    ) -> object:
        reply = await self.cluster.forward(argv, others, session.proto, PEER_TIMEOUT_MS)
        if isinstance(reply, bytes):
            return Raw(reply)
        result = self.coordinate(table, session, argv, cmd, key)  # nobody else answered
        return await result.awaitable if isinstance(result, Deferred) else result

    async def _forward(
        self, argv: list[bytes], owners: list[str], proto: int, timeout_ms: int = FORWARD_TIMEOUT_MS
    ) -> object:
        reply = await self.cluster.forward(argv, owners, proto, timeout_ms)
        return Raw(reply) if isinstance(reply, bytes) else reply

    async def _forward_write(
        self,
        table: Table,
        session: Session,
        argv: list[bytes],
        cmd: Command,
        key: bytes,
        owners: list[str],
    ) -> object:
        cluster = self.cluster
        me = cluster.node_id
        primary, rest = owners[0], owners[1:]
        reply: object = Error("CLUSTERDOWN no owner of the key answered")
        # A primary that just failed or hung is skipped, so one hung node costs one
        # timeout, not one per write, until membership declares it dead.
        if not cluster.known_down(primary) or not rest:
            reply = await self._forward_versioned(argv, primary, session.proto)
            if isinstance(reply, bytes):
                return Raw(reply)
        # The primary did not answer: the next owner coordinates (maybe this node).
        if me in rest:
            result = self.coordinate(table, session, argv, cmd, key)
            return await result.awaitable if isinstance(result, Deferred) else result
        for owner in (o for o in rest if o != me):
            reply = await self._forward_versioned(argv, owner, session.proto)
            if isinstance(reply, bytes):
                return Raw(reply)
        return reply

    async def _forward_versioned(self, argv: list[bytes], owner: str, proto: int) -> object:
        """Forward a write with a version minted now (see GC.FWD): if it arrives late,
        it loses to every write made since. An owner that holds a newer version than
        this node's clock gave (clocks differ) says so, and the write goes again above it."""
        cluster = self.cluster
        hlc = cluster.store.hlc
        reply = await cluster.forward(argv, [owner], proto, version=hlc.now())
        if isinstance(reply, bytes) and reply.startswith(NEWER):
            hlc.update(int(reply[len(NEWER) :].strip()))
            reply = await cluster.forward(argv, [owner], proto, version=hlc.now())
        return reply

    # -- several keys --------------------------------------------------------------------------

    def _route_many(
        self, table: Table, session: Session, argv: list[bytes], cmd: Command, keys: list[bytes]
    ) -> object:
        name = cmd.name
        cluster = self.cluster
        if name == b"mget":
            parts = [self._encoded(table, session, [b"GET", k]) for k in keys]
            return _combine(parts, lambda rs: Raw(b"*%d\r\n" % len(rs) + b"".join(rs)))
        if name in _SUMMED:
            parts = [self._encoded(table, session, [argv[0], k]) for k in keys]
            return _combine(parts, lambda rs: sum(_int_reply(r) for r in rs))
        if name == b"mset" and len(argv) % 2 == 1:
            pairs = zip(argv[1::2], argv[2::2], strict=True)
            parts = [self._encoded(table, session, [b"SET", k, v]) for k, v in pairs]
            return _combine(parts, _all_ok)
        first = cluster.owners(keys[0])
        if any(cluster.owners(k) != first for k in keys[1:]):
            return CROSSSLOT
        return self.route(table, session, argv, cmd, keys[0])

    def _encoded(
        self, table: Table, session: Session, argv: list[bytes]
    ) -> bytes | Awaitable[bytes]:
        """One sub-command's reply as RESP bytes (now, or once a peer answers)."""
        cmd = table[argv[0].lower()]
        reply = self.route(table, session, argv, cmd, argv[1])
        if isinstance(reply, Deferred):
            return _encode_later(reply, session.proto)
        return encode(reply, session.proto)


async def _encode_later(deferred: Deferred, proto: int) -> bytes:
    reply = await deferred.awaitable
    return bytes(reply) if isinstance(reply, Raw) else encode(reply, proto)


def _combine(parts: list[bytes | Awaitable[bytes]], combine: object) -> object:
    assert callable(combine)
    if all(isinstance(p, bytes) for p in parts):
        return combine(parts)

    async def gather() -> object:
        done = await asyncio.gather(*(p if not isinstance(p, bytes) else _ready(p) for p in parts))
        return combine(list(done))

    return Deferred(gather())


async def _ready(value: bytes) -> bytes:
    return value


def _int_reply(raw: bytes) -> int:
    return int(raw[1:-2]) if raw[:1] == b":" else 0


def _all_ok(replies: list[bytes]) -> object:
    for raw in replies:
        if raw[:1] == b"-":
            return Raw(raw)
    return OK
