"""Memory accounting: `entry_size` is within 10% of what tracemalloc says entries cost.

Keys and values are made inside the measured region, one at a time, as the network
layer makes them, so their bytes objects count; nothing else is kept alive per entry.
The dict's table is between 1/3 and 2/3 full depending on the count, which moves the
truth by up to about 40 bytes an entry: 200,000 entries is near the costly end (the
table has just doubled), and bench/store.py reports 1,000,000 too.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from geocache.clock import ManualClock
from geocache.store import ENTRY_OVERHEAD_BYTES, EXPIRY_OVERHEAD_BYTES, Store
from geocache.store.entry import SPLIT_OVERHEAD_BYTES

TOLERANCE = 0.10


def measured_bytes_per_entry(
    count: int, key_len: int, value_len: int, ttl_ms: int = 0, ttl_changed: bool = False
) -> tuple[float, float]:
    """(bytes per entry tracemalloc saw, bytes per entry the store accounted).

    `ttl_changed`: each key's TTL is set again after the write (EXPIRE), so its entry
    holds the expiry's own version (the six-field shape)."""
    clock = ManualClock()
    key_format, value_format = b"%%0%dd" % key_len, b"%%0%dd" % value_len
    gc.collect()
    tracemalloc.start()
    try:
        store = Store(clock)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            if ttl_ms and i % 100 == 0:
                clock.advance(1)  # spread expiries over the wheel's slots, as in life
            expires_at_ms = clock.wall_ms() + ttl_ms if ttl_ms else 0
            key = key_format % i
            store.set(key, value_format % i, expires_at_ms)
            if ttl_changed:
                store.expire_at(key, expires_at_ms + 1000)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store) == count
    return (after - before) / count, store.used_bytes / count


@pytest.mark.parametrize(
    ("count", "key_len", "value_len", "ttl_ms", "ttl_changed"),
    [
        (200_000, 16, 100, 0, False),
        (100_000, 8, 1000, 0, False),
        (200_000, 16, 100, 3_600_000, False),
        (200_000, 16, 100, 3_600_000, True),
    ],
    ids=["200k-16B-100B", "100k-8B-1000B", "200k-16B-100B-ttl", "200k-16B-100B-ttl-changed"],
)
def test_entry_size_is_within_ten_percent_of_tracemalloc(
    count: int, key_len: int, value_len: int, ttl_ms: int, ttl_changed: bool
) -> None:
    measured, accounted = measured_bytes_per_entry(count, key_len, value_len, ttl_ms, ttl_changed)
    overhead = measured - key_len - value_len
    constant = ENTRY_OVERHEAD_BYTES + (EXPIRY_OVERHEAD_BYTES if ttl_ms else 0)
    constant += SPLIT_OVERHEAD_BYTES if ttl_changed else 0
    assert abs(accounted - measured) <= TOLERANCE * measured, (
        f"measured {measured:.1f} B/entry ({overhead:.1f} B over key and value); "
        f"entry_size says {accounted:.1f}: calibrate the overhead ({constant}) in entry.py"
    )
