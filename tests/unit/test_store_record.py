"""The packed record layout (record.py) against plain entry tuples.

A property test round-trips every shape of entry through the layout, at the edges of
its integer fields and on both sides of the packing threshold. A state machine then
drives a Store and a plain model (a dict of entry tuples in LRU order) with local
writes, replicated records from several origins, deletes, reads and evictions, and
checks after every step that the store holds the same entries, versions and origins
included, in the same order.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from geocache.clock import MAX_VERSION, ManualClock
from geocache.store import Entry, Store
from geocache.store.entry import entry_size, make_entry
from geocache.store.record import (
    PACK_MAX_VALUE_BYTES,
    Origins,
    expiry_of,
    pack,
    sizes_of,
    unpack,
    value_of,
    version_of,
)

ORIGINS = st.sampled_from(["local", "eu-1", "us-2", "", "ü-node"])
VERSIONS = st.one_of(st.integers(0, MAX_VERSION), st.sampled_from([0, 1, MAX_VERSION]))
EXPIRIES = st.one_of(st.just(0), st.integers(1, (1 << 63) - 1))
VALUES = st.one_of(
    st.binary(max_size=40),
    st.integers(PACK_MAX_VALUE_BYTES - 2, PACK_MAX_VALUE_BYTES + 2).map(lambda n: b"v" * n),
)
STAMPS = st.tuples(VERSIONS, ORIGINS)


@given(VALUES, EXPIRIES, STAMPS, STAMPS, st.booleans())
def test_every_entry_round_trips_through_its_record(
    value: bytes, expires_at_ms: int, stamp: tuple[int, str], x: tuple[int, str], same: bool
) -> None:
    entry = make_entry(value, expires_at_ms, stamp, stamp if same else x)
    origins = Origins()
    held = pack(entry, origins)
    assert unpack(held, origins) == entry
    assert isinstance(held, bytes) == (len(value) <= PACK_MAX_VALUE_BYTES)
    assert (value_of(held), expiry_of(held), version_of(held)) == (value, expires_at_ms, stamp[0])
    assert sizes_of(held) == (len(value), expires_at_ms, len(entry) == 6)


def test_a_small_entry_costs_its_value_and_thirteen_bytes() -> None:
    held = pack((b"v" * 100, 0, 1 << 60, "local"), Origins())
    assert isinstance(held, bytes) and len(held) == 113


KEYS = st.sampled_from([b"a", b"b", b"c", b"d"])
SMALL_VALUES = st.one_of(st.binary(max_size=8), st.just(b"x" * (PACK_MAX_VALUE_BYTES + 1)))
MAX_KEYS = 3


class RecordMachine(RuleBasedStateMachine):
    """Store against a dict of entry tuples whose order is the LRU order."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.store = Store(self.clock, max_keys=MAX_KEYS, node_id="local")
        self.model: dict[bytes, Entry] = {}

    def _hold(self, key: bytes, entry: Entry) -> None:
        self.model.pop(key, None)
        self.model[key] = entry  # most recent last
        while len(self.model) > MAX_KEYS:
            del self.model[next(iter(self.model))]

    @rule(key=KEYS, value=SMALL_VALUES, ttl_ms=st.one_of(st.just(0), st.integers(1, 10**6)))
    def set(self, key: bytes, value: bytes, ttl_ms: int) -> None:
        expires_at_ms = self.clock.wall_ms() + ttl_ms if ttl_ms else 0
        entry = self.store.set(key, value, expires_at_ms)
        assert entry[:2] == (value, expires_at_ms) and entry[3] == "local"
        self._hold(key, entry)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), ttl_ms=st.integers(1, 10**6))
    def expire(self, data: st.DataObject, ttl_ms: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.store.expire_at(key, self.clock.wall_ms() + ttl_ms)
        entry = self.store.peek(key)
        assert entry is not None and len(entry) == 6  # the expiry has its own version
        assert entry[:1] + entry[2:4] == self.model[key][:1] + self.model[key][2:4]
        self._hold(key, entry)  # a write: the key becomes most recent

    @rule(key=KEYS, value=SMALL_VALUES, stamp=STAMPS, x=STAMPS, same=st.booleans())
    def apply(
        self, key: bytes, value: bytes, stamp: tuple[int, str], x: tuple[int, str], same: bool
    ) -> None:
        # Versions below the clock's limit, so the store admits them.
        stamp, x = (stamp[0] >> 20, stamp[1]), (x[0] >> 20, x[1])
        record = make_entry(value, 0, stamp, stamp if same else x)
        # Which register wins is test_store_convergence's; here, that what the merge
        # chose is held whole, in its place in LRU order.
        if self.store.apply(key, record):
            entry = self.store.peek(key)
            assert entry is not None
            self._hold(key, entry)

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        entry = self.model.get(key)
        assert self.store.get(key) == (None if entry is None else entry[0])
        if entry is not None:
            self._hold(key, entry)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        assert self.store.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @invariant()
    def same_entries_in_the_same_order(self) -> None:
        assert self.store._held_entries() == list(self.model.items())
        assert self.store.used_bytes == sum(
            len(k) + len(e[0]) + _overhead(e) for k, e in self.model.items()
        )


def _overhead(entry: Entry) -> int:
    return entry_size(b"", entry[0], entry[1], len(entry) == 6) - len(entry[0])


TestRecordMachine = RecordMachine.TestCase
