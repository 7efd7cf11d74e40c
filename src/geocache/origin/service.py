"""An origin in a node: built from the settings, wired into the command path, closed.

`open_origin(host)` builds the loader `--origin` names, the `ReadThrough` that becomes
the node's origin, and with `--refresh-keys` its `Refresher`. Where misses are filled:

- in cluster mode, by the router (cluster/router.py), at the key's primary owner;
- on a standalone node, which has no router, by `StandaloneMisses`, which the node
  wraps around its dispatch: a GET miss, and each key an MGET misses, waits for the
  origin (a Deferred reply, so that client's later replies keep their order) and the
  value is stored as the router does it, with a SET through the node's own dispatch.

Nothing here rewires the node: it sees the node as an `OriginHost` and the node (the
composition root, server/node.py) decides what its dispatch is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from geocache.commands.context import Deferred, NodeContext, Session
from geocache.commands.table import Command
from geocache.fill import Fill
from geocache.observability.events import EventSink
from geocache.origin.loaders import open_loader
from geocache.origin.readthrough import ReadThrough, Settings
from geocache.origin.refresh import Refresher
from geocache.origin.spec import parse_origin
from geocache.protocol.types import Error

Table = dict[bytes, Command]
Dispatch = Callable[[Table, Session, list[bytes]], object]


class OriginHost(NodeContext, Protocol):
    """The node an origin serves, as the origin sees it."""

    @property
    def dispatch(self) -> Dispatch:
        """How the node runs a command (its writes of loaded values go this way)."""
        ...

    @property
    def events(self) -> EventSink:
        """Where the breaker's openings and closings go (the dashboard's timeline)."""
        ...


def open_origin(node: OriginHost) -> ReadThrough:
    """The node's read-through (refresh-ahead starts with `ReadThrough.start`)."""
    config = node.config
    spec = parse_origin(config.origin)
    settings = Settings.from_config(config)
    loader = open_loader(spec, settings.timeout_s, settings.concurrency, config.max_value_bytes)
    through = ReadThrough(loader, settings, node.clock, spec.shown, node.events)
    if config.refresh_keys:
        refresher = Refresher(config.refresh_keys, settings.ttl_ms, through, NodeKeys(node))
        through.refresher = refresher
    return through


def internal_session(node: OriginHost) -> Session:
    """The session the node's own writes of loaded values run in (no client behind it)."""
    session = Session(node, 0, "origin")
    session.authenticated = True
    return session


async def write_fill(node: OriginHost, session: Session, key: bytes, fill: Fill) -> object:
    """Store a loaded value as a client's `SET key value PX ttl` would be (replicated in a
    cluster); returns the SET's reply."""
    argv = [b"SET", key, fill.value]
    if fill.ttl_ms:
        argv += [b"PX", b"%d" % fill.ttl_ms]
    reply = node.dispatch(node.table, session, argv)
    return await reply.awaitable if isinstance(reply, Deferred) else reply


class NodeKeys:
    """The node as refresh-ahead sees it (refresh.Keyspace)."""

    def __init__(self, node: OriginHost) -> None:
        self._node = node
        self._session = internal_session(node)

    def held(self, key: bytes) -> int | None:
        entry = self._node.store.peek(key)
        return None if entry is None else hash(entry[0])

    def is_primary(self, key: bytes) -> bool:
        topology = self._node.topology
        return topology is None or topology.owners(key)[0] == topology.node_id

    async def write(self, key: bytes, fill: Fill) -> None:
        await write_fill(self._node, self._session, key, fill)


class StandaloneMisses:
    """A standalone node's dispatch with an origin: GET and MGET misses are filled."""

    def __init__(self, node: OriginHost, inner: Dispatch, through: ReadThrough) -> None:
        self._node = node
        self._inner = inner
        self._through = through
        self._session = internal_session(node)

    def __call__(self, table: Table, session: Session, argv: list[bytes]) -> object:
        reply = self._inner(table, session, argv)
        if session.db:  # the origin fills database 0 only (SELECT)
            return reply
        # A nil reply or an array holding one is rare enough to look closer at.
        if reply is None and len(argv) == 2 and argv[0].lower() == b"get":
            return Deferred(self._get(argv[1]))
        if type(reply) is list and None in reply and argv[0].lower() == b"mget":
            return Deferred(self._mget(argv[1:], reply))
        return reply

    async def _get(self, key: bytes) -> object:
        fill = await self._through.fill(key)
        if fill is None or isinstance(fill, Error):
            return fill
        if fill.store and self._node.store.peek(key) is None:  # no client wrote it meanwhile
            await write_fill(self._node, self._session, key, fill)
        return fill.value

    async def _mget(self, keys: list[bytes], values: list[object]) -> list[object]:
        """MGET's reply with each missing key filled; a key the origin failed stays nil."""
        missing = [i for i, value in enumerate(values) if value is None]
        filled = await asyncio.gather(*(self._get(keys[i]) for i in missing))
        for i, value in zip(missing, filled, strict=True):
            values[i] = value if isinstance(value, bytes) else None
        return values
