"""The client's exceptions: one base class, and one subclass per way a call can fail.

`Timeout` and `Unavailable` mean the cache could not answer; `on_error="miss"` turns
exactly these two into a miss. `CommandError` means a node answered and refused the
command (a counter that is not an integer, a wrong password): that is a bug or a
misconfiguration to see, never hidden as a miss.
"""

from __future__ import annotations

from typing import Literal

# What a call does when the cache cannot answer: raise Timeout or Unavailable, or act
# as a miss (ops.py says what each call then returns).
OnError = Literal["raise", "miss"]


class CacheError(Exception):
    """Any failure of a geocache client call."""


class Timeout(CacheError):
    """The call's deadline passed, or its last attempt timed out, before a node answered."""


class Unavailable(CacheError):
    """No node could be reached for this call (refused, connection lost, or all known down)."""


class CommandError(CacheError):
    """A node answered with an error reply for this command."""


class DecodeError(CacheError):
    """A stored value this client cannot read: a marked value it may not or cannot decode
    (a pickle, for a client that does not unpickle), or bytes that are not UTF-8 text when
    the client decodes text (client/values.py says how values are stored)."""
