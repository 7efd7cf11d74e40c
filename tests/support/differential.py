"""Differential steps: one command, and how its two replies (node, redis) are compared.

A case is a list of steps; a plain list of arguments is an exact step (raw bytes must
be equal). Wrappers relax the comparison only where Redis itself is not deterministic:
`unordered` for KEYS (hash order), `near` for PTTL (milliseconds pass between the two
servers), `scan_all` for SCAN (cursors are opaque and differ between servers; the set
of keys found by a full iteration must not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from .resp import RawClient, Reply, decode

Arg = bytes | str | int
Checker = Callable[[bytes, bytes], None]

# A full SCAN of the small test keyspaces finishes in a few calls; this bound turns a
# cursor that never returns to 0 into a failure instead of a hang.
MAX_SCAN_CALLS = 10_000


def check_exact(node: bytes, redis: bytes) -> None:
    assert node == redis


def check_unordered(node: bytes, redis: bytes) -> None:
    """Same aggregate type and the same elements, in any order."""
    mine, theirs = decode(node), decode(redis)
    assert mine.kind == theirs.kind, (node, redis)
    if not isinstance(theirs.value, tuple):
        assert node == redis
        return
    assert sorted(map(repr, mine.items)) == sorted(map(repr, theirs.items)), (node, redis)


def near_checker(tolerance: int) -> Checker:
    """Integer replies within `tolerance`; negative sentinels (-1, -2) must be equal."""

    def check(node: bytes, redis: bytes) -> None:
        mine, theirs = decode(node), decode(redis)
        if theirs.kind != ":" or not isinstance(theirs.value, int) or theirs.value < 0:
            assert node == redis
            return
        assert mine.kind == ":", node
        assert isinstance(mine.value, int)
        assert abs(mine.value - theirs.value) <= tolerance, (node, redis)

    return check


@dataclass(frozen=True, slots=True)
class Step:
    argv: tuple[Arg, ...]
    check: Checker = check_exact
    scan: bool = False

    def run(self, client: RawClient) -> bytes:
        if self.scan:
            return scan_all(client, self.argv)
        return client.call(*self.argv)

    def __str__(self) -> str:
        return " ".join(repr(a) if not isinstance(a, str) else a for a in self.argv)


def unordered(*argv: Arg) -> Step:
    return Step(tuple(argv), check_unordered)


def near(*argv: Arg, tolerance: int) -> Step:
    return Step(tuple(argv), near_checker(tolerance))


def scan_all(client: RawClient, options: Sequence[Arg]) -> bytes:
    """Iterate `SCAN cursor *options` to the end; return the sorted keys as a RESP array.

    Each intermediate reply must have SCAN's shape: [cursor as a bulk of digits, array
    of bulk keys]. Returning RESP keeps the comparison byte for byte.
    """
    cursor = b"0"
    keys: set[bytes] = set()
    for _ in range(MAX_SCAN_CALLS):
        reply = decode(client.call("SCAN", cursor, *options))
        if reply.kind == "-":
            return b"-" + cast(bytes, reply.value) + b"\r\n"
        cursor, batch = _scan_shape(reply)
        keys.update(batch)
        if cursor == b"0":
            return b"*%d\r\n" % len(keys) + b"".join(
                b"$%d\r\n%s\r\n" % (len(k), k) for k in sorted(keys)
            )
    raise AssertionError(f"SCAN did not finish in {MAX_SCAN_CALLS} calls")


def _scan_shape(reply: Reply) -> tuple[bytes, list[bytes]]:
    assert reply.kind == "*" and len(reply.items) == 2, reply
    cursor, batch = reply.items
    assert cursor.kind == "$" and isinstance(cursor.value, bytes), reply
    assert cursor.value.isdigit(), reply
    assert batch.kind == "*", reply
    keys = []
    for key in batch.items:
        assert key.kind == "$" and isinstance(key.value, bytes), reply
        keys.append(key.value)
    return cursor.value, keys


def scan(*options: Arg) -> Step:
    return Step(tuple(options), scan=True)


def as_step(item: Step | Sequence[Arg]) -> Step:
    return item if isinstance(item, Step) else Step(tuple(item))
