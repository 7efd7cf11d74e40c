"""Tombstones: the memory of deletes, so that a late replicated write cannot undo one.

In cluster mode a delete (or an expiry) leaves `(version, origin, created_wall_ms)` for
the key (or the six-field shape with an expiry register of its own, entry.py). A
replicated write for that key wins only if its (version, origin) is larger.

The space is bounded in count and age. A tombstone leaves it either when it is older
than `ttl_ms` or when room is needed, oldest first; either way the store's
`resurrection_floor` rises to its version, and replicated writes older than the floor
for keys the store holds neither live nor dead are dropped. A dropped tombstone can
therefore cost a later miss, never a deleted value coming back.
"""

from __future__ import annotations

from collections import OrderedDict

from geocache.store.entry import Tombstone

# One hour: far longer than any replication delay, hint or repair round, so a
# tombstone outlives every copy of the write it deletes.
DEFAULT_TOMBSTONE_TTL_MS = 3_600_000
# 1,000,000 tombstones cost about 200 MB at most; more pressure raises the floor instead.
DEFAULT_MAX_TOMBSTONES = 1_000_000


class Tombstones:
    __slots__ = ("_max", "_tombs", "_ttl_ms", "floor")

    def __init__(
        self, max_tombstones: int = DEFAULT_MAX_TOMBSTONES, ttl_ms: int = DEFAULT_TOMBSTONE_TTL_MS
    ) -> None:
        if max_tombstones < 1:
            raise ValueError("max_tombstones must be at least 1")
        self._max = max_tombstones
        self._ttl_ms = ttl_ms
        # Insertion order is creation order, so the oldest is first.
        self._tombs: OrderedDict[bytes, Tombstone] = OrderedDict()
        self.floor = 0  # the resurrection floor: a version

    def __len__(self) -> int:
        return len(self._tombs)

    @property
    def max_tombstones(self) -> int:
        return self._max

    @property
    def ttl_ms(self) -> int:
        return self._ttl_ms

    def __contains__(self, key: bytes) -> bool:
        return key in self._tombs

    def get(self, key: bytes) -> Tombstone | None:
        return self._tombs.get(key)

    def items(self) -> list[tuple[bytes, Tombstone]]:
        return list(self._tombs.items())

    def put(self, key: bytes, version: int, origin: str, now_ms: int) -> None:
        """A delete at (version, origin), made or learnt at `now_ms`."""
        self.keep(key, (version, origin, now_ms))

    def keep(self, key: bytes, tomb: Tombstone) -> None:
        """Hold `tomb` for `key`, replacing any tombstone it had."""
        tombs = self._tombs
        tombs.pop(key, None)
        tombs[key] = tomb
        while len(tombs) > self._max:
            self._drop_oldest()

    def discard(self, key: bytes) -> None:
        """Forget the tombstone because a newer live write replaced it."""
        self._tombs.pop(key, None)

    def clear(self) -> None:
        """Drop every tombstone, raising the floor past all of them (FLUSHALL)."""
        while self._tombs:
            self._drop_oldest()

    def reap(self, now_ms: int, max_count: int) -> int:
        """Drop up to `max_count` tombstones older than the TTL; returns how many."""
        tombs, done = self._tombs, 0
        cutoff = now_ms - self._ttl_ms
        while tombs and done < max_count:
            first = next(iter(tombs.values()))
            if first[2] > cutoff:
                break
            self._drop_oldest()
            done += 1
        return done

    def _drop_oldest(self) -> None:
        # The floor rises to the value's version: writes up to it stay out. An expiry
        # register the tombstone held apart is forgotten with it (it could only set the
        # expiry of a write between the two versions arriving over an hour late).
        _key, tomb = self._tombs.popitem(last=False)
        if tomb[0] > self.floor:
            self.floor = tomb[0]
