"""Client requests from a byte stream, sans-IO: `feed` bytes in, `gets` commands out.

Every request means exactly what it means to redis-server (networking.c), errors carry
Redis's texts, limits are checked when a header arrives, and multibulk streams, the hot
path, are parsed by hiredis's C reader.

Theory of operation. Two engines share one stream:
- exact: `PythonRequestParser`, the Redis grammar in Python. It owns inline commands and
  decides every error. The reader starts here.
- fast: a hiredis.Reader. At an item boundary where the next byte is `*`, the exact
  parser's unread bytes move to a fresh hiredis reader, which then gets every `feed`.
  What it returns as a non-empty list of bytes is a command. Anything else (a hiredis
  error, an error or integer element, `*0`, an inline line after a frame) is an anomaly:
  the stream goes back to the exact parser from the first byte of that item, and the
  exact parser says what the item is (a command, nothing, or which ProtocolError).

hiredis exposes no offsets, so `_hiredis_cursor` reads its position through ctypes.
Finding an anomaly's first byte: the reader keeps the bytes fed to hiredis since `_k`, a
point where hiredis stood between items. A second hiredis reader replays them (same
bytes, same results), reading its cursor after each command; the end of the last command
before the anomaly is the item's start. `_k` moves forward by reading the cursor after one
command in every 64 KiB ("tracking"), which keeps the replay window small and cheap.

When hiredis runs out of input (gets() is False) the cursor shows the item it waits on:
- a top-level item that is not `*` (an inline line): the exact parser takes over there;
- a bulk header: its length is checked now, not once the payload has arrived;
- an array inside the frame (depth > 1): Redis has refused it already, so does the exact
  parser; so it does for a top-level RESP3 aggregate header (`%`, `~`, `>`, `|`), which
  to Redis is an inline line;
- a frame still incomplete after a whole further read: it is large, so the exact parser
  takes it over (one buffer, exact query-buffer accounting) and hands back after it.
Array headers over `max_multibulk_len` are refused by hiredis itself (its `maxelements`).
hiredis is fed at most min(max_bulk_bytes, max_query_buffer_bytes / 8) bytes between two
such checks, so no over-limit bulk or frame can complete unseen.

Two differences from Redis remain on the fast path, both about malformed frames:
- an element sent as a RESP simple string, verbatim string or big number (`+x`, `=`, `(`)
  instead of `$`, and a RESP3 set or attribute (`~`, `|`) where a frame should start, are
  read like bulk strings and an array (hiredis returns the same values for them);
- an element of another wrong type (`:1`, `_`, ...) is reported when its frame ends, not
  as soon as the element arrives (hiredis has already consumed it).
(And in both engines a NUL byte is an ordinary byte, where Redis's strchr stalls: see
pyparser.)
While the client has yet to authenticate (`set_auth_required`), and wherever the cursor is
unavailable (`_hiredis_cursor.AVAILABLE` False), only the exact parser runs: some 10x
slower per command, same behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import hiredis

from geocache.protocol import _hiredis_cursor
from geocache.protocol._hiredis_cursor import ARRAY, Cursor
from geocache.protocol.errors import ProtocolError
from geocache.protocol.pyparser import DOLLAR, LF, STAR, PythonRequestParser, parse_length

__all__ = ["ProtocolError", "RequestReader"]

# Redis's defaults: proto-max-bulk-len 512 MiB, client-query-buffer-limit 1 GiB, and the
# 1024*1024 arguments per command that Redis allowed before 7.0.
DEFAULT_MAX_BULK_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_QUERY_BUFFER_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_MULTIBULK_LEN = 1024 * 1024
# Read hiredis's cursor after one command per this many bytes (bytes): bounds the replay
# window and what it retains, at the cost of ~2 us per 64 KiB (~0.004 us per command).
_TRACK_EVERY_BYTES = 64 * 1024
# A well-formed header line fits in this (bytes): `$`, `-`, 19 digits, CR LF.
_HEADER_PEEK_BYTES = 32
# What hiredis raises on input it cannot read: its own errors, and TypeError for a RESP3
# map whose key is an array (a dict cannot hold it).
_HIREDIS_FAILURES = (hiredis.HiredisError, TypeError)
# Verdicts on the item hiredis waits for.
_WAIT, _HEADER_OK, _EXACT_HERE, _EXACT_FROM_FRAME = range(4)


class RequestReader:
    """Requests from one client connection; `gets` returns argv lists or False."""

    __slots__ = (
        "_checked",
        "_cursor",
        "_end",
        "_exact",
        "_fast_ok",
        "_force_exact",
        "_fresh",
        "_hfeed",
        "_hgets",
        "_k",
        "_max_bulk",
        "_max_count",
        "_max_qbuf",
        "_queued",
        "_src",
        "_step",
        "_track_after",
        "_tracking_since",
        "_win_at",
        "_window",
    )

    def __init__(
        self,
        *,
        max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES,
        max_query_buffer_bytes: int = DEFAULT_MAX_QUERY_BUFFER_BYTES,
        max_multibulk_len: int = DEFAULT_MAX_MULTIBULK_LEN,
        auth_required: bool = False,
    ) -> None:
        if max_bulk_bytes < 0 or max_query_buffer_bytes < 1 or max_multibulk_len < 1:
            raise ValueError("limits must be positive")
        self._max_bulk = max_bulk_bytes
        self._max_qbuf = max_query_buffer_bytes
        self._max_count = max_multibulk_len
        self._exact = PythonRequestParser(
            max_bulk_bytes=max_bulk_bytes,
            max_query_buffer_bytes=max_query_buffer_bytes,
            max_count=max_multibulk_len,
        )
        self._fast_ok = _hiredis_cursor.AVAILABLE
        self._exact.auth_required = auth_required
        self._force_exact = False  # the exact parser must read the next item itself
        # hiredis gets at most `_step` bytes between two checks, and the replay window is
        # trimmed every `_track_after` bytes: an over-limit bulk or command then always
        # shows up incomplete at a check, early enough (see _out_of_input).
        self._step = max(1, min(max_bulk_bytes, max_query_buffer_bytes // 8))
        self._track_after = max(1, min(_TRACK_EVERY_BYTES, max_query_buffer_bytes // 8))
        self._src: Callable[[], object] = self._exact_gets
        # Fast mode (hiredis) state; absolute offsets count bytes fed to this hiredis reader.
        self._cursor: Cursor | None = None  # None in exact mode
        self._hfeed: Callable[[bytes], None] = self._exact.feed
        self._hgets: Callable[[], object] = self._exact_gets
        self._window: list[bytes] = []  # bytes fed since `_win_at` (<= `_k`)
        self._queued: list[bytes] = []  # bytes not fed yet (see `_step`)
        self._win_at = self._k = self._end = self._fresh = 0
        self._checked = -1  # the waiting item whose header was found valid
        self._tracking_since = -1  # `_end` when tracking started, -1 when off

    # -- the API ---------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client. No I/O; nothing is parsed until `gets`."""
        if type(data) is not bytes:
            data = bytes(data)  # the window keeps references: they must not change
        if self._cursor is None:
            self._exact.feed(data)
        elif self._queued or self._fresh + len(data) > self._step:
            step = self._step
            self._queued += [data[i : i + step] for i in range(0, len(data), step)]
        else:
            self._feed_hiredis(data)

    def buffered_bytes(self) -> int:
        """Bytes held for commands not returned yet: the replay window, hiredis's own
        copy of what it has not consumed, and bytes queued for it. No I/O."""
        cursor = self._cursor
        if cursor is None:
            return self._exact.buffered_bytes()
        queued = sum(len(piece) for piece in self._queued)
        return (self._end - self._win_at) + cursor.unconsumed() + queued

    def set_max_multibulk_len(self, max_count: int) -> None:
        """Change the most arguments a command may have (checked when its header
        arrives), from the next command on: a peer's batches may be longer than a
        client's commands."""
        if max_count < 1:
            raise ValueError("limits must be positive")
        self._max_count = max_count
        self._exact.set_max_count(max_count)
        if self._cursor is not None:
            self._cursor.set_max_elements(max_count)

    def close(self) -> None:
        """Drop every buffer now (the connection closed); the reader is unusable after.

        `_src`, `_hgets` and `_hfeed` are bound methods of this reader or its parts: a
        reference cycle that only the garbage collector would break, holding whatever
        the client had sent until it runs."""
        self._exact = PythonRequestParser(max_bulk_bytes=0, max_query_buffer_bytes=1, max_count=1)
        self._cursor = None
        self._src = self._hgets = _closed
        self._hfeed = _closed_feed
        self._window, self._queued = [], []

    @property
    def auth_required(self) -> bool:
        """Whether the client has yet to authenticate (a password is set and no AUTH yet)."""
        return bool(self._exact.auth_required)

    def set_auth_required(self, required: bool) -> None:
        """Apply (or lift) Redis's limits for unauthenticated clients from the next command on.

        Until AUTH succeeds, a request may carry at most 10 arguments and bulks of at most
        16 KiB ("Protocol error: unauthenticated ..."). Requests are then read by the exact
        parser only: a stranger's few commands need no speed.
        """
        self._exact.auth_required = required
        cursor = self._cursor
        if required and cursor is not None:  # the exact parser takes over at the next item
            just_returned = cursor.depth() < 0  # hiredis emitted a command, read nothing since
            self._to_exact(self._end - cursor.unconsumed() if just_returned else self._locate())

    def gets(self) -> list[bytes] | Literal[False]:
        """The next complete command, or False until more bytes are fed.

        Raises ProtocolError (Redis's text) when the client broke the protocol.
        """
        while True:
            try:
                cmd = self._src()
            except _HIREDIS_FAILURES:
                if self._cursor is None:
                    raise  # not from hiredis: a bug, not a client's doing
                self._resync()
                continue
            if type(cmd) is list and cmd:
                for arg in cmd:
                    if type(arg) is not bytes:
                        break
                else:
                    return cmd
            if self._cursor is None:  # exact mode: it returns commands or False
                return False
            if cmd is not False:
                self._resync()
            elif not self._out_of_input():
                return False

    # -- exact mode ------------------------------------------------------------------

    def _exact_gets(self) -> object:
        """A command or False from the exact parser, or hiredis's answer once it took over."""
        parser = self._exact
        while True:
            if (
                self._fast_ok
                and not self._force_exact
                and not parser.auth_required
                and parser.next_byte() == STAR
            ):
                self._to_fast(parser.take_rest())
                return self._hgets()
            cmd = parser.gets()
            if cmd is not False:
                self._force_exact = False
            if cmd is not None:
                return cmd

    def _to_fast(self, data: bytes) -> None:
        reader = hiredis.Reader()
        self._cursor = Cursor(reader, self._max_count)
        self._hfeed, self._hgets = reader.feed, reader.gets
        self._src = self._hgets
        self._window, self._queued = [], []
        self._win_at = self._k = self._end = self._fresh = 0
        self._checked = self._tracking_since = -1
        self.feed(data)

    def _to_exact(self, at: int) -> None:
        """Hand the stream from absolute offset `at`, an item's first byte, to the exact parser."""
        for piece in self._window_from(at) + self._queued:
            self._exact.feed(piece)
        self._cursor = None
        self._window, self._queued = [], []
        self._src = self._exact_gets
        self._force_exact = True

    # -- fast mode -------------------------------------------------------------------

    def _feed_hiredis(self, data: bytes) -> None:
        self._hfeed(data)
        self._window.append(data)
        self._end += len(data)
        self._fresh += len(data)

    def _tracking_gets(self) -> object:
        """hiredis's gets, noting where the first command it returns ends (a new `_k`)."""
        cmd = self._hgets()
        if _is_command(cmd):
            assert self._cursor is not None
            self._advance(self._end - self._cursor.unconsumed())
        return cmd

    def _advance(self, k: int) -> None:
        self._k = k
        window = self._window
        drop = 0
        while drop < len(window) and self._win_at + len(window[drop]) <= k:
            self._win_at += len(window[drop])
            drop += 1
        del window[:drop]
        self._src = self._hgets
        self._tracking_since = -1

    def _out_of_input(self) -> bool:
        """hiredis returned False: check what it waits on. True when gets() should go on."""
        cursor = self._cursor
        assert cursor is not None
        depth = cursor.depth()
        if depth > 1 or (depth == 1 and cursor.root_type() != ARRAY):
            # An array inside the frame (Redis has refused it already), or a top-level
            # `%`, `~`, `>`, `|` header hiredis took for an aggregate (an inline line).
            self._resync()
            return True
        unconsumed = cursor.unconsumed()
        if unconsumed:
            # hiredis has consumed the type byte of the item it waits on, nothing more.
            at = self._end - unconsumed - 1
            if at != self._checked:
                verdict = self._check_waiting(at, cursor.depth())
                if verdict == _EXACT_HERE:
                    self._to_exact(at)
                    return True
                if verdict == _EXACT_FROM_FRAME:
                    self._resync()
                    return True
                if verdict == _HEADER_OK:
                    self._checked = at
        held = self._end - self._k
        if held > self._max_qbuf:
            self._resync()
            return True
        if held > self._track_after:
            if self._tracking_since < 0:
                self._tracking_since = self._end
                self._src = self._tracking_gets
            elif self._end > self._tracking_since:
                self._resync()  # a whole read without a command ending: one large frame
                return True
        self._fresh = 0
        if self._queued:
            self._feed_hiredis(self._queued.pop(0))
            return True
        return False

    def _check_waiting(self, at: int, depth: int) -> int:
        """Judge the item starting at absolute offset `at` that hiredis waits on."""
        head = self._peek(at, _HEADER_PEEK_BYTES)
        top = depth <= 0
        if top and head[0] != STAR:
            return _EXACT_HERE  # an inline command (or garbage): Redis reads it as a line
        cr = head.find(b"\r")
        if (cr < 0 and len(head) < _HEADER_PEEK_BYTES) or cr + 1 == len(head):
            return _WAIT  # the header line is still arriving
        if cr > 0 and not top and head[0] == DOLLAR and head[cr + 1] == LF:
            length = parse_length(head[1:cr])
            if length is not None and 0 <= length <= self._max_bulk:
                return _HEADER_OK
        # Anything else is an error or a line hiredis splits unlike Redis: let Redis's
        # grammar decide, from the start of the item (top level) or of its frame.
        return _EXACT_HERE if top else _EXACT_FROM_FRAME

    def _resync(self) -> None:
        """Something hiredis cannot vouch for: the exact parser takes over at its item."""
        self._to_exact(self._locate())

    def _locate(self) -> int:
        """The first byte of the item hiredis stopped at: replay the window from `_k`."""
        reader = hiredis.Reader()
        cursor = Cursor(reader, self._max_count)
        for piece in self._window_from(self._k):
            reader.feed(piece)
        start = self._k
        while True:
            try:
                cmd = reader.gets()
            except _HIREDIS_FAILURES:
                return start
            if not _is_command(cmd):
                return start
            start = self._end - cursor.unconsumed()

    def _window_from(self, at: int) -> list[bytes]:
        """The bytes fed to hiredis from absolute offset `at` on."""
        pieces: list[bytes] = []
        offset = self._win_at
        for piece in self._window:
            if offset + len(piece) > at:
                pieces.append(piece[max(0, at - offset) :] if offset < at else piece)
            offset += len(piece)
        return pieces

    def _peek(self, at: int, size: int) -> bytes:
        """Up to `size` bytes fed to hiredis from absolute offset `at` on."""
        head = b""
        offset = self._win_at
        for piece in self._window:
            if offset + len(piece) > at:
                start = max(0, at - offset)
                head += piece[start : start + size - len(head)]
                if len(head) == size:
                    break
            offset += len(piece)
        return head


def _closed() -> object:
    return False


def _closed_feed(data: bytes) -> None:
    pass


def _is_command(value: object) -> bool:
    """What the fast path accepts: a non-empty list of bytes."""
    return type(value) is list and bool(value) and all(type(arg) is bytes for arg in value)
