"""Multi-key commands in a cluster, the parts that need no router: a group of keys one
node runs, and how the groups' replies become one reply.

A group's reply is spread to one result per key (`spread`): MGET's values one by one;
a count or an OK on the group's first key and nothing on the others; an error on every
key. `combined` folds the results back, in key order, into the command's reply: MGET's
array, the sum of the counts, OK, or the first error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from geocache.commands.context import Deferred
from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import OK, Error, Raw


@dataclass(frozen=True, slots=True)
class Group:
    """Keys of one multi-key command that one node runs: their positions in the
    command, and the command naming just them."""

    owner: str
    positions: list[int]
    argv: list[bytes]


def parse(raw: bytes) -> object:
    """One RESP reply as a value. No I/O."""
    reader = ReplyReader()
    reader.feed(raw)
    return reader.gets()


def value_of(reply: object) -> object:
    """A reply as a plain value (a forwarded reply arrives as RESP bytes)."""
    return parse(bytes(reply)) if isinstance(reply, Raw) else reply


async def gather_values(parts: list[object]) -> list[object]:
    async def one(part: object) -> object:
        return value_of(await part.awaitable if isinstance(part, Deferred) else part)

    return list(await asyncio.gather(*(one(p) for p in parts)))


def spread(name: bytes, reply: object, n: int) -> list[object]:
    """A group's reply as one result per key (MGET: its values; a count or OK: the
    whole reply on the first key, nothing on the others; an error on every key)."""
    if name == b"mget" and isinstance(reply, list) and len(reply) == n:
        return reply
    if isinstance(reply, Error) or name == b"mget":
        return [reply] * n
    return [reply] + [None] * (n - 1)


def combined(name: bytes, results: list[object]) -> object:
    if name == b"mget":
        return results
    error = next((r for r in results if isinstance(r, Error)), None)
    if error is not None:
        return error
    if name == b"mset":
        return OK
    return sum(r for r in results if isinstance(r, int))
