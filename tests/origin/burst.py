"""A burst of the same request from many connections at once, for the singleflight tests."""

from __future__ import annotations

import socket
from collections.abc import Sequence

# A reply from a loaded node arrives within this budget (seconds).
TIMEOUT_S = 30.0


def burst(addresses: Sequence[tuple[str, int]], argv: Sequence[bytes]) -> list[bytes]:
    """Open one connection per address, send `argv` on each before reading any reply,
    then return each connection's reply (a short bulk string or an error line)."""
    request = b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)
    socks = [socket.create_connection(address, timeout=TIMEOUT_S) for address in addresses]
    try:
        for sock in socks:
            sock.sendall(request)
        return [_short_reply(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _short_reply(sock: socket.socket) -> bytes:
    """A bulk string (values here hold no CRLF) or a one-line reply, read whole."""
    data = b""
    while not _whole(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _whole(data: bytes) -> bool:
    lines = data.count(b"\r\n")
    one_line = data[:1] != b"$" or data.startswith(b"$-1")
    return lines >= 2 or (lines == 1 and one_line)
