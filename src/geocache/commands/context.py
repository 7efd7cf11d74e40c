"""What a command handler sees: the client's session and, through it, the node.

Handlers are plain functions `cmd_x(session, argv) -> reply`. They never do I/O; the
server turns replies into bytes and closes the connection when `session.closing` is
set. The node is reached through the `NodeContext` protocol so the command layer can
be driven by tests without sockets; in cluster mode it offers a `Topology`, the little
of the cluster that commands read (who owns a key, who the members are), never the
cluster itself: commands sit below it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from geocache.auth import Transcript
from geocache.clock import Clock
from geocache.config import NodeConfig
from geocache.store.databases import Databases
from geocache.store.keyspace import Store
from geocache.store.scan import Scanner

if TYPE_CHECKING:
    from geocache.commands.slowlog import SlowLog
    from geocache.commands.table import Command


class MemberView(Protocol):
    """One member as membership knows it."""

    @property
    def node_id(self) -> str: ...
    @property
    def addr(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def state(self) -> Enum: ...
    @property
    def incarnation(self) -> int: ...


class Topology(Protocol):
    """The cluster as commands see it: placement and membership, read-only."""

    @property
    def node_id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def replicas(self) -> int: ...

    def owners(self, key: bytes) -> list[str]:
        """The alive owners of `key` in this node's region, primary first."""
        ...

    def bucket_owners(self, bucket: int) -> list[str]:
        """The alive owners of a digest bucket (16 hash slots), primary first."""
        ...

    def members(self) -> Sequence[MemberView]: ...


class NodeContext(Protocol):
    """The node as commands see it."""

    @property
    def config(self) -> NodeConfig: ...
    @property
    def store(self) -> Store: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def started_ms(self) -> int: ...
    @property
    def scanner(self) -> Scanner: ...
    @property
    def table(self) -> dict[bytes, Command]: ...
    @property
    def topology(self) -> Topology | None:
        """The cluster's placement and membership; None on a standalone node."""
        ...

    @property
    def resp_port(self) -> int: ...
    @property
    def databases(self) -> Databases: ...
    @property
    def slowlog(self) -> SlowLog: ...

    def sessions(self) -> Iterator[Session]: ...
    def sleep_ms(self, delay_ms: int) -> Awaitable[None]:
        """Time passing on the node's loop (commands do no I/O themselves)."""
        ...

    def info_sections(self) -> dict[str, dict[str, object]]: ...
    def reset_stats(self) -> None: ...
    def apply_config(self, config: NodeConfig) -> None: ...
    def kill_client(self, client_id: int) -> bool: ...
    def pause_clients(self, timeout_ms: int, all_commands: bool) -> None: ...
    def unpause_clients(self) -> None: ...


class Session:
    """One client connection's state."""

    __slots__ = (
        "addr",
        "auth_failures",
        "authenticated",
        "channel_binding",
        "closing",
        "created_ms",
        "db",
        "handshake",
        "hold_ms",
        "id",
        "laddr",
        "last_cmd",
        "last_ms",
        "lib_name",
        "lib_ver",
        "multi",
        "multi_bytes",
        "multi_dirty",
        "multi_slot",
        "name",
        "no_evict",
        "node",
        "peer_id",
        "proto",
        "reply_proto",
        "store",
        "watched",
    )

    def __init__(self, node: NodeContext, session_id: int, addr: str = "", laddr: str = "") -> None:
        self.node = node
        # The selected database (SELECT): its number, and the store commands use.
        self.db = 0
        self.store = node.store
        self.id = session_id
        self.addr = addr
        self.laddr = laddr
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.proto = 2
        # CLIENT REPLY OFF sets `proto` to 0 and SKIP to -2 (the server sends nothing
        # while it is 0 or less); `reply_proto` is the protocol to come back to.
        self.reply_proto = 2
        self.no_evict = False
        self.authenticated = not node.config.requirepass
        self.closing = False
        self.created_ms = self.last_ms = node.clock.mono_ms()
        self.last_cmd = b"NULL"
        # MULTI state: the queued commands (None outside MULTI), whether one was refused,
        # and the versions of watched keys (None: absent when watched).
        self.multi: list[list[bytes]] | None = None
        self.multi_bytes = 0  # what the queued commands' arguments take (client memory)
        self.multi_dirty = False
        # In cluster mode, the hash slot of the transaction's keys (-1: none yet).
        self.multi_slot = -1
        self.watched: dict[bytes, int | None] = {}
        # Peer authentication (auth.py): the handshake this node answered and awaits a
        # proof for, the TLS channel binding of the connection (empty without TLS), and
        # the peer's node id once it proved the cluster secret.
        self.handshake: Transcript | None = None
        self.channel_binding = b""
        self.peer_id = ""
        # AUTH failures in a row (commands/connection.py), and how long the server holds
        # the reply of the command just run before sending it (ms; the AUTH tarpit).
        self.auth_failures = 0
        self.hold_ms = 0


class Deferred:
    """A reply that is not ready yet, because the command waits on other nodes.

    The server stops reading from that client until it is ready, so replies keep the
    order of requests.
    """

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[object]) -> None:
        self.awaitable = awaitable
