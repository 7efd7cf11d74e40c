"""A TLS listener that says why it refused a connection: the node's TLS port and HTTPS.

asyncio's `create_server(ssl=...)` drops a failed handshake without a word (an
`ssl.SSLError` is an `OSError`, which the loop logs only in debug mode), so an
operator whose peers present the wrong certificate would see nothing. This listener
accepts plain sockets itself and, for each:

1. waits for the first byte (at most HANDSHAKE_TIMEOUT_S) and looks at it without
   reading it: a TLS connection starts with a handshake record (0x16). Anything else is
   plaintext sent to a TLS port: it gets `refusal` in clear (a RESP error that
   redis-cli prints, or an HTTP 400), and the connection is closed;
2. hands the socket to the loop's `connect_accepted_socket(ssl=...)`, which returns
   once the handshake is done (then the protocol's `connection_made` runs, as for any
   connection) or raises: expired, self-signed, unknown-CA certificates, a missing
   client certificate, no common protocol version.

Every refusal is counted and logged on one line, rate-limited per reason (tls.py's
LogLimiter); nothing else about the node changes. Handshakes in progress are bounded
(MAX_HANDSHAKES); a connection past the bound is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from geocache.tls import HANDSHAKE_RECORD, LogLimiter, describe

log = logging.getLogger("geocache.tls")

# Time a new connection has to send its ClientHello and finish the handshake (seconds):
# a handshake takes a few round trips; a socket that stays silent longer is a scanner
# or a slowloris, and holds a slot of MAX_HANDSHAKES meanwhile.
HANDSHAKE_TIMEOUT_S = 10.0
# Handshakes in progress at once per listener, bounding what silent sockets can hold.
MAX_HANDSHAKES = 1024
BACKLOG = 1024

RESP_REFUSAL = b"-ERR this port speaks TLS: connect with TLS (redis-cli --tls)\r\n"
_HTTP_BODY = b"This port speaks HTTPS: use https://\n"
HTTP_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_HTTP_BODY)).encode() + b"\r\n\r\n" + _HTTP_BODY
)


@dataclass(slots=True)
class TlsCounters:
    """Refusals on the node's TLS listeners, read by INFO."""

    handshakes: int = 0
    handshake_failures: int = 0
    plaintext_refused: int = 0
    # TLS handshakes that arrived on the plaintext RESP port (server/resp.py).
    tls_on_plaintext: int = 0


class TlsListener:
    """Accepts on `host:port`, handshakes with `context`, then runs `factory`'s protocol."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        refusal: bytes,
        counters: TlsCounters,
        limiter: LogLimiter,
    ) -> None:
        self.name = name
        self._factory = factory
        self._context = context
        self._refusal = refusal
        self._counters = counters
        self._limiter = limiter
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self.port = 0

    def listen(self, host: str, port: int) -> int:
        """Bind and start accepting; returns the port (a free one for port 0)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
        sock.setblocking(False)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop(sock))
        return self.port

    def close(self) -> None:
        """Stop accepting and drop handshakes in progress; connections made stay."""
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self._handshakes):
            task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and the like: say so, breathe, go on
                self._limiter.warning("accept", "cannot accept", listener=self.name, error=exc)
                await asyncio.sleep(0.1)
                continue
            if len(self._handshakes) >= MAX_HANDSHAKES:
                self._refuse(conn, _addr(peer), "too many handshakes in progress", b"")
                continue
            task = loop.create_task(self._handshake(conn, _addr(peer)))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, peer: str) -> None:
        try:
            await self._sniff_and_handshake(conn, peer)
        except asyncio.CancelledError:
            conn.close()  # the node is stopping
            raise

    async def _sniff_and_handshake(self, conn: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            first = await _peek(loop, conn, HANDSHAKE_TIMEOUT_S)
        except TimeoutError as exc:
            self._counters.handshake_failures += 1
            self._refuse(conn, peer, describe(exc), b"")
            return
        except OSError:
            first = b""
        if not first:
            conn.close()  # connected and closed (a port check): nothing to say
            return
        if first[0] != HANDSHAKE_RECORD:
            self._counters.plaintext_refused += 1
            self._refuse(conn, peer, "plaintext sent to a TLS port", self._refusal)
            return
        self._counters.handshakes += 1
        try:
            await loop.connect_accepted_socket(
                self._factory,
                conn,
                ssl=self._context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
            )
        except (OSError, TimeoutError, EOFError) as exc:
            self._counters.handshake_failures += 1
            self._refuse(conn, peer, describe(exc), b"")

    def _refuse(self, conn: socket.socket, peer: str, reason: str, answer: bytes) -> None:
        if answer:
            with contextlib.suppress(OSError):
                conn.recv(1 << 16)  # what it sent, so closing does not reset our answer
                conn.send(answer)
                conn.shutdown(socket.SHUT_WR)
        conn.close()
        self._limiter.warning(
            f"{self.name}:{reason}",
            "TLS connection refused",
            listener=self.name,
            client=peer,
            reason=reason,
        )


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket, timeout_s: float) -> bytes:
    """The first byte `conn` received, left unread; b"" if it closed first."""
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        async with asyncio.timeout(timeout_s):
            await readable
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv(1, socket.MSG_PEEK)


def _addr(info: object) -> str:
    if isinstance(info, tuple) and len(info) >= 2:
        host, port = info[0], info[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(info or "")
