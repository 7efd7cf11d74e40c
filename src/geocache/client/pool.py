"""Sockets to nodes for the blocking client: one connection, and a pool of them per node.

`Conn` moves bytes: send a pipelined payload, read N replies by a deadline. `Pool` keeps
idle connections per node address, most recently used first, and checks one before
handing it out (`stale`): a node that died while the socket sat idle left an end-of-file
there, which a non-blocking peek sees without sending anything.

AUTH, when a password is set, rides ahead of a new connection's first command and its
reply is dropped: a wrong password shows as that command's NOAUTH error reply.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable

from geocache.client.topology import split_addr
from geocache.protocol.replies import ReplyReader
from geocache.protocol.writer import encode_command
from geocache.tls import LogLimiter, describe, host_of

Clock = Callable[[], float]

_INCOMPLETE = object()
_RECV_BYTES = 1 << 16
# Idle sockets kept per node: enough for a few threads' calls in flight at once; a
# busier burst opens more and closes the extras when they come back.
DEFAULT_POOL_SIZE = 8
# A refused TLS handshake reaches the caller as a node that could not be reached; the
# reason (a certificate expired, for another name, from an unknown CA) goes to the log,
# once per node and reason every 10 s.
TLS_LOG = LogLimiter(logging.getLogger("geocache.client"))


def log_tls_failure(addr: str, exc: ssl.SSLError) -> None:
    reason = describe(exc)
    TLS_LOG.warning(f"{addr}:{reason}", "TLS to node failed", node=addr, reason=reason)


class Conn:
    """One socket to one node (dialed at `via`, if given), with its reply parser."""

    __slots__ = ("_auth", "addr", "reader", "skip", "sock")

    def __init__(
        self,
        addr: str,
        timeout_s: float,
        auth: bytes,
        via: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.addr = addr
        sock = socket.create_connection(split_addr(via or addr), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:  # the node's own name, even through a relay (`via`)
            try:
                sock = tls.wrap_socket(sock, server_hostname=host_of(addr))
            except BaseException as exc:
                sock.close()
                if isinstance(exc, ssl.SSLError):
                    log_tls_failure(addr, exc)
                raise
        self.sock: socket.socket = sock
        self.reader = ReplyReader(incomplete=_INCOMPLETE)
        # AUTH rides ahead of the first command; its reply is dropped (a wrong password
        # shows as the command's NOAUTH error reply).
        self.skip = 1 if auth else 0
        self._auth = auth

    def send(self, payload: bytes, timeout_s: float) -> None:
        self.sock.settimeout(timeout_s)
        if self._auth:
            payload, self._auth = self._auth + payload, b""
        self.sock.sendall(payload)

    def read(self, count: int, deadline: float, clock: Clock) -> list[object]:
        replies: list[object] = []
        reader = self.reader
        while len(replies) < count:
            reply = reader.gets()
            if reply is _INCOMPLETE:
                remaining = deadline - clock()
                if remaining <= 0:
                    raise TimeoutError
                self.sock.settimeout(remaining)
                data = self.sock.recv(_RECV_BYTES)
                if not data:
                    raise ConnectionError("connection closed by the node")
                reader.feed(data)
            elif self.skip:
                self.skip -= 1
            else:
                replies.append(reply)
        return replies

    def stale(self) -> bool:
        """True if the node closed this idle socket (or sent what nobody asked for)."""
        if isinstance(self.sock, ssl.SSLSocket):
            return self._stale_tls(self.sock)
        try:
            self.sock.settimeout(0.0)
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True

    @staticmethod
    def _stale_tls(sock: ssl.SSLSocket) -> bool:
        """`stale` over TLS, which cannot peek: bytes waiting may be a TLS 1.3 session
        ticket (read and kept, not stale), application data nobody asked for, or the
        end of the connection (stale)."""
        if not sock.pending() and not select.select([sock], [], [], 0)[0]:
            return False
        try:
            sock.settimeout(0.0)
            sock.recv(1)
        except ssl.SSLWantReadError:
            return False  # only TLS records of its own (session tickets) were waiting
        except OSError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()


class Pool:
    """Idle sockets per node, most recently used first; `routes` as the client's."""

    def __init__(
        self,
        password: str | None,
        size: int,
        routes: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.auth = encode_command(b"AUTH", password) if password else b""
        self.tls = tls
        self._size = size
        self._routes = routes or {}
        self._idle: dict[str, list[Conn]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self, addr: str, timeout_s: float) -> Conn:
        while True:
            with self._lock:
                idle = self._idle.get(addr)
                conn = idle.pop() if idle else None
            if conn is None:
                return self.connect(addr, timeout_s)
            if not conn.stale():
                return conn
            conn.close()

    def connect(self, addr: str, timeout_s: float) -> Conn:
        """A new connection to the node at `addr` (through its route, if it has one)."""
        return Conn(addr, timeout_s, self.auth, self._routes.get(addr), self.tls)

    def release(self, conn: Conn) -> None:
        with self._lock:
            idle = self._idle.setdefault(conn.addr, [])
            if len(idle) < self._size and not self._closed:
                idle.append(conn)
                return
        conn.close()

    def drop(self, addr: str) -> None:
        with self._lock:
            idle = self._idle.pop(addr, [])
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, {}, True
        for conns in idle.values():
            for conn in conns:
                conn.close()
