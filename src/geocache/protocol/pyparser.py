"""The request grammar of Redis's networking.c in pure Python: exact, incremental, slow.

This is the reference for what a request means. `RequestReader` runs it for inline
commands, for anything its hiredis fast path cannot vouch for (malformed input, a frame
that spans many reads) and, where that fast path is unavailable, for everything.

Theory of operation (processInputBuffer, processInlineBuffer, processMultibulkBuffer):
- At the start of an item the first byte decides: `*` is a multibulk frame, anything
  else one inline line up to LF (a CR before the LF is dropped; empty lines are skipped).
- A header line (`*<count>`, `$<length>`) ends at the first CR, and one more byte, any
  byte, must have arrived after it. Numbers are parsed like Redis's `string2ll`: no sign
  but `-`, no leading zeros, 64-bit range. A count <= 0 is an empty command (skipped).
- A bulk is `$<length>` then the payload then two bytes that nobody checks.
- Limits are checked when a header line is complete, before its payload is waited for
  (tighter ones while `auth_required`: Redis 7 protects itself from strangers so);
  a header line still without CR after 64 KiB is an error, as is an item (in progress
  or complete) larger than the query buffer limit.

Invariant: the buffer is compacted only between items, so `len(buf) - item_at` is the size
of the item in progress. (Redis's `strchr` stops at a NUL byte, so Redis waits forever on a
header or inline line with a NUL before its end; here a NUL is an ordinary byte.)
"""

from __future__ import annotations

import re
from typing import Literal

from geocache.protocol.errors import (
    INVALID_BULK_LENGTH,
    INVALID_MULTIBULK_LENGTH,
    QUERY_BUFFER_LIMIT,
    TOO_BIG_BULK_COUNT,
    TOO_BIG_INLINE,
    TOO_BIG_MBULK_COUNT,
    UNAUTH_BULK_LENGTH,
    UNAUTH_MULTIBULK_LENGTH,
    UNBALANCED_QUOTES,
    ProtocolError,
    expected_dollar,
)
from geocache.protocol.splitargs import split_args

STAR, DOLLAR, CR, LF = 0x2A, 0x24, 0x0D, 0x0A
# What a client that has not authenticated yet may send when a password is set (Redis 7):
# at most this many arguments, and bulks of at most this many bytes.
UNAUTH_MAX_COUNT = 10
UNAUTH_MAX_BULK_BYTES = 16 * 1024
# PROTO_INLINE_MAX_SIZE: the longest header or inline line Redis waits for (bytes).
INLINE_MAX_BYTES = 64 * 1024
# Compact the buffer once this many consumed bytes sit in front of it (bytes): keeps
# compaction amortized O(1) per byte without holding much dead memory.
_COMPACT_AFTER_BYTES = 64 * 1024
# Payloads at least this long (bytes) are copied out through a memoryview (one copy, not
# two); below it the view costs more than the second copy.
_COPY_VIA_VIEW_BYTES = 4096
_LENGTH = re.compile(rb"0|-?[1-9][0-9]{0,18}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# `gets` result when an item was consumed that is no command (empty line, `*0`, `*-1`).
SKIPPED = None


def parse_length(text: bytes) -> int | None:
    """A header number as Redis's string2ll reads it, or None when it is not one."""
    if 0 < len(text) < 19 and text.isdigit() and (text[0] != 0x30 or len(text) == 1):
        return int(text)  # the common case, without the regular expression
    if _LENGTH.fullmatch(text) is None:
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


class PythonRequestParser:
    """Requests from a byte stream; `gets` parses one top-level item per call."""

    __slots__ = (
        "_argv",
        "_buf",
        "_bulk",
        "_item_at",
        "_left",
        "_max_bulk",
        "_max_count",
        "_max_qbuf",
        "_pos",
        "auth_required",
    )

    def __init__(self, *, max_bulk_bytes: int, max_query_buffer_bytes: int, max_count: int):
        self._max_bulk = max_bulk_bytes
        self._max_qbuf = max_query_buffer_bytes
        self._max_count = max_count
        self._buf = bytearray()
        self._pos = 0  # next unread byte
        self._item_at = 0  # where the item in progress starts
        self._argv: list[bytes] = []
        self._left = 0  # elements still to read in the frame; 0 between items
        self._bulk = -1  # payload length of the element being read, -1 before its header
        self.auth_required = False  # the client has yet to AUTH: the UNAUTH_* limits apply

    def feed(self, data: bytes) -> None:
        self._buf += data

    def set_max_count(self, max_count: int) -> None:
        """Change the most arguments a command may have, from the next header on."""
        self._max_count = max_count

    def buffered_bytes(self) -> int:
        """Bytes held: the unread buffer and the arguments of the command in progress."""
        return len(self._buf) + sum(len(arg) for arg in self._argv)

    def next_byte(self) -> int | None:
        """The first byte of the next item when between items and it has arrived, else None."""
        if self._left or self._pos >= len(self._buf):
            return None
        return self._buf[self._pos]

    def take_rest(self) -> bytes:
        """Everything not yet parsed (call between items); the parser is left empty."""
        rest = bytes(self._buf[self._pos :])
        self._buf = bytearray()
        self._pos = self._item_at = 0
        return rest

    def gets(self) -> list[bytes] | Literal[False] | None:
        """A command; SKIPPED (None) for an item that is none; False when more data is needed."""
        if not self._left:
            self._start_item()
            buf, pos = self._buf, self._pos
            if pos == len(buf):
                return False
            if buf[pos] != STAR:
                return self._inline()
            if not self._frame_header():
                return self._need_more()
            if not self._left:
                return SKIPPED
        while self._left:
            if self._bulk < 0 and not self._bulk_header():
                return self._need_more()
            if not self._bulk_payload():
                return self._need_more()
        self._check_size()
        argv, self._argv = self._argv, []
        return argv

    # -- one item --------------------------------------------------------------------

    def _start_item(self) -> None:
        if self._pos >= _COMPACT_AFTER_BYTES and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._item_at = self._pos

    def _need_more(self) -> Literal[False]:
        if len(self._buf) - self._item_at > self._max_qbuf:
            raise ProtocolError(QUERY_BUFFER_LIMIT)
        return False

    def _check_size(self) -> None:
        """A whole item larger than the query buffer is refused, however fast it came."""
        if self._pos - self._item_at > self._max_qbuf:
            raise ProtocolError(QUERY_BUFFER_LIMIT)

    def _header_end(self, too_long: str) -> int:
        """Index of the CR ending the header at `pos`, or -1 until it (and one byte) arrive."""
        buf, pos = self._buf, self._pos
        cr = buf.find(b"\r", pos)
        if cr < 0:
            if len(buf) - pos > INLINE_MAX_BYTES:
                raise ProtocolError(too_long)
            return -1
        return cr if cr + 1 < len(buf) else -1

    def _frame_header(self) -> bool:
        cr = self._header_end(TOO_BIG_MBULK_COUNT)
        if cr < 0:
            return False
        count = parse_length(bytes(self._buf[self._pos + 1 : cr]))
        # Redis's order: its own limit is INT_MAX, so a stranger's big count is refused
        # as unauthenticated before our tighter max_count applies.
        if count is not None and count > UNAUTH_MAX_COUNT and self.auth_required:
            raise ProtocolError(UNAUTH_MULTIBULK_LENGTH)
        if count is None or count > self._max_count:
            raise ProtocolError(INVALID_MULTIBULK_LENGTH)
        self._pos = cr + 2
        self._left = max(count, 0)
        return True

    def _bulk_header(self) -> bool:
        cr = self._header_end(TOO_BIG_BULK_COUNT)
        if cr < 0:
            return False
        buf, pos = self._buf, self._pos
        if buf[pos] != DOLLAR:
            raise ProtocolError(expected_dollar(buf[pos]))
        length = parse_length(bytes(buf[pos + 1 : cr]))
        if length is None or length < 0 or length > self._max_bulk:
            raise ProtocolError(INVALID_BULK_LENGTH)
        if length > UNAUTH_MAX_BULK_BYTES and self.auth_required:
            raise ProtocolError(UNAUTH_BULK_LENGTH)
        self._pos = cr + 2
        self._bulk = length
        return True

    def _bulk_payload(self) -> bool:
        start, length = self._pos, self._bulk
        if len(self._buf) - start < length + 2:
            return False
        if length < _COPY_VIA_VIEW_BYTES:
            self._argv.append(bytes(self._buf[start : start + length]))
        else:  # one copy instead of two
            with memoryview(self._buf) as view:
                self._argv.append(bytes(view[start : start + length]))
        self._pos = start + length + 2
        self._bulk = -1
        self._left -= 1
        return True

    def _inline(self) -> list[bytes] | Literal[False] | None:
        buf, pos = self._buf, self._pos
        lf = buf.find(b"\n", pos)
        if lf < 0:
            if len(buf) - pos > INLINE_MAX_BYTES:
                raise ProtocolError(TOO_BIG_INLINE)
            return self._need_more()
        end = lf - 1 if lf > pos and buf[lf - 1] == CR else lf
        argv = split_args(bytes(buf[pos:end]))
        if argv is None:
            raise ProtocolError(UNBALANCED_QUOTES)
        self._pos = lf + 1
        self._check_size()
        return argv or SKIPPED
