"""Peer connections over the simulated network, for `Cluster(node, peers=SimPeers(...))`.

`SimPeerClient` behaves as `peers.PeerClient` does, call for call: one connection per
(peer, channel), pipelined requests matched to replies in order, a timeout per request,
everything in flight failing with PeerError when the connection is lost, a reconnect
backoff after a failure, `failed_recently()`, the GC.CHALLENGE / GC.AUTH handshake
before any request, and the same exceptions in the same places (a connect that outlives
the caller's timeout raises TimeoutError from `pipeline`, as `asyncio.wait_for` does in
the real client). Requests and replies are real RESP bytes (`encode_command` out,
`ReplyReader` in), so replies look exactly like the real client's.

Two differences, both on purpose: time is the event loop's (the real client reads
`time.monotonic`, which does not follow a virtual clock), and `send_nowait` (membership
messages) sends a datagram (wire.py) once the connection is up, so the simulated
network can lose membership messages one by one, which is how SWIM sees loss.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from geocache import auth
from geocache.cluster.peers import (
    CONNECT_TIMEOUT_S,
    DATA,
    FAILED_WINDOW_S,
    MAX_IN_FLIGHT,
    RECONNECT_BACKOFF_MS,
    Arg,
    PeerError,
)
from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command
from sim.wire import Endpoint, SimNetwork, SimTransport

_INCOMPLETE = object()


class SimPeers:
    """The SimPeerClients of one node, by address and channel (as peers.Peers)."""

    def __init__(self, net: SimNetwork, host: Endpoint, node_id: str, secret: str) -> None:
        self._net = net
        self._host = host
        self._node_id = node_id
        self._secret = secret
        self._clients: dict[tuple[str, str], SimPeerClient] = {}

    def get(self, addr: str, channel: str = DATA) -> SimPeerClient:
        client = self._clients.get((addr, channel))
        if client is None:
            client = SimPeerClient(self._net, self._host, addr, self._node_id, self._secret)
            self._clients[addr, channel] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class Requester(Protocol):
    """Whoever sends requests on a connection: the replies' futures, oldest first."""

    @property
    def pending(self) -> deque[asyncio.Future[object]]: ...

    def lost(self) -> None: ...


class ReplyProtocol(asyncio.Protocol):
    """Replies from a connection's bytes, each to the oldest request still waiting."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester
        self._reader = ReplyReader(incomplete=_INCOMPLETE)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        pending = self._requester.pending
        while True:
            reply = self._reader.gets()
            if reply is _INCOMPLETE or not pending:
                return  # incomplete, or an answer nobody waits for
            future = pending.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._requester.lost()


def _consume(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class SimPeerClient:
    def __init__(
        self, net: SimNetwork, host: Endpoint, addr: str, node_id: str, secret: str
    ) -> None:
        self.addr = addr
        self._net = net
        self._host = host
        self._node_id = node_id
        self._secret = secret
        self._transport: SimTransport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.pending: deque[asyncio.Future[object]] = deque()
        self._down_until = 0.0
        self._failed_at: float | None = None
        self._authed = False
        self._outbox: list[bytes] = []
        self._flush_scheduled = False

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    @property
    def connected(self) -> bool:
        transport = self._transport
        return self._authed and transport is not None and not transport.is_closing()

    def failed_recently(self, window_s: float = FAILED_WINDOW_S) -> bool:
        failed_at = self._failed_at
        return failed_at is not None and self._now() - failed_at < window_s

    async def call(self, *args: Arg, timeout_ms: int = 1000) -> object:
        (reply,) = await self.pipeline([args], timeout_ms=timeout_ms)
        return reply

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], timeout_ms: int = 1000
    ) -> list[object]:
        deadline = self._now() + timeout_ms / 1000
        if not self.connected:
            try:
                await asyncio.wait_for(self._connect(), timeout=max(deadline - self._now(), 0.001))
            except TimeoutError:
                raise PeerError(f"{self.addr}: not connected within {timeout_ms} ms") from None
        futures = self._send(commands)
        try:
            async with asyncio.timeout(max(deadline - self._now(), 0.001)):
                replies = list(await asyncio.gather(*futures))
        except TimeoutError:
            self._failed_at = self._now()  # connected but silent: down, as PeerClient says
            raise PeerError(f"{self.addr}: no answer in {timeout_ms} ms") from None
        self._failed_at = None
        return replies

    def send_nowait(self, *args: Arg) -> None:
        """Fire and forget: a datagram once connected; the first one connects."""
        transport = self._transport
        if self.connected and transport is not None:
            transport.send_datagram(encode_command(*args))
        elif self._connecting is None and self._now() >= self._down_until:
            self._connecting = asyncio.ensure_future(self._connect_quietly(args))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._connecting is not None:
            self._connecting.cancel()

    # -- internals (as PeerClient's) ---------------------------------------------------

    def _send(self, commands: Sequence[Sequence[Arg]]) -> list[asyncio.Future[object]]:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise PeerError(f"{self.addr}: not connected")
        if len(self.pending) + len(commands) > MAX_IN_FLIGHT:
            raise PeerError(f"{self.addr}: too many requests in flight")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self.pending.extend(futures)
        self._outbox.extend(encode_command(*c) for c in commands)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return futures

    def _flush(self) -> None:
        self._flush_scheduled = False
        data, self._outbox = b"".join(self._outbox), []
        transport = self._transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._dial())
        task = self._connecting
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._connecting = None

    async def _connect_quietly(self, first: Sequence[Arg]) -> None:
        try:
            await self._dial()
            if self._transport is not None:
                self._transport.send_datagram(encode_command(*first))
        except (OSError, PeerError, TimeoutError):
            pass
        finally:
            self._connecting = None

    async def _dial(self) -> None:
        if self.connected:
            return
        self._authed = False
        if self._now() < self._down_until:
            raise PeerError(f"{self.addr}: down, retrying shortly")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                protocol = ReplyProtocol(self)
                self._transport = await self._net.open(self._host, self.addr, protocol)
                await self._authenticate()
                self._authed = True
                self._failed_at = None
        except (OSError, TimeoutError, PeerError) as exc:
            self._failed_at = self._now()
            self._down_until = self._failed_at + RECONNECT_BACKOFF_MS / 1000
            if self._transport is not None:
                self._transport.abort()
                self._transport = None
            raise PeerError(f"{self.addr}: cannot connect: {exc}") from exc

    async def _authenticate(self) -> None:
        (nonce,) = await asyncio.gather(*self._send([("GC.CHALLENGE",)]))
        if not isinstance(nonce, bytes):
            raise PeerError(f"{self.addr}: bad challenge {nonce!r}")
        proof = auth.proof(self._secret, nonce, self._node_id)
        (answer,) = await asyncio.gather(*self._send([("GC.AUTH", self._node_id, proof)]))
        if isinstance(answer, Error):
            raise PeerError(f"{self.addr}: {answer}")

    def lost(self) -> None:
        self._transport = None
        self._outbox = []
        self._authed = False
        self._failed_at = self._now()
        self._down_until = self._failed_at + RECONNECT_BACKOFF_MS / 1000
        pending, self.pending = self.pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(PeerError(f"{self.addr}: connection lost"))
