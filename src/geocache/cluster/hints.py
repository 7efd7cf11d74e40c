"""Hinted handoff: writes an owner missed, kept until it is back.

When a replica does not acknowledge a write, the coordinator keeps the newest record per
key for that replica (a later write of the key replaces the earlier hint) and replays
them when membership says the replica is alive again. The space is bounded in count per
target, in bytes over all targets (`max_bytes`: a hint keeps its value alive after the
store has evicted or replaced it) and in age; what overflows is dropped, oldest first,
and counted, and the target is marked as needing repair, since hints are an
optimisation and repair is the guarantee.

Replay is paced by size (`Pacer`): a batch is at most `batch_bytes` and gets a timeout
that follows its size and the target's measured throughput; a batch that times out
halves the next one (down to a single record), so a slow replica gets smaller batches
with longer timeouts, never the same batch resent whole in a loop.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from geocache.cluster.journal import Write
from geocache.store.entry import Entry, Tombstone

# 100,000 hints per target: about 30 MB for 200-byte values, minutes of writes.
MAX_HINTS_PER_TARGET = 100_000
# 64 MiB of hints over all targets by default (config.max_hint_bytes).
MAX_HINT_BYTES = 64 << 20
# Hints older than an hour are dropped: repair takes over past that.
MAX_HINT_AGE_MS = 3_600_000
# What one hint costs beyond its key and value (the OrderedDict slot, the tuples), bytes.
HINT_OVERHEAD_BYTES = 200


def hint_bytes(key: bytes, record: Entry | Tombstone) -> int:
    value = record[0] if len(record) == 4 else b""
    return len(key) + (len(value) if isinstance(value, bytes) else 0) + HINT_OVERHEAD_BYTES


class Hints:
    def __init__(
        self, max_per_target: int = MAX_HINTS_PER_TARGET, max_bytes: int = MAX_HINT_BYTES
    ) -> None:
        self._max = max_per_target
        self.max_bytes = max_bytes
        self._by_target: dict[str, OrderedDict[bytes, tuple[Entry | Tombstone, int]]] = {}
        self.bytes = 0
        self.dropped = 0
        self.needs_repair: set[str] = set()

    def __len__(self) -> int:
        return sum(len(h) for h in self._by_target.values())

    def targets(self) -> list[str]:
        return [t for t, h in self._by_target.items() if h]

    def add(self, target: str, writes: list[Write], now_ms: int) -> None:
        hints = self._by_target.setdefault(target, OrderedDict())
        for key, record in writes:
            old = hints.pop(key, None)
            if old is not None:
                self.bytes -= hint_bytes(key, old[0])
            hints[key] = (record, now_ms)
            self.bytes += hint_bytes(key, record)
        while len(hints) > self._max:
            self._drop_oldest(target)
        while self.max_bytes and self.bytes > self.max_bytes:
            # The target being added to gives way first, then the one holding the most.
            victim = target if hints else max(self._by_target, key=self._held_by)
            if not self._by_target[victim]:
                break
            self._drop_oldest(victim)

    def _held_by(self, target: str) -> int:
        return len(self._by_target[target])

    def _drop_oldest(self, target: str) -> None:
        key, (record, _added) = self._by_target[target].popitem(last=False)
        self.bytes -= hint_bytes(key, record)
        self.dropped += 1
        self.needs_repair.add(target)

    def batch(self, target: str, max_count: int, now_ms: int, max_bytes: int = 0) -> list[Write]:
        """The oldest hints for `target`, up to `max_count` and `max_bytes` (at least one),
        dropping expired ones first."""
        hints = self._by_target.get(target)
        if not hints:
            return []
        while hints:
            _key, (_record, added) = next(iter(hints.items()))
            if added + MAX_HINT_AGE_MS > now_ms:
                break
            self._drop_oldest(target)
        batch: list[Write] = []
        size = 0
        for key, (record, _) in hints.items():
            cost = hint_bytes(key, record)
            if batch and (len(batch) >= max_count or (max_bytes and size + cost > max_bytes)):
                break
            batch.append((key, record))
            size += cost
        return batch

    def done(self, target: str, writes: list[Write]) -> None:
        """Forget hints that were delivered (unless a newer one replaced them meanwhile)."""
        hints = self._by_target.get(target)
        if hints is None:
            return
        for key, record in writes:
            held = hints.get(key)
            if held is not None and held[0] is record:
                del hints[key]
                self.bytes -= hint_bytes(key, record)


# Replay pacing. A batch may take BASE_TIMEOUT_MS plus its size at the target's measured
# throughput, times SLACK; throughput starts at a cautious 4 MB/s and follows what each
# delivered batch shows. Batches start at 256 KiB and grow to 4 MiB while they succeed.
BASE_TIMEOUT_MS = 500
SLACK = 3
START_THROUGHPUT_BPS = 4 << 20
MIN_THROUGHPUT_BPS = 256 << 10
START_BATCH_BYTES = 256 << 10
MAX_BATCH_BYTES = 4 << 20
MAX_TIMEOUT_MS = 30_000


@dataclass(slots=True)
class Pacer:
    """One target's replay pace: how big the next batch is, how long it may take."""

    batch_bytes: int = START_BATCH_BYTES
    throughput_bps: float = START_THROUGHPUT_BPS
    timeouts: int = 0

    def timeout_ms(self, size: int) -> int:
        ms = BASE_TIMEOUT_MS + SLACK * 1000 * size / self.throughput_bps
        return int(min(ms, MAX_TIMEOUT_MS))

    def delivered(self, size: int, elapsed_s: float) -> None:
        if size >= 64 << 10 and elapsed_s > 0:
            measured = max(size / elapsed_s, MIN_THROUGHPUT_BPS)
            self.throughput_bps = 0.5 * self.throughput_bps + 0.5 * measured
        self.batch_bytes = min(self.batch_bytes * 2, MAX_BATCH_BYTES)

    def timed_out(self) -> None:
        """Split: the next batch is half this one (one record at least, by `batch`)."""
        self.timeouts += 1
        self.batch_bytes = max(self.batch_bytes // 2, 1)
        self.throughput_bps = max(self.throughput_bps / 2, MIN_THROUGHPUT_BPS)
