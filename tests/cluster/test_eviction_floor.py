"""Eviction forgets a key but not how new it was: an older record of an evicted key (a
late hint, repair from a former owner) cannot come back as new."""

from __future__ import annotations

from geocache.clock import ManualClock
from geocache.cluster.digest import bucket_of
from geocache.cluster.journal import JournaledStore
from geocache.store.tombstones import Tombstones

V = 1 << 40  # versions well above what a ManualClock's HLC mints


def store(max_keys: int) -> JournaledStore:
    return JournaledStore(ManualClock(), max_keys=max_keys, node_id="a", tombstones=Tombstones())


def same_bucket(key: bytes, n: int) -> list[bytes]:
    """`n` keys of `key`'s bucket (hash tags put keys in one slot)."""
    return [b"{%s}%d" % (key, i) for i in range(n)]


def test_an_older_write_of_an_evicted_key_is_refused_and_a_newer_one_taken() -> None:
    s = store(max_keys=1)
    k1, k2 = same_bucket(b"t", 2)
    assert s.apply(k1, (b"new", 0, V + 10, "b"))
    assert s.apply(k2, (b"other", 0, V + 20, "b"))  # evicts k1 (LRU)
    assert s.peek(k1) is None and s.evictions == 1
    assert s.evicted_floor[bucket_of(k1)] == V + 10
    assert not s.apply(k1, (b"old", 0, V + 5, "c"))  # a late hint from before: refused
    assert s.peek(k1) is None
    assert s.apply(k1, (b"newer", 0, V + 30, "c"))  # anything newer is a real write
    assert s.peek(k1) is not None and s.peek(k1)[0] == b"newer"  # type: ignore[index]


def test_keys_held_or_of_other_buckets_are_judged_as_before() -> None:
    s = store(max_keys=2)
    k1, k2, k3 = same_bucket(b"t", 3)
    s.apply(k1, (b"v1", 0, V + 10, "b"))
    s.apply(k2, (b"v2", 0, V + 50, "b"))
    s.apply(k3, (b"v3", 0, V + 60, "b"))  # evicts k1; the bucket's floor is V + 10
    # A key still held compares with what it holds, not with the floor.
    assert s.apply(k2, (b"v2b", 0, V + 55, "b"))
    # Another bucket has its own floor.
    other = next(k for k in (b"x%d" % i for i in range(100)) if bucket_of(k) != bucket_of(k1))
    assert s.apply(other, (b"w", 0, V + 1, "b"))


def test_an_older_delete_of_a_key_not_held_is_refused_and_of_a_held_key_taken() -> None:
    """Holding an older tombstone where another region holds the newer value this node
    evicted would differ for good; holding nothing is an eviction."""
    s = store(max_keys=1)
    k1, k2 = same_bucket(b"t", 2)
    assert s.apply(k1, (b"new", 0, V + 10, "b"))
    assert s.apply(k2, (b"other", 0, V + 20, "b"))  # evicts k1: the floor is V + 10
    assert not s.apply(k1, (V + 5, "c", 0))  # another region's older delete
    assert s.version_of(k1) is None
    assert s.apply(k2, (V + 15, "c", 0)) is False  # older than what k2 holds
    assert s.apply(k2, (V + 25, "c", 0))  # a newer delete of a held key
    assert s.version_of(k2) is not None and s.version_of(k2)[2]  # type: ignore[index]
    assert s.apply(k1, (V + 30, "c", 0))  # a delete newer than the floor is kept
