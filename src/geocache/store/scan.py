"""SCAN cursors that never miss a key present for the whole iteration.

The store's order changes on every read (LRU), so an offset into it is no cursor. A
SCAN starting at cursor 0 takes a snapshot of the key list (8 bytes a key) and the
cursor encodes (snapshot id, offset). Keys deleted since the snapshot are skipped;
keys added since may or may not be returned, as Redis allows.

Snapshots are bounded: at most `max_snapshots`, each dropped after `idle_ms` unused.
A cursor whose snapshot was dropped restarts at the same offset of a fresh snapshot,
which may repeat or skip keys: documented, and only under more concurrent SCANs than
the bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from geocache.clock import Clock

# Four concurrent scans of a million keys cost 32 MB; a fifth evicts the oldest.
DEFAULT_MAX_SNAPSHOTS = 4
# A client that stops scanning for a minute has given up.
DEFAULT_IDLE_MS = 60_000
_OFFSET_BITS = 32


class Scanner:
    __slots__ = ("_clock", "_idle_ms", "_max", "_next_id", "_snapshots")

    def __init__(
        self,
        clock: Clock,
        max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
        idle_ms: int = DEFAULT_IDLE_MS,
    ) -> None:
        self._clock = clock
        self._max = max_snapshots
        self._idle_ms = idle_ms
        self._next_id = 1
        self._snapshots: OrderedDict[int, tuple[list[bytes], int]] = OrderedDict()

    def scan(
        self,
        cursor: int,
        count: int,
        list_keys: Callable[[], list[bytes]],
        is_live: Callable[[bytes], bool],
    ) -> tuple[int, list[bytes]]:
        """Up to about `count` live keys from `cursor`; returns (next cursor, keys)."""
        now = self._clock.mono_ms()
        self._drop_idle(now)
        snap_id, offset = cursor >> _OFFSET_BITS, cursor & ((1 << _OFFSET_BITS) - 1)
        found = self._snapshots.pop(snap_id, None) if cursor else None
        if found is None:
            snap_id = self._next_id
            self._next_id += 1
            keys = list_keys()
        else:
            keys = found[0]
        chunk = keys[offset : offset + count]
        offset += len(chunk)
        if offset >= len(keys):
            return 0, [k for k in chunk if is_live(k)]
        self._snapshots[snap_id] = (keys, now)
        while len(self._snapshots) > self._max:
            self._snapshots.popitem(last=False)
        return (snap_id << _OFFSET_BITS) | offset, [k for k in chunk if is_live(k)]

    def _drop_idle(self, now: int) -> None:
        snaps = self._snapshots
        while snaps:
            first_id = next(iter(snaps))
            if snaps[first_id][1] + self._idle_ms > now:
                break
            del snaps[first_id]
