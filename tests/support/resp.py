"""A tiny raw RESP client for byte-exact comparisons, independent of geocache's codec.

`reply_end(buf, pos)` is a reply-boundary scanner: it returns the offset just past the
one complete RESP2/RESP3 reply that starts at `pos`, or None when more bytes are
needed. `RawClient` sends argv as a multibulk request and returns each reply as the
exact bytes the server wrote. `decode` turns raw bytes into a small tagged tree
(`Reply`) for the few comparisons that must look inside a reply (shapes, tolerances).

Nothing here trusts the server: a malformed reply raises `RespFormatError`, and every
read has a deadline, so a hung or misbehaving server fails a test instead of hanging it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

# Types whose payload is one line: simple string, error, integer, null, double,
# boolean, big number.
_LINE_TYPES = frozenset(b"+-:_,#(")
# Types whose header is a length followed by that many bytes and CRLF.
_BLOB_TYPES = frozenset(b"$!=")
# Aggregates: element count in the header (maps and attributes hold count * 2 items).
_ARRAY_TYPES = frozenset(b"*~>")
_MAP_TYPES = frozenset(b"%|")

# A reply from a well-behaved test server arrives within this budget (seconds); the
# generous value absorbs a loaded CI machine without letting a hang go unnoticed.
DEFAULT_TIMEOUT_S = 10.0

Arg = bytes | str | int | float


class RespFormatError(ValueError):
    """The bytes are not valid RESP."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before a full reply arrived."""


def encode_command(argv: Sequence[Arg]) -> bytes:
    """Encode argv as a RESP multibulk request, the way every client sends commands."""
    parts = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        data = _to_bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _to_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    return str(arg).encode()


def _line_end(buf: bytes | bytearray, pos: int) -> int | None:
    """Offset of the CRLF ending the header line that starts at pos, or None."""
    end = buf.find(b"\r\n", pos)
    return None if end < 0 else end


def _header_int(buf: bytes | bytearray, pos: int, end: int) -> int:
    try:
        return int(bytes(buf[pos + 1 : end]))
    except ValueError:
        raise RespFormatError(f"bad length header {bytes(buf[pos:end])!r}") from None


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """Offset just past the complete reply starting at `pos`, or None if incomplete.

    Iterative, so a deeply nested reply cannot exhaust the Python stack: `pending`
    counts the replies still owed by the aggregates opened so far.
    """
    pending = 1
    while pending:
        if pos >= len(buf):
            return None
        kind = buf[pos]
        end = _line_end(buf, pos)
        if end is None:
            return None
        pending -= 1
        if kind in _LINE_TYPES:
            pos = end + 2
        elif kind in _BLOB_TYPES:
            size = _header_int(buf, pos, end)
            if size < 0:  # RESP2 null bulk
                pos = end + 2
                continue
            stop = end + 2 + size
            if len(buf) < stop + 2:
                return None
            if buf[stop : stop + 2] != b"\r\n":
                raise RespFormatError("bulk payload not followed by CRLF")
            pos = stop + 2
        elif kind in _ARRAY_TYPES or kind in _MAP_TYPES:
            count = _header_int(buf, pos, end)
            pos = end + 2
            if count > 0:
                pending += count * (2 if kind in _MAP_TYPES else 1)
            if kind == ord("|"):  # an attribute precedes the reply it describes
                pending += 1
        else:
            raise RespFormatError(f"unknown reply type byte {bytes([kind])!r}")
    return pos


def split_replies(data: bytes) -> tuple[list[bytes], bytes]:
    """Split a byte stream into complete replies and the incomplete rest."""
    replies: list[bytes] = []
    pos = 0
    while True:
        end = reply_end(data, pos)
        if end is None:
            return replies, data[pos:]
        replies.append(data[pos:end])
        pos = end


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply: `kind` is the RESP type byte as a str (`"+"`, `"$"`, `"*"`...).

    `value` is bytes for strings, errors, doubles and big numbers, an int for `:`,
    a bool for `#`, None for nulls, a tuple of Reply for arrays, sets and pushes, and
    a tuple of (key, value) Reply pairs for maps.
    """

    kind: str
    value: object

    @property
    def items(self) -> tuple[Reply, ...]:
        assert isinstance(self.value, tuple), f"not an aggregate: {self}"
        return self.value

    @property
    def pairs(self) -> dict[bytes, Reply]:
        """A map (RESP3) or a flat key/value array (RESP2) as a dict keyed by raw bytes."""
        if self.kind == "%":
            entries = cast("tuple[tuple[Reply, Reply], ...]", self.value)
            return {cast(bytes, k.value): v for k, v in entries}
        flat = self.items
        return {cast(bytes, flat[i].value): flat[i + 1] for i in range(0, len(flat), 2)}


def decode(raw: bytes) -> Reply:
    """Decode exactly one complete reply (raises RespFormatError on anything else)."""
    reply, pos = _decode_at(raw, 0)
    if pos != len(raw):
        raise RespFormatError(f"{len(raw) - pos} trailing bytes after the reply")
    return reply


def _decode_at(raw: bytes, pos: int) -> tuple[Reply, int]:
    if reply_end(raw, pos) is None:
        raise RespFormatError("incomplete reply")
    kind = chr(raw[pos])
    end = raw.index(b"\r\n", pos)
    header = raw[pos + 1 : end]
    pos = end + 2
    if kind in "+-,(":
        return Reply(kind, header), pos
    if kind == ":":
        return Reply(kind, int(header)), pos
    if kind == "_":
        return Reply(kind, None), pos
    if kind == "#":
        return Reply(kind, header == b"t"), pos
    if kind in "$!=":
        size = int(header)
        if size < 0:
            return Reply(kind, None), pos
        return Reply(kind, raw[pos : pos + size]), pos + size + 2
    count = int(header)
    if count < 0:
        return Reply(kind, None), pos
    if kind in "%|":
        pairs = []
        for _ in range(count):
            key, pos = _decode_at(raw, pos)
            value, pos = _decode_at(raw, pos)
            pairs.append((key, value))
        return Reply(kind, tuple(pairs)), pos
    items = []
    for _ in range(count):
        item, pos = _decode_at(raw, pos)
        items.append(item)
    return Reply(kind, tuple(items)), pos


class RawClient:
    """One TCP connection speaking raw RESP. Use as a context manager: it closes itself."""

    def __init__(self, host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, *argv: Arg) -> None:
        self.sock.sendall(encode_command(argv))

    def send_many(self, commands: Iterable[Sequence[Arg]]) -> None:
        """Pipeline: write every command in one go, without reading."""
        self.sock.sendall(b"".join(encode_command(argv) for argv in commands))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> bytes:
        """The exact bytes of the next complete reply (deadline: timeout_s)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            end = reply_end(self._buf)
            if end is not None:
                reply = bytes(self._buf[:end])
                del self._buf[:end]
                return reply
            self._fill(deadline)

    def read_replies(self, count: int) -> list[bytes]:
        return [self.read_reply() for _ in range(count)]

    def call(self, *argv: Arg) -> bytes:
        self.send(*argv)
        return self.read_reply()

    def read_until_closed(self, max_bytes: int = 64 * 1024 * 1024) -> bytes:
        """Everything the server sends until it closes (a reset counts as closed)."""
        deadline = time.monotonic() + self.timeout_s
        while len(self._buf) <= max_bytes:
            try:
                self._fill(deadline)
            except (ConnectionClosed, ConnectionResetError):
                break
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def is_closed_by_peer(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """True when the server closes the connection within timeout_s (data is dropped)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            finally:
                self.sock.settimeout(self.timeout_s)
            if not chunk:
                return True
        return False

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete reply in {self.timeout_s}s; have {self._buf!r:.200}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        finally:
            self.sock.settimeout(self.timeout_s)
        if not chunk:
            raise ConnectionClosed(f"closed by the server; partial reply {self._buf!r:.200}")
        self._buf += chunk
