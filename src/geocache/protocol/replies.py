"""Replies from a byte stream, for the client side, sans-IO: `feed` bytes, `gets` values.

A thin wrapper on hiredis's C reader, for RESP2 and RESP3 alike. Bulk and simple strings
come back as bytes, integers as int, nulls as None, arrays as lists, RESP3 maps as dicts,
sets as lists, doubles as float, booleans as bool, verbatim strings as bytes (hiredis drops
the `txt:` prefix), pushes as `hiredis.PushNotification` (a list). An error reply is an
`Error` value, returned, not raised; a stream that is not RESP raises ProtocolError.

`gets` returns `incomplete` (default False) while a reply is still arriving. A RESP3
boolean false is also False, so a RESP3 client must pass a sentinel of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import hiredis

from geocache.protocol.errors import ProtocolError
from geocache.protocol.types import Error


class ReplyReader:
    """Reply values from one connection's byte stream."""

    __slots__ = ("_incomplete", "_reader")

    def __init__(self, *, incomplete: object = False) -> None:
        self._incomplete = incomplete
        # hiredis places whatever `replyError` returns in the reply; its stub wants an
        # Exception class, but any callable taking the message will do.
        make_error = cast("Callable[[str], Exception]", Error)
        self._reader = hiredis.Reader(replyError=make_error, notEnoughData=incomplete)

    def feed(self, data: bytes) -> None:
        """Add received bytes. No I/O."""
        self._reader.feed(data)

    def gets(self) -> object:
        """The next complete reply, or `incomplete` until more bytes are fed."""
        try:
            return self._reader.gets()
        except hiredis.ProtocolError as exc:
            raise ProtocolError(f"Protocol error: {exc}") from None
