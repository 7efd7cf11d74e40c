"""Connections to peer nodes: pipelined RESP requests with timeouts, authenticated once.

One `PeerClient` per peer address keeps one TCP connection. Requests are written as
they come and replies matched in order (RESP answers in order), so many requests share
the connection without waiting for each other. Every request has its own timeout. A
lost connection fails everything in flight with `PeerError`; the next request
reconnects, at most once per `reconnect_backoff_ms`, so a dead peer costs a failed
future, not a stalled caller.

On connect the client runs the mutual handshake of auth.py before any request is sent:
`GC.HELLO`, then it checks the server's proof (and, when membership knows who is at
this address, that the server is that node) and only then sends its own (`GC.AUTH`).
A handshake that fails is a `HandshakeError`: counted in `HandshakeStats`, logged
(rate-limited), and the address is not redialled for a backoff that doubles with each
failure in a row (RECONNECT_BACKOFF_MS up to AUTH_BACKOFF_MAX_MS), so a peer with
another secret costs a handshake every few seconds, not a busy loop.

Seams: how a connection is opened is a `Dial` function (TCP to the peer, or to the relay
`peer_map` names, by default; `tls_dial` with `--tls-cluster`: mutual TLS, the peer's
certificate checked for the host of its own address even through a relay), and every
time the client measures (timeouts, backoff, `failed_recently`) is the event loop's
clock, so the cluster simulator runs this very client over its simulated network in
virtual time. Fire-and-forget messages (membership) leave as requests on the connection
whose replies are read and dropped, unless a `SendDatagram` is given: then, once the
connection is up, each leaves through it with no reply expected. The simulator passes
one that sends a datagram beside the connection, which its network may lose one by one,
as SWIM must see loss; it is a parameter of the client rather than a trait of the
simulated transport because a lost write on a connection would leave a request without
its reply and put every later reply out of step, and because membership shares the data
channel with replication and repair, whose writes must never be lost.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from geocache import auth
from geocache.observability.throttle import LogThrottle
from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command
from geocache.tls import LogLimiter, channel_binding, describe

Arg = bytes | str | int | float
log = logging.getLogger("geocache.peers")
_failures = LogThrottle(log)

# A peer that refused or dropped a connection is not redialled for this long: a dead
# node then costs one failed connect per 200 ms, not one per request.
RECONNECT_BACKOFF_MS = 200
CONNECT_TIMEOUT_S = 1.0
# A peer whose connection failed this recently counts as down for write quorums, before
# membership has declared it dead (seconds): a crashed replica must not fail writes.
FAILED_WINDOW_S = 5.0
# Requests waiting on one connection; past this a caller fails at once (back-pressure).
MAX_IN_FLIGHT = 100_000
# A failed handshake doubles the backoff, up to this (ms): a member with another secret
# (or an impostor at its address) is asked again every 5 s at most, and a fixed secret
# is picked up within that.
AUTH_BACKOFF_MAX_MS = 5_000
# Bytes written to one connection and not yet taken by the peer; past this a caller
# fails at once and the peer counts as failed (a peer that accepts and never reads
# must not make this node buffer its writes without end: they become bounded hints).
MAX_UNSENT_BYTES = 64 << 20


class PeerError(Exception):
    """The peer could not be reached or did not answer in time."""


class HandshakeError(PeerError):
    """The handshake failed. `kind`: forged (the peer's proof did not check out),
    refused (the peer refused this node's), reflected (the peer claims this node's own
    id), relayed (the peer is not the member known at that address) or malformed."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def secret(self) -> bool:
        """Whether a proof failed: a different secret on one side (or an impostor)."""
        return self.kind in ("forged", "refused")


@dataclass(slots=True)
class HandshakeStats:
    """Handshakes this node ran as the dialing side (INFO, /metrics, readiness)."""

    proven: int = 0
    failed: int = 0
    # Failures where a proof did not check out (a different secret on one side).
    secret_failures: int = 0
    last_failure: str = ""


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


def tls_dial(
    addr: str, context: ssl.SSLContext, name_addr: str, log: LogLimiter | None = None
) -> Dial:
    """Dial `addr` over TLS with `context`, expecting the certificate of the node at
    `name_addr` (its own address: `addr` may be a relay in front of it). A handshake
    that fails (a certificate expired, from another CA, for another name) raises
    `ssl.SSLError` and is logged on one line, at most every 10 s per peer and reason."""
    host, _, port_text = addr.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    name = name_addr.rpartition(":")[0].strip("[]")

    async def dial(factory: ProtocolFactory) -> tuple[asyncio.Transport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.create_connection(
                factory, host, port, ssl=context, server_hostname=name
            )
        except ssl.SSLError as exc:
            if log is not None:
                reason = describe(exc)
                log.warning(
                    f"peer:{name_addr}:{reason}",
                    "TLS to peer failed",
                    peer=name_addr,
                    reason=reason,
                )
            raise

    return dial


def encode_request(head: Sequence[Arg], args: Sequence[bytes]) -> list[bytes]:
    """A request as RESP chunks for `PeerClient.call_encoded`: `head` (the peer command
    and its own arguments), then `args` as they were parsed (a client's command being
    forwarded), referenced rather than copied; the chunks are joined once, on the way
    out."""
    own = encode_command(*head)
    out = [b"*%d\r\n" % (len(head) + len(args)), own[len(b"*%d\r\n" % len(head)) :]]
    for arg in args:
        out += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return out


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
        expect: Callable[[], str | None] | None = None,
        handshakes: HandshakeStats | None = None,
        tls_log: LogLimiter | None = None,
    ) -> None:
        """`dial`: opens a connection to `addr` (TCP to it by default); `datagram`: how
        fire-and-forget messages leave (default: as requests, replies dropped);
        `expect`: the node id membership knows at `addr` (None: anyone who proves the
        secret, as a seed); `handshakes`: where handshake outcomes are counted;
        `tls_log`: where a connection ended by a TLS alert is logged (under TLS 1.3 a
        peer refuses our certificate after our side of the handshake is done, so the
        refusal arrives on the open connection, not from the dial)."""
        self.addr = addr
        self._dial_fn = dial or tcp_dial(addr)
        self._datagram = datagram
        self._tls_log = tls_log
        self._node_id = node_id
        self._secret = secret
        self._expect = expect or (lambda: None)
        self.handshakes = handshakes if handshakes is not None else HandshakeStats()
        # Handshakes failed in a row: the reconnect backoff doubles with each.
        self._auth_failures = 0
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
        self._requests: set[asyncio.Task[None]] = set()  # `request`s waiting to connect

    def channel_binding(self) -> bytes:
        """The TLS channel binding of the current connection (tls.py: "tls-unique"), b""
        when plaintext or not connected. Set from the moment the dial returns, so a proof
        made in `_authenticate` can cover it."""
        return channel_binding(self._transport)

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
        encoded = [encode_command(*c) for c in commands]
        return await self._exchange(encoded, len(commands), timeout_ms)

    async def call_encoded(self, request: list[bytes], timeout_ms: int = 1000) -> object:
        """Send one request already encoded as RESP, in chunks (a batch's records, their
        values referenced, not copied), and return its reply. The chunks are joined
        once, with everything else this loop turn sends to the peer."""
        (reply,) = await self._exchange(request, 1, timeout_ms)
        return reply

    def request(self, chunks: list[bytes], timeout_ms: int, done: Callable[[object], None]) -> None:
        """`call_encoded` without a task or coroutine: `done` gets the reply, or the
        PeerError that stands for it, from a later callback, never from this call.
        Replication sends a batch a peer this way: a connected peer then costs a
        batch a future and a timer, not a task, three coroutines and a timeout
        context. Not connected: the request waits for the connection in a task."""
        if not self.connected:
            task = asyncio.ensure_future(self._request_later(chunks, timeout_ms, done))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)
            return
        loop = asyncio.get_running_loop()
        try:
            (future,) = self._send(chunks, 1)
        except PeerError as exc:
            loop.call_soon(done, exc)
            return
        timer = loop.call_at(loop.time() + timeout_ms / 1000, self._expire, future, timeout_ms)
        future.add_done_callback(partial(self._answered, timer, done))

    async def _request_later(
        self, chunks: list[bytes], timeout_ms: int, done: Callable[[object], None]
    ) -> None:
        answer: object
        try:
            answer = await self.call_encoded(chunks, timeout_ms=timeout_ms)
        except PeerError as exc:
            answer = exc
        done(answer)

    def _expire(self, future: asyncio.Future[object], timeout_ms: int) -> None:
        """A `request` not answered in time: down, as `_exchange` says on its timeout."""
        if not future.done():
            self._failed_at = _now()
            future.set_exception(PeerError(f"{self.addr}: no answer in {timeout_ms} ms"))

    def _answered(
        self,
        timer: asyncio.TimerHandle,
        done: Callable[[object], None],
        future: asyncio.Future[object],
    ) -> None:
        timer.cancel()
        if future.cancelled():
            done(PeerError(f"{self.addr}: request cancelled"))
            return
        exc = future.exception()
        if exc is None:
            self._failed_at = None
            done(future.result())
        else:
            done(exc if isinstance(exc, PeerError) else PeerError(f"{self.addr}: {exc}"))

    async def _exchange(self, chunks: list[bytes], count: int, timeout_ms: int) -> list[object]:
        """Send `count` requests encoded as `chunks`; their replies, in order."""
        deadline = _now() + timeout_ms / 1000
        if not self.connected:
            try:
                await asyncio.wait_for(self._connect(), timeout=max(deadline - _now(), 0.001))
            except TimeoutError:
                raise PeerError(f"{self.addr}: not connected within {timeout_ms} ms") from None
        futures = self._send(chunks, count)
        try:
            async with asyncio.timeout(max(deadline - _now(), 0.001)):
                # One request (a batch, a call) waits on its own future: no gather.
                one = count == 1
                replies = [await futures[0]] if one else list(await asyncio.gather(*futures))
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

    def _send(self, chunks: list[bytes], count: int) -> list[asyncio.Future[object]]:
        """Queue `count` requests, encoded as `chunks`, for this turn's write."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise PeerError(f"{self.addr}: not connected")
        if len(self._pending) + count > MAX_IN_FLIGHT:
            raise PeerError(f"{self.addr}: too many requests in flight")
        if _buffered(transport) + self._outbox_bytes > MAX_UNSENT_BYTES:
            self._failed_at = _now()
            raise PeerError(f"{self.addr}: not reading what was sent")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(count)]
        self._pending.extend(futures)
        # Requests made in the same loop iteration (many clients' writes replicated to
        # this peer) leave in one write: one syscall and one packet instead of dozens.
        self._outbox += chunks
        self._outbox_bytes += sum(map(len, chunks))
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
        for future in self._send([encode_command(*args)], 1):
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
            backoff_ms = RECONNECT_BACKOFF_MS
            if isinstance(exc, HandshakeError):
                backoff_ms = self._handshake_failed(exc)
            self._down_until = self._failed_at + backoff_ms / 1000
            if self._transport is not None:
                self._transport.abort()
                self._transport = None
            raise PeerError(f"{self.addr}: cannot connect: {exc}") from exc
        self._auth_failures = 0
        self.handshakes.proven += 1

    def _handshake_failed(self, exc: HandshakeError) -> int:
        """Count and log a failed handshake; the backoff before the next try (ms)."""
        self._auth_failures += 1
        stats = self.handshakes
        stats.failed += 1
        stats.secret_failures += exc.secret
        stats.last_failure = str(exc)
        backoff_ms = min(
            RECONNECT_BACKOFF_MS << min(self._auth_failures - 1, 16), AUTH_BACKOFF_MAX_MS
        )
        _failures.warning(
            "peer handshake failed",
            kind=f"handshake:{self.addr}:{exc.kind}",
            peer=self.addr,
            reason=str(exc),
            retry_ms=backoff_ms,
        )
        return backoff_ms

    async def _authenticate(self) -> None:
        """The client's side of auth.py's handshake; HandshakeError if it fails."""
        addr = self.addr
        client_nonce = auth.new_nonce()
        (greeted,) = self._send([encode_command("GC.HELLO", self._node_id, client_nonce)], 1)
        hello = await greeted
        if isinstance(hello, Error):
            raise HandshakeError(f"{addr} refused GC.HELLO: {hello}", "malformed")
        if not (
            isinstance(hello, list) and len(hello) == 3 and all(isinstance(x, bytes) for x in hello)
        ):
            raise HandshakeError(f"{addr} answered GC.HELLO with {hello!r:.80}", "malformed")
        raw_id, server_nonce, server_proof = hello
        if not auth.valid_node_id(raw_id) or not auth.valid_nonce(server_nonce):
            raise HandshakeError(f"{addr} answered GC.HELLO with a bad id or nonce", "malformed")
        server_id = raw_id.decode()
        if server_id == self._node_id:
            raise HandshakeError(f"{addr} claims this node's own id (reflected?)", "reflected")
        expected = self._expect()
        if expected is not None and server_id != expected:
            raise HandshakeError(f"{addr} is {server_id}, not {expected} (relayed?)", "relayed")
        transcript = auth.Transcript(
            self._node_id, server_id, client_nonce, server_nonce, self._binding()
        )
        if not auth.verify(self._secret, auth.SERVER_TO_CLIENT, transcript, server_proof):
            raise HandshakeError(
                f"{addr} ({server_id}) failed to prove the cluster secret", "forged"
            )
        proof = auth.proof(self._secret, auth.CLIENT_TO_SERVER, transcript)
        (waiting,) = self._send([encode_command("GC.AUTH", proof)], 1)
        answer = await waiting
        if isinstance(answer, Error):
            raise HandshakeError(f"{addr} ({server_id}) refused this node's proof", "refused")

    def _binding(self) -> bytes:
        """This end's TLS channel binding (auth.channel_binding; empty without TLS)."""
        transport = self._transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        return auth.channel_binding(ssl_object)

    def _lost(self, exc: Exception | None, protocol: _Protocol) -> None:
        if protocol is not self._protocol:
            return  # an earlier connection, aborted and replaced already
        if self._tls_log is not None and not self._authed and self.channel_binding():
            # Lost before it proved anything: the peer refused our certificate after the
            # handshake (TLS 1.3). Its alert, or a reset that overtook it, says so.
            reason = describe(exc) if exc is not None else "closed by the peer"
            self._tls_log.warning(
                f"peer:{self.addr}:{reason}",
                "TLS to peer failed",
                peer=self.addr,
                reason=f"{reason} (our certificate refused?)",
            )
        self._protocol = None
        self._transport = None
        self._outbox = []
        self._outbox_bytes = 0
        self._authed = False
        self._failed_at = _now()
        # max: a failed handshake's longer backoff, set as it aborted this connection, stays.
        self._down_until = max(self._down_until, self._failed_at + RECONNECT_BACKOFF_MS / 1000)
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
        tls: ssl.SSLContext | None = None,
        tls_log: LogLimiter | None = None,
    ) -> None:
        """`routes`: peer address -> address to dial instead (config.peer_map); `dial`:
        the dial function for an address (TCP by default; the simulator's network in a
        simulation); `datagram`: see PeerClient; `tls`: dial every peer over TLS with
        this context instead (`tls_dial`), logging failed handshakes to `tls_log`."""
        self._node_id = node_id
        self._secret = secret
        self._routes = routes or {}
        self._dial = dial
        self._datagram = datagram
        self._tls = tls
        self._tls_log = tls_log
        self._clients: dict[tuple[str, str], PeerClient] = {}
        # Peer address -> the node id membership knows there: a dial to it must reach
        # that node (a fake member relaying another node's handshake names another id).
        self._expected: dict[str, str] = {}
        self.handshakes = HandshakeStats()

    def expect(self, ids_by_addr: dict[str, str]) -> None:
        """Who membership knows at each address, from now on (cluster.py)."""
        self._expected = ids_by_addr

    def get(self, addr: str, channel: str = DATA) -> PeerClient:
        client = self._clients.get((addr, channel))
        if client is None:
            via = self._routes.get(addr, addr)
            if self._tls is not None:
                dial = tls_dial(via, self._tls, addr, self._tls_log)
            else:
                dial = self._dial(via)
            client = PeerClient(
                addr,
                self._node_id,
                self._secret,
                dial,
                self._datagram,
                expect=lambda: self._expected.get(addr),
                handshakes=self.handshakes,
                tls_log=self._tls_log,
            )
            self._clients[addr, channel] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
