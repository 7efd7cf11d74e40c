"""Replicated writes: convergence whatever the order, and no deleted value coming back.

DESIGN.md section 4: `apply` and `apply_delete` keep the larger (version, origin), so
two replicas that receive the same writes and deletes, in any order and any number of
times, hold the same entries and the same tombstones. A tombstone dropped under
pressure raises the resurrection floor, so an older write still cannot return.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from geocache.clock import ManualClock, make_version
from geocache.store import Store, Tombstones
from geocache.store.entry import Entry, Tombstone, make_entry, make_tombstone

NOW_MS = 1_700_000_000_000
KEYS = [b"k1", b"k2", b"k3", b"\x00binary\xff"]
ORIGINS = ["eu-1", "us-1", "us-2"]


@dataclass(frozen=True)
class Op:
    key: bytes
    version: int
    origin: str
    value: bytes | None  # None: a delete
    expires_at_ms: int = 0

    def rank(self) -> tuple[int, str]:
        return self.version, self.origin

    def apply_to(self, store: Store) -> bool:
        if self.value is None:
            return store.apply_delete(self.key, self.version, self.origin)
        entry = (self.value, self.expires_at_ms, self.version, self.origin)
        return store.apply(self.key, entry)


@st.composite
def ops(draw: st.DrawFn, max_size: int = 20) -> list[Op]:
    """Writes and deletes, each (key, version, origin) at most once (an HLC never repeats)."""
    drawn = draw(
        st.lists(
            st.tuples(
                st.sampled_from(KEYS),
                st.integers(0, 30),  # ms offset: small, so versions often collide
                st.integers(0, 3),  # HLC counter
                st.sampled_from(ORIGINS),
                st.one_of(st.none(), st.binary(max_size=8)),
                st.sampled_from([0, NOW_MS + 3_600_000]),
            ),
            min_size=1,
            max_size=max_size,
            unique_by=lambda t: (t[0], t[1], t[2], t[3]),
        )
    )
    return [
        Op(key, make_version(NOW_MS - 1000 + ms, counter), origin, value, expires)
        for key, ms, counter, origin, value, expires in drawn
    ]


@st.composite
def deliveries(draw: st.DrawFn, writes: list[Op]) -> list[Op]:
    """Every op at least once, some again, in any order."""
    again = draw(st.lists(st.sampled_from(writes), max_size=len(writes)))
    return draw(st.permutations(writes + again))


def cluster_store(clock: ManualClock, node_id: str, **tombstone_args: int) -> Store:
    return Store(clock, node_id=node_id, tombstones=Tombstones(**tombstone_args))


def state(store: Store) -> tuple[dict[bytes, object], dict[bytes, object]]:
    assert isinstance(store.tombstones, Tombstones)
    return dict(store.items()), dict(store.tombstones.items())


@settings(max_examples=400, deadline=None)
@given(data=st.data(), writes=ops())
def test_any_order_with_duplicates_converges_to_the_largest_version(
    data: st.DataObject, writes: list[Op]
) -> None:
    clock = ManualClock(NOW_MS)
    first, second = cluster_store(clock, "a"), cluster_store(clock, "b")
    for op in data.draw(deliveries(writes), label="to first"):
        op.apply_to(first)
    for op in data.draw(deliveries(writes), label="to second"):
        op.apply_to(second)

    assert state(first) == state(second)
    live, tombs = state(first)
    for key in KEYS:
        for_key = [op for op in writes if op.key == key]
        if not for_key:
            assert key not in live and key not in tombs
            continue
        winner = max(for_key, key=Op.rank)
        if winner.value is None:
            assert key not in live
            assert tombs[key][:2] == winner.rank()
        else:
            assert live[key] == (winner.value, winner.expires_at_ms, *winner.rank())
            assert key not in tombs
        assert first.version_of(key) == (*winner.rank(), winner.value is None, *winner.rank())


@settings(max_examples=300, deadline=None)
@given(data=st.data(), writes=ops(max_size=30))
def test_a_dropped_tombstone_never_lets_an_older_write_back(
    data: st.DataObject, writes: list[Op]
) -> None:
    """With room for 2 tombstones, a live entry is still always newer than every delete seen."""
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a", max_tombstones=2)
    newest_delete: dict[bytes, tuple[int, str]] = {}
    for op in data.draw(deliveries(writes)):
        op.apply_to(store)
        if op.value is None:
            newest_delete[op.key] = max(newest_delete.get(op.key, (-1, "")), op.rank())
        assert len(store.tombstones) <= 2
        for key, entry in store.items():
            if key in newest_delete:
                assert (entry[2], entry[3]) > newest_delete[key], "a deleted value came back"


def test_dropping_a_tombstone_raises_the_floor_to_its_version() -> None:
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a", max_tombstones=2)
    v = make_version(NOW_MS - 500)
    for i, key in enumerate([b"k1", b"k2", b"k3"]):
        assert store.apply(key, (b"old", 0, v + i, "us-1"))
    for i, key in enumerate([b"k1", b"k2", b"k3"]):
        assert store.apply_delete(key, v + 10 + i, "us-1")
    assert len(store.tombstones) == 2
    assert store.version_of(b"k1") is None  # its tombstone was the oldest: dropped
    assert store.tombstones.floor == v + 10

    # The write the delete removed, and anything up to the floor, stays out.
    assert not store.apply(b"k1", (b"old", 0, v, "us-1"))
    assert not store.apply(b"k1", (b"old", 0, v + 10, "zz-origin-larger"))
    assert store.get(b"k1") is None
    # The other keys still have their tombstones; a write newer than all of it is taken.
    assert not store.apply(b"k2", (b"old", 0, v + 11, "us-1"))
    assert store.apply(b"k1", (b"new", 0, v + 11, "us-1"))
    assert store.get(b"k1") == b"new"


def test_expiry_is_a_delete_at_the_entry_version() -> None:
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a")
    v = make_version(NOW_MS)
    assert store.apply(b"lazy", (b"x", NOW_MS + 1000, v + 5, "eu-1"))
    assert store.apply(b"active", (b"x", NOW_MS + 1000, v + 5, "eu-1"))
    clock.advance(1000)

    assert store.get(b"lazy") is None  # lazy expiry
    assert len(store) == 1
    assert store.active_expire(100) == 0  # the wheel's 100 ms slot is not over yet
    clock.advance(100)
    assert store.active_expire(100) == 1  # active expiry, at most one slot late
    assert len(store) == 0
    for key in (b"lazy", b"active"):
        assert store.version_of(key) == (v + 5, "eu-1", True, v + 5, "eu-1")
        # An older write replayed late (no expiry of its own) cannot bring the key back...
        assert not store.apply(key, (b"older", 0, v + 4, "eu-1"))
        assert not store.apply(key, (b"same", 0, v + 5, "eu-1"))
        # ...a newer one can.
        assert store.apply(key, (b"newer", 0, v + 6, "eu-1"))
        assert store.get(key) == b"newer"
        assert store.version_of(key) == (v + 6, "eu-1", False, v + 6, "eu-1")
    assert store.stats().expirations == 2


def test_an_expiry_tombstone_dropped_under_pressure_still_keeps_older_writes_out() -> None:
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a", max_tombstones=1)
    v = make_version(NOW_MS)
    store.apply(b"k1", (b"x", NOW_MS + 10, v + 5, "eu-1"))
    clock.advance(10)
    assert store.get(b"k1") is None
    store.apply_delete(b"k2", v + 1, "eu-1")  # pushes k1's tombstone out
    assert store.version_of(b"k1") is None
    assert store.tombstones.floor == v + 5
    assert not store.apply(b"k1", (b"older", 0, v + 4, "eu-1"))
    assert store.get(b"k1") is None


def test_a_write_already_expired_on_arrival_is_held_as_a_delete() -> None:
    """Nothing is held for it, but it retires the older value it replaced (a replica
    that missed the EXPIRE must not keep serving the value), and an older write that
    arrives after it stays retired."""
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a")
    v = make_version(NOW_MS)
    assert store.apply(b"k", (b"old", 0, v - 10, "eu-1"))
    assert store.apply(b"k", (b"x", NOW_MS, v, "eu-1"))  # expired now: applied as a delete
    assert len(store) == 0 and store.version_of(b"k") == (v, "eu-1", True, v, "eu-1")
    assert not store.apply(b"k", (b"older", 0, v - 5, "eu-1"))
    assert store.get(b"k") is None
    assert not store.apply(b"k", (b"x", NOW_MS - 1, v - 1, "eu-1"))  # older still: dropped


def test_a_received_version_moves_the_hlc_past_it() -> None:
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a")
    future = make_version(NOW_MS + 60_000, 7)  # a node whose clock runs a minute ahead
    store.apply(b"k", (b"theirs", 0, future, "us-1"))
    entry = store.set(b"k", b"ours")  # causally after: must win everywhere
    assert entry[2] > future
    other = cluster_store(clock, "b")
    other.apply(b"k", entry)
    other.apply(b"k", (b"theirs", 0, future, "us-1"))
    assert other.get(b"k") == b"ours"


def test_a_local_set_after_a_local_delete_leaves_the_same_tombstones_as_a_replica() -> None:
    clock = ManualClock(NOW_MS)
    coordinator, replica = cluster_store(clock, "a"), cluster_store(clock, "b")
    coordinator.set(b"k", b"v1")
    coordinator.delete(b"k")
    deleted = coordinator.tombstones.get(b"k")
    assert deleted is not None
    replica.apply_delete(b"k", deleted[0], deleted[1])
    entry = coordinator.set(b"k", b"v2")
    replica.apply(b"k", entry)
    assert state(coordinator) == state(replica)
    assert coordinator.stats().tombstones == 0


def test_a_late_older_delete_does_not_reopen_the_key_below_the_floor() -> None:
    """The newer tombstone is dropped, then an older delete arrives and leaves one.

    The floor still covers writes between the two deletes.
    """
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a", max_tombstones=1)
    v = make_version(NOW_MS)
    store.apply_delete(b"k1", v + 10, "eu-1")
    store.apply_delete(b"k2", v + 1, "eu-1")  # drops k1's tombstone: floor = v + 10
    store.apply_delete(b"k1", v + 2, "eu-1")  # late and older: k1 has a tombstone again
    assert store.tombstones.floor == v + 10
    assert not store.apply(b"k1", (b"deleted long ago", 0, v + 5, "eu-1"))
    assert store.get(b"k1") is None


# -- two registers: SET, EXPIRE, PERSIST, DEL and SET KEEPTTL, as their coordinators send them ---

FUTURE_MS = [NOW_MS + 60_000, NOW_MS + 3_600_000]


@dataclass(frozen=True)
class Write:
    """One coordinated write of one key, as the record its coordinator ships: the key's
    registers after the write (a value-only or expiry-only write carries the other
    register as its coordinator held it, from `base`)."""

    kind: str  # set, expire, persist, keepttl or del
    key: bytes
    stamp: tuple[int, str]
    value: bytes = b""
    expires_at_ms: int = 0
    base: Write | None = None  # the write whose registers the coordinator held

    def value_register(self) -> tuple[bytes | None, tuple[int, str]]:
        if self.kind == "del":
            return None, self.stamp
        if self.kind in ("expire", "persist"):
            assert self.base is not None
            return self.base.value_register()
        return self.value, self.stamp

    def expiry_register(self) -> tuple[int, tuple[int, str]]:
        if self.kind == "del":
            return 0, self.stamp  # a delete writes "no expiry" at its version
        if self.kind == "keepttl":
            assert self.base is not None
            return self.base.expiry_register()
        return self.expires_at_ms, self.stamp

    def record(self) -> Entry | Tombstone:
        value, stamp = self.value_register()
        expires_at_ms, x_stamp = self.expiry_register()
        if value is None:
            return make_tombstone(stamp, NOW_MS, expires_at_ms, x_stamp)
        return make_entry(value, expires_at_ms, stamp, x_stamp)


@st.composite
def register_writes(draw: st.DrawFn, max_size: int = 14) -> list[Write]:
    """Writes in version order per key; an expiry-only or value-only write is based on an
    earlier write of the key that held a value (what its coordinator had seen)."""
    writes: list[Write] = []
    for i in range(draw(st.integers(1, max_size))):
        key = draw(st.sampled_from(KEYS[:2]))
        stamp = (make_version(NOW_MS - 1000 + i), draw(st.sampled_from(ORIGINS)))
        bases = [w for w in writes if w.key == key and w.value_register()[0] is not None]
        kind = draw(st.sampled_from(["set", "del", "expire", "persist", "keepttl"]))
        if kind in ("expire", "persist", "keepttl") and not bases:
            kind = "set"
        base = draw(st.sampled_from(bases)) if kind in ("expire", "persist", "keepttl") else None
        expires_at_ms = draw(st.sampled_from([0, *FUTURE_MS])) if kind == "set" else 0
        if kind == "expire":
            expires_at_ms = draw(st.sampled_from(FUTURE_MS))
        value = b"v%d" % i if kind in ("set", "keepttl") else b""
        writes.append(Write(kind, key, stamp, value, expires_at_ms, base))
    return writes


def register_model(writes: list[Write], key: bytes) -> Entry | Tombstone | None:
    """Each register the largest (version, origin) among the writes; the record it makes."""
    mine = [w for w in writes if w.key == key]
    if not mine:
        return None
    value, stamp = max((w.value_register() for w in mine), key=lambda r: r[1])
    expires_at_ms, x_stamp = max((w.expiry_register() for w in mine), key=lambda r: r[1])
    if value is None:
        return make_tombstone(stamp, NOW_MS, expires_at_ms, x_stamp)
    return make_entry(value, expires_at_ms, stamp, x_stamp)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), writes=register_writes())
def test_two_registers_converge_to_the_per_register_model(
    data: st.DataObject, writes: list[Write]
) -> None:
    """Any order, with duplicates, on two stores: both hold the same, and each key holds
    exactly what the largest value and the largest expiry among its writes make."""
    clock = ManualClock(NOW_MS)
    first, second = cluster_store(clock, "a"), cluster_store(clock, "b")
    for store, label in ((first, "to first"), (second, "to second")):
        again = data.draw(st.lists(st.sampled_from(writes), max_size=len(writes)))
        for w in data.draw(st.permutations(writes + again), label=label):
            store.apply(w.key, w.record())

    assert state(first) == state(second)
    live, tombs = state(first)
    for key in KEYS[:2]:
        expected = register_model(writes, key)
        held = live.get(key, tombs.get(key))
        assert held == expected
        if expected is not None and not isinstance(expected[0], bytes):
            assert first.get(key) is None  # a delete newer than every value: gone


def test_an_expire_made_on_an_older_value_keeps_the_newer_value() -> None:
    """The issue's case: v2 written in one region, then an EXPIRE made where only v1 was."""
    clock = ManualClock(NOW_MS)
    a, b = cluster_store(clock, "a"), cluster_store(clock, "b")
    v1 = a.set(b"k", b"v1")
    b.apply(b"k", v1)
    v2 = a.set(b"k", b"v2")  # not yet at b
    assert b.expire_at(b"k", NOW_MS + 1_000_000)
    expire = b.peek(b"k")
    assert expire is not None and expire[0] == b"v1" and expire[2:4] == v1[2:]  # what it saw
    a.apply(b"k", expire)
    b.apply(b"k", v2)
    for store in (a, b):
        assert store.get(b"k") == b"v2" and store.ttl_ms(b"k") == 1_000_000
    assert a.peek(b"k") == b.peek(b"k")


def test_a_tombstone_keeps_a_newer_expiry_for_a_write_between_the_two() -> None:
    """DEL at t, an EXPIRE (on an older value) at e > t, and a SET at s between them:
    whatever the order, the SET's value lives with the EXPIRE's expiry."""
    clock = ManualClock(NOW_MS)
    v = [make_version(NOW_MS, i) for i in range(5)]
    old = (b"v1", 0, v[0], "eu-1")
    delete: Tombstone = (v[1], "eu-1", NOW_MS)
    newer_set = (b"v3", 0, v[2], "ap-1")
    expire = (b"v1", NOW_MS + 5_000, v[0], "eu-1", v[3], "us-1")
    outcomes = set()
    for order in ([old, delete, expire, newer_set], [newer_set, expire, delete, old]):
        store = cluster_store(clock, "x")
        for record in order:
            store.apply(b"k", record)
        outcomes.add(store.peek(b"k"))
    assert outcomes == {(b"v3", NOW_MS + 5_000, v[2], "ap-1", v[3], "us-1")}


def test_a_ttl_extended_elsewhere_just_before_it_ran_out_brings_the_value_back() -> None:
    """The key expired and was reclaimed here; the record of an EXPIRE made on the same
    value before it ran out re-supplies the value its tombstone forgot."""
    clock = ManualClock(NOW_MS)
    store = cluster_store(clock, "a")
    v = make_version(NOW_MS)
    store.apply(b"k", (b"v", NOW_MS + 10, v, "eu-1"))
    clock.advance(10)
    assert store.get(b"k") is None and store.tombstones.get(b"k") is not None
    extended = (b"v", NOW_MS + 60_000, v, "eu-1", v + 5, "us-1")
    assert store.apply(b"k", extended)
    assert store.get(b"k") == b"v" and store.tombstones.get(b"k") is None
    # The original write again changes nothing: its expiry is the older one.
    assert not store.apply(b"k", (b"v", NOW_MS + 10, v, "eu-1"))
