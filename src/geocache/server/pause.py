"""CLIENT PAUSE: hold client commands (all, or writes) until a deadline or CLIENT UNPAUSE.

While a pause is on, the node's dispatch is this object wrapping the usual one; when it
ends the usual one is put back, so an unpaused node pays nothing for the feature. A
held command gets a deferred reply that runs it once the pause ends; the server keeps
each connection's replies in order. In WRITE mode a connection with a held write has
its later commands held too, as Redis stops reading from a blocked client, so a read
never overtakes the write before it. Peers (proven `GC.*` connections) are never held:
replication must go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from geocache.commands.context import Deferred, Session
from geocache.commands.table import Command

if TYPE_CHECKING:
    from geocache.server.node import Node

Dispatch = Callable[[dict[bytes, Command], Session, list[bytes]], object]


class ClientPause:
    __slots__ = ("_all", "_held", "_inner", "_node", "_released", "_timer", "_until_ms")

    def __init__(self, node: Node) -> None:
        self._node = node
        self._inner: Dispatch | None = None
        self._all = False
        self._until_ms = 0
        self._held: dict[int, int] = {}  # session id -> commands held
        self._released: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return self._inner is not None

    def pause(self, timeout_ms: int, all_commands: bool) -> None:
        """Start a pause, or extend one: the later end and the wider mode win (as Redis)."""
        loop = asyncio.get_running_loop()
        now = self._node.clock.mono_ms()
        until = now + timeout_ms
        if self._inner is None:
            self._inner = self._node.dispatch
            self._node.dispatch = self
            self._released = loop.create_future()
            self._all = all_commands
            self._until_ms = until
        else:
            self._all = self._all or all_commands
            self._until_ms = max(self._until_ms, until)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later((self._until_ms - now) / 1000, self.unpause)

    def unpause(self) -> None:
        if self._inner is None:
            return
        self._node.dispatch, self._inner = self._inner, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._released is not None and not self._released.done():
            self._released.set_result(None)

    def __call__(self, table: dict[bytes, Command], session: Session, argv: list[bytes]) -> object:
        inner = self._inner
        assert inner is not None
        if session.peer_id or not (self._all or session.id in self._held or _writes(table, argv)):
            return inner(table, session, argv)
        released = self._released
        assert released is not None
        self._held[session.id] = self._held.get(session.id, 0) + 1
        return Deferred(self._later(released, inner, table, session, argv))

    async def _later(
        self,
        released: asyncio.Future[None],
        inner: Dispatch,
        table: dict[bytes, Command],
        session: Session,
        argv: list[bytes],
    ) -> object:
        try:
            await asyncio.shield(released)
        finally:
            left = self._held.get(session.id, 1) - 1
            if left:
                self._held[session.id] = left
            else:
                self._held.pop(session.id, None)
        reply = inner(table, session, argv)
        return await reply.awaitable if isinstance(reply, Deferred) else reply


def _writes(table: dict[bytes, Command], argv: list[bytes]) -> bool:
    cmd = table.get(argv[0]) or table.get(argv[0].lower())
    return cmd is not None and cmd.write
