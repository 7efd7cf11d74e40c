"""One asyncio connection to a node, shared by every coroutine: requests multiplexed.

An `asyncio.Protocol`: each request is written as it comes, and replies, which RESP
returns in order, resolve the waiting futures first-in first-out. A request whose
caller stopped waiting (`expire`, or a cancelled task) keeps its slot in the queue, so
its late reply is read and dropped and the next reply still lands on its own request.
A lost connection fails every request still waiting with ConnectionError.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from geocache.protocol.errors import ProtocolError
from geocache.protocol.replies import ReplyReader

_INCOMPLETE = object()


class _Waiter:
    """Replies expected for one request, and the future to resolve with them."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, future: asyncio.Future[list[object]] | None, count: int) -> None:
        self.future = future  # None: replies to drop (the AUTH sent on connect)
        self.count = count
        self.replies: list[object] = []


class Connection(asyncio.Protocol):
    """One node's connection; `request` sends, `data_received` resolves in order."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.closed = False
        self._reader = ReplyReader(incomplete=_INCOMPLETE)
        self._waiting: deque[_Waiter] = deque()
        self._transport: asyncio.Transport | None = None
        # Done once the connection is gone: a TLS connection's close takes a round trip
        # (close_notify), which `AsyncClient.close` waits for.
        self.lost: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not _INCOMPLETE:
                if not waiting:
                    raise ProtocolError("a reply nobody asked for")
                waiter = waiting[0]
                waiter.replies.append(reply)
                if len(waiter.replies) == waiter.count:
                    waiting.popleft()
                    future = waiter.future
                    if future is not None and not future.done():
                        future.set_result(waiter.replies)
        except ProtocolError:
            self.close()  # out of step: nothing more on it can be trusted

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        error = ConnectionError(f"connection to {self.addr} lost: {exc or 'closed by the node'}")
        while self._waiting:
            future = self._waiting.popleft().future
            if future is not None and not future.done():
                future.set_exception(error)

    @property
    def usable(self) -> bool:
        """Open, and not closing: a transport that lost its socket says so at once,
        before connection_lost runs (a write then would only be dropped)."""
        transport = self._transport
        return not self.closed and transport is not None and not transport.is_closing()

    def request(self, payload: bytes, count: int) -> asyncio.Future[list[object]]:
        """Send `count` pipelined commands; the future gets their replies."""
        future: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
        transport = self._transport
        if transport is None or not self.usable:
            future.set_exception(ConnectionError(f"connection to {self.addr} is closed"))
            return future
        self._waiting.append(_Waiter(future, count))
        transport.write(payload)
        return future

    def send_ignored(self, payload: bytes) -> None:
        """Send one command whose reply is dropped."""
        if self._transport is not None:
            self._waiting.append(_Waiter(None, 1))
            self._transport.write(payload)

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()
        self.closed = True


def expire(future: asyncio.Future[list[object]]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
