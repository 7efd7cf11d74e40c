"""Routing in cluster mode: any node answers any command.

- Keyless commands (PING, INFO, KEYS, SCAN, DBSIZE, FLUSHALL...) run on this node only.
- A read of one key runs here if this node owns the key, else at the first owner that
  answers. At an owner that is warming up or has just gained keys (a membership change),
  a miss first asks the other members of the region.
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

Table = dict[bytes, Command]
NO_MULTI = Error("ERR MULTI is not supported in cluster mode; send commands without it")
LOADING = Error("LOADING geocache is joining its cluster")
CROSSSLOT = Error("CROSSSLOT Keys in request don't hash to the same slot")
_SUMMED = {b"del", b"unlink", b"exists", b"touch"}


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
        if len(keys) == 1:
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
        return Deferred(self._forward(argv, owners, session.proto))

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
            if cluster.write_acks == "one":
                _background(cluster.replicate(writes, None))
                return reply
            return Deferred(cluster.replicate(writes, reply))
        if not cmd.write and cluster.warming() and store.peek(key) is None:
            return Deferred(self._read_through(table, session, argv, key, reply))
        return reply

    async def _read_through(
        self, table: Table, session: Session, argv: list[bytes], key: bytes, reply: object
    ) -> object:
        if await self.cluster.fetch_newest(key):
            return dispatch(table, session, argv)
        return reply

    async def _read_elsewhere(
        self,
        table: Table,
        session: Session,
        argv: list[bytes],
        cmd: Command,
        key: bytes,
        others: list[str],
    ) -> object:
        reply = await self.cluster.forward(argv, others, session.proto)
        if isinstance(reply, bytes):
            return Raw(reply)
        result = self.coordinate(table, session, argv, cmd, key)  # nobody else answered
        return await result.awaitable if isinstance(result, Deferred) else result

    async def _forward(self, argv: list[bytes], owners: list[str], proto: int) -> object:
        reply = await self.cluster.forward(argv, owners, proto)
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
        me = self.cluster.node_id
        primary, rest = owners[0], owners[1:]
        reply = await self.cluster.forward(argv, [primary], session.proto)
        if isinstance(reply, bytes):
            return Raw(reply)
        # The primary did not answer: the next owner coordinates (maybe this node).
        if me in rest:
            result = self.coordinate(table, session, argv, cmd, key)
            return await result.awaitable if isinstance(result, Deferred) else result
        return await self._forward(argv, [o for o in rest if o != me], session.proto)

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


_BACKGROUND: set[asyncio.Task[object]] = set()


def _background(coro: Awaitable[object]) -> None:
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
