"""Bucket digests (cluster/digest.py) kept by JournaledStore, and repair's pull decisions.

The incremental digest must always equal one recomputed from scratch over what the store
holds, whatever mix of writes, deletes, replicated writes, expiry, eviction, tombstone
drops and flushes led there; two stores holding the same records have equal digests, and
a difference shows in exactly the buckets of the keys that differ.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geocache.clock import ManualClock, make_version
from geocache.cluster import digest, records
from geocache.cluster.journal import JournaledStore
from geocache.cluster.repair import Repairer
from geocache.store import Tombstones
from geocache.store.entry import expiry_stamp, tombstone_expiry
from geocache.store.errors import StoreError

NOW_MS = 1_700_000_000_000
KEYS = [b"a", b"b", b"c", b"d", b"e", b"\x00bin\xff"]
ORIGINS = ["n1", "n2", "n3"]


def held_records(store: JournaledStore) -> list[digest.Record]:
    """What the store holds, read from its internals, for a from-scratch recomputation."""
    assert isinstance(store.tombstones, Tombstones)
    entries = [(k, e[2], e[3], False, *expiry_stamp(e)) for k, e in store._held_entries()]
    tombs = [(k, t[0], t[1], True, *tombstone_expiry(t)[1:]) for k, t in store.tombstones.items()]
    return entries + tombs


def assert_digest_matches(store: JournaledStore) -> None:
    records = held_records(store)
    assert store.digest.buckets == digest.recompute(records)
    listed = [r for b in range(digest.BUCKETS) for r in store.digest.keys_in_bucket(b)]
    assert sorted(listed) == sorted(records)
    assert len(store.digest) == len(records)  # no key left behind in the bucket sets
    for b in range(digest.BUCKETS):
        assert all(digest.bucket_of(r[0]) == b for r in store.digest.keys_in_bucket(b))


def rec(key: bytes, version: int, origin: str, tombstone: bool) -> digest.Record:
    """A record whose registers share one version."""
    return (key, version, origin, tombstone, version, origin)


def new_store(clock: ManualClock, node_id: str = "n1", **limits: int) -> JournaledStore:
    max_tombstones = limits.pop("max_tombstones", 1000)
    return JournaledStore(
        clock, node_id=node_id, tombstones=Tombstones(max_tombstones, ttl_ms=5_000), **limits
    )


operation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), st.binary(max_size=20), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(
        st.just("apply"),
        st.sampled_from(KEYS),
        st.integers(-2000, 2000),
        st.sampled_from(ORIGINS),
        st.booleans(),
    ),
    st.tuples(
        st.just("apply_delete"),
        st.sampled_from(KEYS),
        st.integers(-2000, 2000),
        st.sampled_from(ORIGINS),
    ),
    st.tuples(st.just("expire_at"), st.sampled_from(KEYS), st.integers(-100, 3000)),
    st.tuples(st.just("incr"), st.sampled_from(KEYS)),
    st.tuples(st.just("advance"), st.integers(0, 4000)),
    st.tuples(st.just("peek"), st.sampled_from(KEYS)),
    st.tuples(st.just("active_expire")),
    st.tuples(st.just("flush")),
)


def run(store: JournaledStore, clock: ManualClock, op: tuple[object, ...]) -> None:
    name, *args = op
    now = clock.wall_ms()
    if name == "set":
        key, value, with_ttl = args
        assert isinstance(key, bytes) and isinstance(value, bytes)
        store.set(key, value, now + 1500 if with_ttl else 0)
    elif name == "delete":
        store.delete(args[0])  # type: ignore[arg-type]
    elif name == "apply":
        key, offset, origin, with_ttl = args
        version = make_version(now + offset, 0)  # type: ignore[operator]
        store.apply(key, (b"r", now + 1500 if with_ttl else 0, version, origin))  # type: ignore[arg-type]
    elif name == "apply_delete":
        key, offset, origin = args
        store.apply_delete(key, make_version(now + offset, 0), origin)  # type: ignore[arg-type, operator]
    elif name == "expire_at":
        store.expire_at(args[0], now + args[1])  # type: ignore[arg-type, operator]
    elif name == "incr":
        with contextlib.suppress(StoreError):  # not an integer: nothing changes
            store.incr_by(args[0], 1)  # type: ignore[arg-type]
    elif name == "advance":
        clock.advance(args[0])  # type: ignore[arg-type]
    elif name == "peek":
        store.peek(args[0])  # type: ignore[arg-type]
    elif name == "active_expire":
        store.active_expire(100)
    elif name == "flush":
        store.flush()


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(operation, max_size=60),
    max_keys=st.sampled_from([0, 2, 4]),
    max_bytes=st.sampled_from([0, 800, 2000]),
    max_tombstones=st.sampled_from([1, 2, 1000]),
)
def test_incremental_digest_equals_recomputation(
    ops: list[tuple[object, ...]], max_keys: int, max_bytes: int, max_tombstones: int
) -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    store = new_store(clock, max_keys=max_keys, max_bytes=max_bytes, max_tombstones=max_tombstones)
    for op in ops:
        run(store, clock, op)
        assert_digest_matches(store)


replicated = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.integers(0, 50),
        st.sampled_from(ORIGINS),
        st.one_of(st.none(), st.binary(max_size=6)),
    ),
    max_size=30,
    unique_by=lambda t: (t[0], t[1], t[2]),
)


@settings(max_examples=200, deadline=None)
@given(writes=replicated, data=st.data())
def test_same_records_in_any_order_give_equal_digests(
    writes: list[tuple[bytes, int, str, bytes | None]], data: st.DataObject
) -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    stores = [new_store(clock, "a"), new_store(clock, "b")]
    for store in stores:
        for key, ms, origin, value in data.draw(st.permutations(writes)):
            version = make_version(NOW_MS - 100 + ms, 0)
            if value is None:
                store.apply_delete(key, version, origin)
            else:
                store.apply(key, (value, 0, version, origin))
    assert sorted(held_records(stores[0])) == sorted(held_records(stores[1]))
    assert stores[0].digest.buckets == stores[1].digest.buckets
    assert digest.differing(stores[0].digest.buckets, stores[1].digest.buckets) == []


def test_differing_buckets_are_exactly_those_of_the_changed_keys() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    a, b = new_store(clock, "a"), new_store(clock, "b")
    keys = [b"key:%d" % i for i in range(5000)]
    for i, key in enumerate(keys):
        entry = (b"v", 0, make_version(NOW_MS, i % 60000), "n1")
        a.apply(key, entry)
        b.apply(key, entry)
    assert a.digest.buckets == b.digest.buckets
    changed = [keys[7], keys[4000]]
    b.apply(changed[0], (b"newer", 0, make_version(NOW_MS + 1, 0), "n2"))
    b.apply_delete(changed[1], make_version(NOW_MS + 1, 0), "n2")
    expected = sorted({digest.bucket_of(k) for k in changed})
    assert digest.differing(a.digest.buckets, b.digest.buckets) == expected


def test_eviction_takes_the_key_out_of_the_digest() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    store = new_store(clock, max_keys=1)
    store.set(b"old", b"1")
    store.set(b"new", b"2")
    assert all(r[0] != b"old" for r in store.digest.keys_in_bucket(digest.bucket_of(b"old")))
    assert store.evictions == 1
    assert_digest_matches(store)


def test_wire_encodings_round_trip() -> None:
    buckets = [(i * 0x9E3779B97F4A7C15) % (1 << 64) for i in range(digest.BUCKETS)]
    assert digest.decode_buckets(digest.encode_buckets(buckets)) == buckets
    with pytest.raises(ValueError):
        digest.decode_buckets(b"\x00" * 100)
    records = [(b"k\x00", 5, "n1", False, 5, "n1"), (b"", (1 << 64) - 1, "n\xe9", True, 7, "x y")]
    assert digest.decode_records(digest.encode_records(records)) == records
    with pytest.raises(ValueError):
        digest.decode_records([b"k", 1, b"n1"])


def test_a_store_refuses_a_used_tombstone_space() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    used = Tombstones()
    used.put(b"k", 1, "n1", NOW_MS)
    with pytest.raises(ValueError):
        JournaledStore(clock, tombstones=used)


# -- repair's decisions (no network: the pull planning and applying) ----------------------


def repairer_for(store: JournaledStore) -> Repairer:
    async def make() -> Repairer:
        return Repairer(SimpleNamespace(store=store))  # type: ignore[arg-type]

    return asyncio.run(make())


def test_repair_pulls_newer_values_and_lost_deletes_only() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    store = new_store(clock)
    v = [make_version(NOW_MS, i) for i in range(10)]
    store.apply(b"stale", (b"old", 0, v[1], "n1"))
    store.apply(b"deleted-there", (b"old", 0, v[1], "n1"))
    store.apply(b"newer-here", (b"mine", 0, v[5], "n1"))
    repairer = repairer_for(store)
    peer_records = [
        rec(b"stale", v[2], "n2", False),
        rec(b"deleted-there", v[3], "n2", True),
        rec(b"newer-here", v[4], "n2", False),
        rec(b"missing", v[4], "n2", False),
        rec(b"missing-deleted", v[4], "n2", True),
    ]
    fetch = repairer._plan("n2", peer_records, copy_missing=False)
    assert fetch == [b"stale"]
    assert store.peek(b"deleted-there") is None and store.tombstones.get(b"deleted-there")
    assert store.version_of(b"missing-deleted") is None
    repairer._apply_fetched(b"stale", [b"new", 0, v[2], b"n2"])
    assert store.peek(b"stale") == (b"new", 0, v[2], "n2")
    assert store.peek(b"newer-here") == (b"mine", 0, v[5], "n1")


def test_repair_copies_missing_keys_only_when_copying_and_without_evicting() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    store = new_store(clock, max_keys=2)
    store.set(b"held", b"1")
    repairer = repairer_for(store)
    version = make_version(NOW_MS, 1)
    records = [rec(b"m1", version, "n2", False), rec(b"m2", version, "n2", False)]
    assert repairer._plan("n2", records, copy_missing=False) == []
    fetch = repairer._plan("n2", records, copy_missing=True)
    assert fetch == [b"m1", b"m2"]
    for key in fetch:
        repairer._apply_fetched(key, [b"v", 0, version, b"n2"])
    # One fits; the second would evict a key this node holds, so it is skipped.
    assert store.peek(b"m1") is not None and store.peek(b"m2") is None
    assert store.peek(b"held") is not None and store.evictions == 0
    assert repairer.stats.keys_pulled == 1 and repairer.stats.skipped_full == 1


def test_the_digest_covers_the_expiry_register_and_repair_pulls_a_newer_one() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    a, b = new_store(clock), new_store(clock, node_id="n2")
    b.apply(b"k", a.set(b"k", b"v", NOW_MS + 60_000))
    assert a.digest.buckets == b.digest.buckets
    assert a.expire_at(b"k", NOW_MS + 120_000)  # the expiry register alone
    assert digest.differing(a.digest.buckets, b.digest.buckets) == [digest.bucket_of(b"k")]
    repairer = repairer_for(b)
    listed = a.digest.keys_in_bucket(digest.bucket_of(b"k"))
    assert repairer._plan("n2", listed, copy_missing=False) == [b"k"]
    repairer._apply_fetched(b"k", records.fetch_reply(a.peek(b"k")))
    assert b.peek(b"k") == a.peek(b"k") and a.digest.buckets == b.digest.buckets
    assert repairer.stats.keys_pulled == 1
    assert_digest_matches(a)
    assert_digest_matches(b)


def test_repair_never_brings_back_a_deleted_key() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    store = new_store(clock)
    store.apply_delete(b"k", make_version(NOW_MS, 5), "n1")
    repairer = repairer_for(store)
    older = make_version(NOW_MS, 4)
    assert repairer._plan("n2", [rec(b"k", older, "n2", False)], copy_missing=True) == []
    repairer._apply_fetched(b"k", [b"zombie", 0, older, b"n2"])
    assert store.peek(b"k") is None


def test_repair_compares_owned_buckets_where_the_peer_holds_something() -> None:
    clock = ManualClock(wall_ms=NOW_MS)
    store = new_store(clock)
    owned = {0, 1, 2, 3}
    cluster = SimpleNamespace(
        store=store,
        node_id="me",
        bucket_owners=lambda b: ["me", "p"] if b in owned else ["p", "q"],
    )

    async def make() -> Repairer:
        return Repairer(cluster)  # type: ignore[arg-type]

    repairer = asyncio.run(make())
    theirs = [0] * digest.BUCKETS
    theirs[1] = theirs[2] = theirs[3] = theirs[7] = 42  # 0: it holds nothing; 7: not mine
    assert repairer._to_compare("p", theirs, copy_missing=False) == [1, 2, 3]
    repairer._settled["p"] = {2: (0, 42)}
    assert repairer._to_compare("p", theirs, copy_missing=False) == [1, 3]
    assert repairer._to_compare("p", theirs, copy_missing=True) == [1, 2, 3]


def test_records_of_nearby_keys_and_versions_do_not_cancel() -> None:
    """Found by the region resync test: with the version as xxh3's seed, q84 at v and
    q87 at v + 1 hashed alike, so a bucket holding both had the digest of an empty one."""
    from geocache.cluster.digest import record_hash

    v = 117664009138012184
    assert record_hash(b"q84", v, "a1", False) != record_hash(b"q87", v + 1, "a1", False)
    hashes = {
        record_hash(b"q%d" % k, v + d, "a1", t)
        for k in range(200)
        for d in range(4)
        for t in (False, True)
    }
    assert len(hashes) == 200 * 4 * 2
