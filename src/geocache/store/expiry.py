"""The timing wheel that finds expired keys without scanning the keyspace.

Keys with an expiry are filed under the slot `expires_at_ms // slot_ms`. A slot is due
once the wall clock has passed its end, when every key filed in it has expired. The
store still checks each key's real expiry before it removes it.

A key is filed again only when its expiry moves to a different slot, so rewriting a
hot key with the same TTL does not grow the wheel. The store withdraws a key's filing
when its entry leaves (deleted, evicted, expired, given another expiry): a slot is a
dict, so that costs O(1), and the wheel never holds more keys than the store, however
many keys pass through it before their slots come due. A heap of slot numbers gives
the next due slot in O(log slots); a slot emptied by withdrawals stays until it is due,
so the heap holds each slot once.

Lazy expiry (the store checks `expires_at_ms` on every access) keeps expired keys from
ever being returned; the wheel only reclaims their memory, at most one slot late.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

# 100 ms: memory of expired keys is reclaimed within about a tenth of a second, and a
# day of distinct expiry times needs at most 864,000 slots.
DEFAULT_SLOT_MS = 100


class ExpiryWheel:
    __slots__ = ("_heap", "_slot_ms", "_slots")

    def __init__(self, slot_ms: int = DEFAULT_SLOT_MS) -> None:
        if slot_ms <= 0:
            raise ValueError("slot_ms must be positive")
        self._slot_ms = slot_ms
        self._slots: dict[int, dict[bytes, None]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        """Keys filed."""
        return sum(len(keys) for keys in self._slots.values())

    def add(self, key: bytes, expires_at_ms: int, previous_expires_at_ms: int = 0) -> None:
        """File `key` under its expiry, moving it from the slot of its previous expiry."""
        slot = expires_at_ms // self._slot_ms
        if previous_expires_at_ms:
            if previous_expires_at_ms // self._slot_ms == slot:
                return
            self.discard(key, previous_expires_at_ms)
        keys = self._slots.get(slot)
        if keys is None:
            self._slots[slot] = {key: None}
            heapq.heappush(self._heap, slot)
        else:
            keys[key] = None

    def discard(self, key: bytes, expires_at_ms: int) -> None:
        """Withdraw `key`, filed under `expires_at_ms`, because its entry left the store."""
        keys = self._slots.get(expires_at_ms // self._slot_ms)
        if keys is not None:
            keys.pop(key, None)

    def clear(self) -> None:
        self._slots.clear()
        self._heap.clear()

    def reap(self, now_ms: int, max_keys: int, expire: Callable[[bytes, int], object]) -> int:
        """Hand up to `max_keys` candidates from due slots to `expire(key, now_ms)`.

        Returns how many candidates were handed over; fewer than `max_keys` means no
        due slot is left.
        """
        done = 0
        due_before = now_ms // self._slot_ms  # slots wholly in the past
        heap, slots = self._heap, self._slots
        while heap and heap[0] < due_before and done < max_keys:
            slot = heap[0]
            keys = slots[slot]
            while keys and done < max_keys:
                expire(keys.popitem()[0], now_ms)
                done += 1
            if not keys:
                heapq.heappop(heap)
                del slots[slot]
        return done
