"""Hinted handoff: writes an owner missed, kept until it is back.

When a replica does not acknowledge a write, the coordinator keeps the newest record per
key for that replica (a later write of the key replaces the earlier hint) and replays
them when membership says the replica is alive again. The space is bounded per target
and in age; what overflows is dropped and counted, and the target is marked as needing
repair, since hints are an optimisation and repair is the guarantee.
"""

from __future__ import annotations

from collections import OrderedDict

from geocache.cluster.journal import Write
from geocache.store.entry import Entry, Tombstone

# 100,000 hints per target: about 30 MB for 200-byte values, minutes of writes.
MAX_HINTS_PER_TARGET = 100_000
# Hints older than an hour are dropped: repair takes over past that.
MAX_HINT_AGE_MS = 3_600_000


class Hints:
    def __init__(self, max_per_target: int = MAX_HINTS_PER_TARGET) -> None:
        self._max = max_per_target
        self._by_target: dict[str, OrderedDict[bytes, tuple[Entry | Tombstone, int]]] = {}
        self.dropped = 0
        self.needs_repair: set[str] = set()

    def __len__(self) -> int:
        return sum(len(h) for h in self._by_target.values())

    def targets(self) -> list[str]:
        return [t for t, h in self._by_target.items() if h]

    def add(self, target: str, writes: list[Write], now_ms: int) -> None:
        hints = self._by_target.setdefault(target, OrderedDict())
        for key, record in writes:
            hints.pop(key, None)
            hints[key] = (record, now_ms)
        while len(hints) > self._max:
            hints.popitem(last=False)
            self.dropped += 1
            self.needs_repair.add(target)

    def batch(self, target: str, max_count: int, now_ms: int) -> list[Write]:
        """Up to `max_count` oldest hints for `target`, dropping expired ones first."""
        hints = self._by_target.get(target)
        if not hints:
            return []
        while hints:
            _key, (_record, added) = next(iter(hints.items()))
            if added + MAX_HINT_AGE_MS > now_ms:
                break
            hints.popitem(last=False)
            self.dropped += 1
            self.needs_repair.add(target)
        return [(key, record) for key, (record, _) in list(hints.items())[:max_count]]

    def done(self, target: str, writes: list[Write]) -> None:
        """Forget hints that were delivered (unless a newer one replaced them meanwhile)."""
        hints = self._by_target.get(target)
        if hints is None:
            return
        for key, record in writes:
            held = hints.get(key)
            if held is not None and held[0] is record:
                del hints[key]
