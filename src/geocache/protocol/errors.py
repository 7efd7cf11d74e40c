"""The one error of the request layer: a client broke the protocol, so its connection ends.

Messages are the texts Redis sends in the same situation (networking.c), so a client
sees the same `-ERR Protocol error: ...` line from us as from redis-server. The server
answers with the message and closes the connection: state after the error is undefined.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A malformed or oversized request; `str(error)` is the reply text, without `ERR `."""


INVALID_MULTIBULK_LENGTH = "Protocol error: invalid multibulk length"
INVALID_BULK_LENGTH = "Protocol error: invalid bulk length"
TOO_BIG_MBULK_COUNT = "Protocol error: too big mbulk count string"
TOO_BIG_BULK_COUNT = "Protocol error: too big bulk count string"
TOO_BIG_INLINE = "Protocol error: too big inline request"
UNBALANCED_QUOTES = "Protocol error: unbalanced quotes in request"
# Before AUTH, when a password is set (Redis >= 7.0): see pyparser.UNAUTH_*.
UNAUTH_MULTIBULK_LENGTH = "Protocol error: unauthenticated multibulk length"
UNAUTH_BULK_LENGTH = "Protocol error: unauthenticated bulk length"
# Redis closes such a client without a reply (it only logs); we say why before closing.
QUERY_BUFFER_LIMIT = "Protocol error: query buffer limit exceeded"


def expected_dollar(got: int) -> str:
    """Redis formats the offending byte with `%c`; a byte >= 0x80 becomes U+0080..U+00FF."""
    return f"Protocol error: expected '$', got '{chr(got)}'"
