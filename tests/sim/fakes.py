"""Fake peers for testing one cluster part alone: scripted nodes behind a dial function.

A `FakePeer` stands where a node would: `dial` is a `peers.Dial` that opens an in-memory
connection to it, so a real `PeerClient` (or a whole `Peers`) runs against it unchanged.
It answers the handshake as a node does (GC.HELLO answered with its own proof, then
GC.AUTH checked against the cluster secret, auth.py; a peer command before that is
refused, as dispatch refuses it) and every
other command with `handler(argv)`: a reply, or `HANG`, after which that connection
answers nothing more (a hung node). Replies leave in order, `delay_s` after the write
that carried their request.

What a test can look at: `received`, every command in arrival order with whether its
connection had proven the secret by then; `writes`, the writes as they arrived (to see
pipelining); `dials`. What it can do: `refuse` connections, `hang_dials` (a connect
that never completes), `drop()` every open connection (a reset).

Run tests on `loop.VirtualTimeLoop`: the client reads the loop's clock, so timeouts and
backoffs pass in virtual time, without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from geocache import auth
from geocache.cluster.peers import ProtocolFactory
from geocache.protocol.reader import RequestReader
from geocache.protocol.types import OK, Error
from geocache.protocol.writer import encode

# A handler's answer that hangs the connection: no reply, to this or anything after it.
HANG = object()
# A one-way delay that is not zero, so replies arrive in a later loop iteration (s).
DELAY_S = 0.001
NOAUTH = Error("NOAUTH peer commands need GC.AUTH first")

Handler = Callable[[list[bytes]], object]


@dataclass(frozen=True, slots=True)
class Received:
    """One command as the fake peer read it."""

    argv: list[bytes]
    authed: bool  # its connection had proven the secret when it arrived


class FakePeer:
    """A scripted node at one address, reached through `dial`."""

    def __init__(
        self,
        secret: str = "secret",
        handler: Handler | None = None,
        delay_s: float = DELAY_S,
        node_id: str = "fake",
    ) -> None:
        self.secret = secret
        self.node_id = node_id
        self.handler: Handler = handler or (lambda argv: OK)
        self.delay_s = delay_s
        self.received: list[Received] = []
        self.writes: list[bytes] = []
        self.dials = 0
        self.refuse = False
        self.hang_dials = False
        self.open: list[FakeTransport] = []

    async def dial(self, factory: ProtocolFactory) -> tuple[asyncio.Transport, asyncio.Protocol]:
        self.dials += 1
        await asyncio.sleep(self.delay_s)
        if self.hang_dials:
            await asyncio.get_running_loop().create_future()  # the caller's timeout ends it
        if self.refuse:
            raise ConnectionRefusedError("connection refused")
        protocol = factory()
        transport = FakeTransport(self, protocol)
        self.open.append(transport)
        protocol.connection_made(transport)
        return transport, protocol

    def drop(self) -> None:
        """Reset every open connection: the client hears it after one delay."""
        for transport in list(self.open):
            transport.lose(ConnectionResetError("connection reset by peer"))

    def commands(self) -> list[bytes]:
        """The names of the commands received, in order."""
        return [r.argv[0] for r in self.received]


class FakeTransport(asyncio.Transport):
    """The client's end of a connection to a FakePeer; the peer's side lives here too."""

    def __init__(self, peer: FakePeer, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._peer = peer
        self._protocol = protocol
        self._reader = RequestReader()
        self._closing = False
        self._hung = False
        self._handshake: auth.Transcript | None = None
        self._authed = False
        self._outbox: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        self._peer.writes.append(bytes(data))
        self._reader.feed(bytes(data))
        while (argv := self._reader.gets()) is not False:
            self._peer.received.append(Received(argv, self._authed))
            reply = self._answer(argv)
            if reply is HANG or self._hung:
                self._hung = True
                continue
            self._outbox.append(encode(reply))
        if self._outbox:
            loop = asyncio.get_running_loop()
            loop.call_later(self._peer.delay_s, self._deliver)

    def _answer(self, argv: list[bytes]) -> object:
        name = argv[0].upper()
        if name == b"GC.HELLO":
            peer = self._peer
            hello = auth.Transcript(argv[1].decode(), peer.node_id, argv[2], auth.new_nonce())
            self._handshake = hello
            proof = auth.proof(peer.secret, auth.SERVER_TO_CLIENT, hello)
            return [peer.node_id.encode(), hello.server_nonce, proof]
        if name == b"GC.AUTH":
            t, self._handshake = self._handshake, None
            secret = self._peer.secret
            self._authed = t is not None and auth.verify(secret, auth.CLIENT_TO_SERVER, t, argv[1])
            return OK if self._authed else Error("ERR peer authentication failed")
        if not self._authed:
            return NOAUTH
        return self._peer.handler(argv)

    def _deliver(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        if data and not self._closing:
            self._protocol.data_received(data)

    def lose(self, exc: Exception | None) -> None:
        """The connection is gone: the client's protocol hears it after one delay."""
        if self._closing:
            return
        self._closing = True
        self._outbox.clear()
        self._peer.open.remove(self)
        loop = asyncio.get_running_loop()
        loop.call_later(self._peer.delay_s, self._protocol.connection_lost, exc)

    def close(self) -> None:
        self.lose(None)

    def abort(self) -> None:
        self.lose(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
