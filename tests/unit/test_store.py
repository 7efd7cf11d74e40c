"""Store rules not covered by the state machine: versions, limits, errors, flush."""

from __future__ import annotations

import pytest

from geocache.clock import ManualClock, make_version
from geocache.store import (
    ENTRY_OVERHEAD_BYTES,
    EXPIRY_OVERHEAD_BYTES,
    NoTombstones,
    Store,
    Tombstones,
    TooLarge,
    entry_size,
    newer,
)

NOW_MS = 1_700_000_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW_MS)


def test_entry_size_counts_key_value_and_overheads() -> None:
    assert entry_size(b"k" * 16, b"v" * 100) == 116 + ENTRY_OVERHEAD_BYTES
    assert entry_size(b"k", b"", NOW_MS) == 1 + ENTRY_OVERHEAD_BYTES + EXPIRY_OVERHEAD_BYTES


def test_merge_rule_is_version_then_origin() -> None:
    assert newer(2, "a", 1, "z")
    assert newer(1, "b", 1, "a")
    assert not newer(1, "a", 1, "a")
    assert not newer(1, "z", 2, "a")


def test_negative_limits_are_refused(clock: ManualClock) -> None:
    with pytest.raises(ValueError):
        Store(clock, max_keys=-1)


def test_local_writes_carry_increasing_versions_and_the_node_id(clock: ManualClock) -> None:
    store = Store(clock, node_id="eu-1")
    first = store.set(b"k", b"1")
    second = store.set(b"k", b"2")
    assert first[2] < second[2]
    assert second == (b"2", 0, second[2], "eu-1")
    assert store.version_of(b"k") == (second[2], "eu-1", False, second[2], "eu-1")
    assert store.lookup(b"k") == second
    assert store.version_of(b"missing") is None


def test_lookup_counts_and_touches_peek_does_not(clock: ManualClock) -> None:
    store = Store(clock)
    store.set(b"a", b"1")
    store.set(b"b", b"2")
    store.peek(b"a")
    assert list(store.keys()) == [b"a", b"b"]
    assert store.stats().hits == 0
    store.lookup(b"a")
    assert list(store.keys()) == [b"b", b"a"]
    assert store.lookup(b"missing") is None
    assert (store.stats().hits, store.stats().misses) == (1, 1)


def test_an_entry_larger_than_max_bytes_changes_nothing(clock: ManualClock) -> None:
    store = Store(clock, max_bytes=1000)
    store.set(b"a", b"x" * 100)
    before = (store.stats(), list(store.items()))
    too_big = b"x" * (1000 - ENTRY_OVERHEAD_BYTES)  # 1 byte of key too many
    with pytest.raises(TooLarge) as error:
        store.set(b"b", too_big)
    assert error.value.size == 1001 and error.value.limit == 1000
    assert (store.stats(), list(store.items())) == before
    store.set(b"b", too_big[1:])  # exactly max_bytes: fits, after evicting "a"
    assert list(store.keys()) == [b"b"] and store.used_bytes == 1000


def test_a_replicated_entry_too_large_is_dropped_not_raised(clock: ManualClock) -> None:
    store = Store(clock, max_bytes=1000, tombstones=Tombstones())
    assert not store.apply(b"k", (b"x" * 1000, 0, make_version(NOW_MS), "us-1"))
    assert len(store) == 0


def test_eviction_leaves_no_tombstone(clock: ManualClock) -> None:
    store = Store(clock, max_keys=1, tombstones=Tombstones())
    store.set(b"a", b"1")
    store.set(b"b", b"2")
    assert store.stats().evictions == 1
    assert store.version_of(b"a") is None
    assert len(store.tombstones) == 0


def test_cluster_delete_and_past_expire_leave_tombstones(clock: ManualClock) -> None:
    store = Store(clock, node_id="eu-1", tombstones=Tombstones())
    store.set(b"a", b"1")
    store.set(b"b", b"1")
    assert store.delete(b"a") is True
    assert store.delete(b"never-held") is False  # remembered too: a write may be in flight
    assert store.expire_at(b"b", NOW_MS) is True
    for key in (b"a", b"never-held", b"b"):
        version = store.version_of(key)
        assert version is not None and version[1:3] == ("eu-1", True)
        assert version[3:] == version[:2]  # a delete writes both registers at its version
    assert store.stats().tombstones == 3


def test_expire_at_zero_removes_the_expiry(clock: ManualClock) -> None:
    """expire_at(key, 0) keeps the value and drops its expiry, as a new versioned write of
    the expiry register alone: the value keeps its version."""
    store = Store(clock)
    first = store.set(b"k", b"v", NOW_MS + 1000)
    assert store.expire_at(b"k", 0) is True
    entry = store.peek(b"k")
    assert entry is not None and len(entry) == 6
    assert entry[:4] == (b"v", 0, first[2], first[3]) and entry[4] > first[2]
    assert store.ttl_ms(b"k") == -1


def test_standalone_store_remembers_no_deletes(clock: ManualClock) -> None:
    store = Store(clock)
    assert isinstance(store.tombstones, NoTombstones)
    store.set(b"k", b"v")
    store.delete(b"k")
    assert store.version_of(b"k") is None
    assert store.stats().tombstones == 0


def test_flush_drops_everything_and_raises_the_floor(clock: ManualClock) -> None:
    store = Store(clock, tombstones=Tombstones())
    written = store.set(b"a", b"1", NOW_MS + 500)
    store.delete(b"b")
    store.flush()
    assert (len(store), store.used_bytes, len(store.tombstones)) == (0, 0, 0)
    assert store.tombstones.floor > written[2]
    # Writes from before the flush, still in flight, stay out.
    assert not store.apply(b"a", written)
    clock.advance(1000)
    assert store.active_expire(10) == 0  # the wheel was emptied too
