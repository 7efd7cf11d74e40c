"""Expiry: lazy on access, active within a budget, and a wheel that holds only live keys."""

from __future__ import annotations

import math

import pytest

from geocache.clock import ManualClock, make_version
from geocache.store import Store, Tombstones
from geocache.store.expiry import DEFAULT_SLOT_MS, ExpiryWheel
from geocache.store.tombstones import DEFAULT_TOMBSTONE_TTL_MS

NOW_MS = 1_700_000_000_000


@pytest.mark.slow
def test_a_million_expired_keys_are_reclaimed_within_budget() -> None:
    keys, budget = 1_000_000, 20_000
    clock = ManualClock(NOW_MS)
    store = Store(clock)
    value = b"v" * 100
    set_ = store.set
    for i in range(keys):
        # TTLs spread over 10 s: 100 slots of the wheel.
        set_(b"%016d" % i, value, NOW_MS + 1 + i % 10_000)
    assert len(store) == keys
    clock.advance(10_000 + DEFAULT_SLOT_MS)

    calls = 0
    # Every key the wheel hands over here has expired, so the expirations counter counts
    # the keys active expiry looked at: one looked at but not reclaimed shows as a gap.
    while True:
        before = store.stats().expirations
        done = store.active_expire(budget)
        calls += 1
        assert store.stats().expirations - before == done <= budget
        if done < budget:
            break
    assert calls <= math.ceil(keys / budget) + 1
    assert len(store) == 0
    assert store.used_bytes == 0
    assert len(store._wheel) == 0
    assert store.stats().expirations == keys  # each key looked at once: no stale filing


def test_active_expire_looks_at_no_more_than_its_budget() -> None:
    clock = ManualClock(NOW_MS)
    store = Store(clock)
    for i in range(1000):
        store.set(b"k%d" % i, b"v", NOW_MS + 1 + i)
    store.set(b"forever", b"v")
    clock.advance(5000)
    sizes = []
    while (done := store.active_expire(64)) == 64:
        sizes.append(done)
    sizes.append(done)
    assert sum(sizes) == store.stats().expirations == 1000
    assert len(sizes) == math.ceil(1000 / 64)
    assert list(store.keys()) == [b"forever"]


def test_nothing_is_reclaimed_before_its_slot_has_passed() -> None:
    clock = ManualClock(NOW_MS)
    store = Store(clock)
    store.set(b"k", b"v", NOW_MS + 150)
    clock.advance(150)
    assert store.get(b"k") is None  # never returned once expired...
    store.set(b"j", b"v", NOW_MS + 151)
    clock.advance(1)
    assert len(store) == 1  # ...though reclaimed by the wheel only once its slot is over
    slot_end = (NOW_MS + 151) // DEFAULT_SLOT_MS * DEFAULT_SLOT_MS + DEFAULT_SLOT_MS
    clock.set_wall_ms(slot_end - 1)
    assert store.active_expire(10) == 0
    clock.set_wall_ms(slot_end)
    assert store.active_expire(10) == 1
    assert len(store) == 0


def test_the_wheel_holds_only_keys_the_store_holds() -> None:
    """Evicted, deleted, persisted and re-timed keys leave the wheel at once.

    Before, each kept its filing (and its key's bytes alive) until its slot came due:
    a cache with a one-hour TTL and churning keys grew by every key written in the hour.
    """
    clock = ManualClock(NOW_MS)
    store = Store(clock, max_keys=10)
    for i in range(10_000):
        store.set(b"churn%d" % i, b"v", NOW_MS + 3_600_000)
    assert len(store._wheel) == 10

    store.flush()
    store.set(b"deleted", b"v", NOW_MS + 1000)
    store.delete(b"deleted")
    store.set(b"persisted", b"v", NOW_MS + 1000)
    store.set(b"persisted", b"v", 0)
    store.set(b"moved", b"v", NOW_MS + 1000)
    store.expire_at(b"moved", NOW_MS + 500_000)
    store.set(b"same-slot", b"v", NOW_MS + 1000)
    store.set(b"same-slot", b"w", NOW_MS + 1001)
    assert len(store._wheel) == 2  # moved, same-slot
    clock.advance(2000)
    assert store.active_expire(100) == 1  # same-slot; nothing stale handed over
    assert list(store.keys()) == [b"persisted", b"moved"]


def test_a_key_expired_lazily_leaves_the_wheel() -> None:
    clock = ManualClock(NOW_MS)
    store = Store(clock)
    store.set(b"k", b"v", NOW_MS + 10)
    clock.advance(10)
    assert store.get(b"k") is None
    assert len(store._wheel) == 0
    assert store.stats().expirations == 1


def test_old_tombstones_are_reaped_within_the_same_budget() -> None:
    clock = ManualClock(NOW_MS)
    store = Store(clock, tombstones=Tombstones())
    v = make_version(NOW_MS)
    for i in range(100):
        store.apply_delete(b"k%d" % i, v + i, "eu-1")
    store.set(b"timed", b"v", NOW_MS + 10)
    clock.advance(DEFAULT_TOMBSTONE_TTL_MS)
    assert store.active_expire(30) == 30  # 1 expired key + 29 tombstones
    assert len(store.tombstones) == 100 - 29 + 1  # the expired key left its own
    while store.active_expire(30) == 30:
        pass
    assert len(store.tombstones) == 1  # the expiry's tombstone is only now an hour old
    assert store.tombstones.floor == v + 99


def test_expiry_wheel_refuses_a_zero_slot() -> None:
    with pytest.raises(ValueError, match="slot_ms"):
        ExpiryWheel(slot_ms=0)


def test_expiry_wheel_hands_over_due_keys_oldest_slot_first() -> None:
    wheel = ExpiryWheel(slot_ms=10)
    wheel.add(b"late", 35)
    wheel.add(b"early", 5)
    wheel.add(b"middle", 15)
    handed: list[bytes] = []
    assert wheel.reap(30, 10, lambda key, now: handed.append(key)) == 2
    assert handed == [b"early", b"middle"]
    assert len(wheel) == 1
    wheel.discard(b"late", 35)
    assert len(wheel) == 0
    assert wheel.reap(1000, 10, lambda key, now: handed.append(key)) == 0
