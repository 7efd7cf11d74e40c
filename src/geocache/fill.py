"""What a read-through origin gives a node on a miss (DESIGN.md section 8).

The node holds at most one `Filler` (`node.origin`). On a GET miss at the key's primary
owner (or at a standalone node), the node awaits `fill(key)` and answers with what it
gives: a `Fill` (the value, the TTL to keep it for, and whether to store it: a stale
value served after an origin failure is answered but not stored again), None (the
origin has no such key), or an `Error` reply (the origin failed and nothing stale may
be served).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from geocache.protocol.types import Error


class Fill(NamedTuple):
    value: bytes
    ttl_ms: int  # 0: no expiry
    store: bool


class Filler(Protocol):
    @property
    def timeout_ms(self) -> int:
        """The longest a fill may take (a node forwarding a miss waits that much more)."""
        ...

    def content_type(self, key: bytes) -> str | None:
        """The media type the origin gave the value of `key`, if this node loaded it."""
        ...

    def serves(self, command: bytes) -> bool:
        """Whether a miss of this (lower-case) command name is filled from the origin."""
        ...

    async def fill(self, key: bytes) -> Fill | Error | None: ...
