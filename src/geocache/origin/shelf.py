"""What a node remembers of its origin's answers, bounded in time and in bytes.

`Shelf` keeps, per key, one answer until a deadline, in a byte budget, least recently
put dropped first. The read-through uses three:

- the stale shelf: each loaded value until its TTL plus `max_stale_s` has passed, so
  that when the origin fails it can still answer with the last value (stale-if-error).
  While the store holds the key too, both refer to the same bytes object, so the value
  costs the shelf nothing extra; the budget counts it anyway, so the bound holds
  once the store has let the key go.
- negative answers: keys the origin said it does not have, until `negative_ttl_s` ends.
- settled loads: each finished load's outcome for a moment, for the misses that arrive
  between the load's end and its value landing in the store (see readthrough.py).

Every answer put in one shelf lives equally long, so put order is deadline order:
expired answers are dropped from the front as new ones come, without a scan.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Bytes a shelved answer costs beyond its key and value: the OrderedDict's node and
# table slots (about 100), the (deadline, value) tuple (56) and the deadline int (32),
# rounded up, as ENTRY_OVERHEAD_BYTES is for the store.
SHELF_ENTRY_OVERHEAD_BYTES = 200


class Shelf(Generic[T]):
    __slots__ = ("_data", "_size", "dropped", "max_bytes", "used_bytes")

    def __init__(self, max_bytes: int, size: Callable[[T], int]) -> None:
        """`size`: the bytes an answer takes beyond its key and the fixed overhead."""
        self._data: OrderedDict[bytes, tuple[int, T]] = OrderedDict()
        self._size = size
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.dropped = 0  # answers dropped for room before their deadline

    def __len__(self) -> int:
        return len(self._data)

    def put(self, key: bytes, answer: T, until_ms: int, now_ms: int) -> None:
        """Keep `answer` until `until_ms` (or until the budget needs its room)."""
        self.discard(key)
        cost = self._cost(key, answer)
        if cost > self.max_bytes:
            return
        self._data[key] = (until_ms, answer)
        self.used_bytes += cost
        data = self._data
        while data:
            first_key, (first_until, _) = next(iter(data.items()))
            if first_until > now_ms and self.used_bytes <= self.max_bytes:
                break
            if first_until > now_ms:
                self.dropped += 1
            self.discard(first_key)

    def get(self, key: bytes, now_ms: int) -> T | None:
        """The answer kept for `key`, if its deadline has not passed."""
        found = self._data.get(key)
        if found is None:
            return None
        if found[0] <= now_ms:
            self.discard(key)
            return None
        return found[1]

    def discard(self, key: bytes) -> None:
        found = self._data.pop(key, None)
        if found is not None:
            self.used_bytes -= self._cost(key, found[1])

    def clear(self) -> None:
        self._data.clear()
        self.used_bytes = 0

    def _cost(self, key: bytes, answer: T) -> int:
        return len(key) + self._size(answer) + SHELF_ENTRY_OVERHEAD_BYTES
