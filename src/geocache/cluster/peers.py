"""Connections to peer nodes: pipelined RESP requests with timeouts, authenticated once.

One `PeerClient` per peer address keeps one TCP connection. Requests are written as
they come and replies matched in order (RESP answers in order), so many requests share
the connection without waiting for each other. Every request has its own timeout. A
lost connection fails everything in flight with `PeerError`; the next request
reconnects, at most once per `reconnect_backoff_ms`, so a dead peer costs a failed
future, not a stalled caller.

On connect the client proves the cluster secret (GC.CHALLENGE, then GC.AUTH; see
auth.py) before any request is sent.

Seams: how a connection is opened is a `Dial` function (TCP to the peer, or to the
relay `peer_map` names, by default), and every time the client measures (timeouts,
backoff, `failed_recently`) is the event loop's clock, so the cluster simulator runs
this very client over its simulated network in virtual time. Fire-and-forget messages
(membership) leave as requests on the connection whose replies are read and dropped,
unless a `SendDatagram` is given: then, once the connection is up, each leaves through
it with no reply expected. The simulator passes one that sends a datagram beside the
connection, which its network may lose one by one, as SWIM must see loss; it is a
parameter of the client rather than a trait of the simulated transport because a lost
write on a connection would leave a request without its reply and put every later
reply out of step, and because membership shares the data channel with replication
and repair, whose writes must never be lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from geocache import auth
from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command

Arg = bytes | str | int | float

# A peer that refused or dropped a connection is not redialled for this long: a dead
# node then costs one failed connect per 200 ms, not one per request.
RECONNECT_BACKOFF_MS = 200
CONNECT_TIMEOUT_S = 1.0
# A peer whose connection failed this recently counts as down for write quorums, before
# membership has declared it dead (seconds): a crashed replica must not fail writes.
FAILED_WINDOW_S = 5.0
# Requests waiting on one connection; past this a caller fails at once (back-pressure).
MAX_IN_FLIGHT = 100_000
# Bytes written to one connection and not yet taken by the peer; past this a caller
# fails at once and the peer counts as failed (a peer that accepts and never reads
# must not make this node buffer its writes without end: they become bounded hints).
MAX_UNSENT_BYTES = 64 << 20


class PeerError(Exception):
    """The peer could not be reached or did not answer in time."""


ProtocolFactory = Callable[[], asyncio.Protocol]
# Opens one connection: the transport and the protocol `factory` made for it.
Dial = Callable[[ProtocolFactory], Awaitable[tuple[asyncio.Transport, asyncio.Protocol]]]
# Sends one encoded fire-and-forget message beside an open connection; nothing answers.
SendDatagram = Callable[[asyncio.Transport, bytes], None]


def tcp_dial(addr: str) -> Dial:
    """Dial `addr` ("host:port", an IPv6 host in brackets) over TCP."""
    host, _, port_text = addr.rpartition(":")
    host, port = host.strip("[]"), int(port_text)  # a bad address fails here, at once

    async def dial(factory: ProtocolFactory) -> tuple[asyncio.Transport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        return await loop.create_connection(factory, host, port)

    return dial


def _now() -> float:
    """The event loop's clock (s): virtual time in a simulation, monotonic otherwise."""
    return asyncio.get_running_loop().time()


class _Protocol(asyncio.Protocol):
    def __init__(self, client: PeerClient) -> None:
        self._client = client
        self._reader = ReplyReader(incomplete=_INCOMPLETE)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        pending = self._client._pending
        while True:
            reply = self._reader.gets()
            if reply is _INCOMPLETE:
                return
            if not pending:
                return  # an answer nobody waits for: the protocol is out of step
            future = pending.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._lost(exc, self)


_INCOMPLETE = object()


def _buffered(transport: asyncio.Transport) -> int:
    """Bytes the transport holds unsent (0 for one that buffers nothing of its own)."""
    try:
        return transport.get_write_buffer_size()
    except NotImplementedError:
        return 0


def _consume(future: asyncio.Future[object]) -> None:
    """Retrieve a fire-and-forget reply or failure, so nothing logs it as lost."""
    if not future.cancelled():
        future.exception()


class PeerClient:
    def __init__(
        self,
        addr: str,
        node_id: str,
        secret: str,
        dial: Dial | None = None,
        datagram: SendDatagram | None = None,
    ) -> None:
        """`dial`: opens a connection to `addr` (TCP to it by default); `datagram`: how
        fire-and-forget messages leave (default: as requests, replies dropped)."""
        self.addr = addr
        self._dial_fn = dial or tcp_dial(addr)
        self._datagram = datagram
        self._node_id = node_id
        self._secret = secret
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._pending: deque[asyncio.Future[object]] = deque()
        self._down_until = 0.0
        self._failed_at: float | None = None
        # True once this connection proved the secret: nothing else is sent before that,
        # or a request could overtake GC.AUTH on the wire and be refused.
        self._authed = False
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._flush_scheduled = False

    @property
    def connected(self) -> bool:
        transport = self._transport
        return self._authed and transport is not None and not transport.is_closing()

    def failed_recently(self, window_s: float = FAILED_WINDOW_S) -> bool:
        """Whether the last connection to this peer failed, or a request to it timed out,
        within `window_s`, with no answer since."""
        failed_at = self._failed_at
        return failed_at is not None and _now() - failed_at < window_s

    async def call(self, *args: Arg, timeout_ms: int = 1000) -> object:
        """Send one command and return its reply (an Error value for an error reply)."""
        (reply,) = await self.pipeline([args], timeout_ms=timeout_ms)
        return reply

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], timeout_ms: int = 1000
    ) -> list[object]:
        deadline = _now() + timeout_ms / 1000
        if not self.connected:
            try:
                await asyncio.wait_for(self._connect(), timeout=max(deadline - _now(), 0.001))
            except TimeoutError:
                raise PeerError(f"{self.addr}: not connected within {timeout_ms} ms") from None
        futures = self._send(commands)
        try:
            async with asyncio.timeout(max(deadline - _now(), 0.001)):
                replies = list(await asyncio.gather(*futures))
        except TimeoutError:
            # Connected but silent (hung, cut off, or overloaded): down for quorums and
            # routing until it answers again, as if its connection had failed. The
            # connection stays: requests with longer timeouts (repair) may share it.
            self._failed_at = _now()
            raise PeerError(f"{self.addr}: no answer in {timeout_ms} ms") from None
        self._failed_at = None
        return replies

    def send_nowait(self, *args: Arg) -> None:
        """Fire and forget (membership messages): the reply is read and dropped (none
        comes when the message leaves through `datagram`)."""
        if self.connected:
            self._send_nowait(args)
        elif self._connecting is None and _now() >= self._down_until:
            self._connecting = asyncio.ensure_future(self._connect_quietly(args))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._connecting is not None:
            self._connecting.cancel()

    # -- internals -----------------------------------------------------------------------

    def _send(self, commands: Sequence[Sequence[Arg]]) -> list[asyncio.Future[object]]:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise PeerError(f"{self.addr}: not connected")
        if len(self._pending) + len(commands) > MAX_IN_FLIGHT:
            raise PeerError(f"{self.addr}: too many requests in flight")
        if _buffered(transport) + self._outbox_bytes > MAX_UNSENT_BYTES:
            self._failed_at = _now()
            raise PeerError(f"{self.addr}: not reading what was sent")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(futures)
        # Requests made in the same loop iteration (many clients' writes replicated to
        # this peer) leave in one write: one syscall and one packet instead of dozens.
        encoded = [encode_command(*c) for c in commands]
        self._outbox.extend(encoded)
        self._outbox_bytes += sum(len(e) for e in encoded)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return futures

    def _flush(self) -> None:
        self._flush_scheduled = False
        data, self._outbox, self._outbox_bytes = b"".join(self._outbox), [], 0
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

    def _send_nowait(self, args: Sequence[Arg]) -> None:
        transport = self._transport
        if self._datagram is not None and transport is not None:
            self._datagram(transport, encode_command(*args))
            return
        for future in self._send([args]):
            future.add_done_callback(_consume)

    async def _connect_quietly(self, first: Sequence[Arg]) -> None:
        try:
            await self._dial()
            self._send_nowait(first)
        except (OSError, PeerError, TimeoutError):
            pass
        finally:
            self._connecting = None

    async def _dial(self) -> None:
        if self.connected:
            return
        self._authed = False
        if _now() < self._down_until:
            raise PeerError(f"{self.addr}: down, retrying shortly")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                transport, protocol = await self._dial_fn(lambda: _Protocol(self))
                assert isinstance(protocol, _Protocol)
                self._transport = transport
                self._protocol = protocol
                await self._authenticate()
                self._authed = True
                self._failed_at = None
        except (OSError, TimeoutError, PeerError) as exc:
            self._failed_at = _now()
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

    def _lost(self, exc: Exception | None, protocol: _Protocol) -> None:
        if protocol is not self._protocol:
            return  # an earlier connection, aborted and replaced already
        self._protocol = None
        self._transport = None
        self._outbox = []
        self._outbox_bytes = 0
        self._authed = False
        self._failed_at = _now()
        self._down_until = self._failed_at + RECONNECT_BACKOFF_MS / 1000
        pending, self._pending = self._pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(PeerError(f"{self.addr}: connection lost"))


# Channels: forwarded commands may wait on the peer (a forwarded write waits for its
# replication), and a connection waiting on one stops reading until it is done. So
# forwarded commands get their own connection, and replication, repair and membership,
# which never wait, another: a forwarded write can then never queue behind the very
# replication it waits for (that cross-wait would hold both nodes until the timeout).
DATA = "data"
FORWARD = "forward"
# Batches from another region's stream wait at the gateway for its region's owners:
# they get a connection of their own too, so membership messages never queue behind.
GEO = "geo"


class Peers:
    """The PeerClients of one node, by address and channel."""

    def __init__(
        self,
        node_id: str,
        secret: str,
        routes: dict[str, str] | None = None,
        dial: Callable[[str], Dial] = tcp_dial,
        datagram: SendDatagram | None = None,
    ) -> None:
        """`routes`: peer address -> address to dial instead (config.peer_map); `dial`:
        the dial function for an address (TCP by default; the simulator's network in a
        simulation); `datagram`: see PeerClient."""
        self._node_id = node_id
        self._secret = secret
        self._routes = routes or {}
        self._dial = dial
        self._datagram = datagram
        self._clients: dict[tuple[str, str], PeerClient] = {}

    def get(self, addr: str, channel: str = DATA) -> PeerClient:
        client = self._clients.get((addr, channel))
        if client is None:
            dial = self._dial(self._routes.get(addr, addr))
            client = PeerClient(addr, self._node_id, self._secret, dial, self._datagram)
            self._clients[addr, channel] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
