"""One blocking RESP connection: send commands, read replies. Used by the CLI tools.

The sans-IO parts (encoding commands, parsing replies) are the protocol package's; this
module only moves bytes over a socket, with a timeout on every read and write.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence

from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command

Arg = bytes | str | int | float


class ReplyError(Exception):
    """The server answered with an error reply."""


class Connection:
    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float = 5.0,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        """`tls`: TLS with this context, the certificate checked for `server_hostname`
        (default: `host`)."""
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
            except BaseException:
                sock.close()
                raise
        self._sock: socket.socket = sock
        self._reader = ReplyReader()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, *args: Arg) -> object:
        """Run one command; an error reply raises ReplyError."""
        (reply,) = self.pipeline([args])
        if isinstance(reply, Error):
            raise ReplyError(str(reply))
        return reply

    def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[object]:
        """Send every command, then read every reply (errors come back as Error values)."""
        self._sock.sendall(b"".join(encode_command(*c) for c in commands))
        replies: list[object] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                data = self._sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("connection closed by the server")
                self._reader.feed(data)
                continue
            replies.append(reply)
        return replies
