"""The Store against a plain model, step by step, on a ManualClock (Hypothesis stateful).

The model is a dict of held entries (value, expires_at_ms), a list giving their LRU
order (least recent first) and the clock. It does what DESIGN.md section 3 says, in the
plainest code: a read or a write makes a key most recent, an access to an expired key
reclaims it, a write that needs room evicts from the front of the order (expired or
not), and a write that can never fit changes nothing.

Which expired entries `active_expire` reclaims is the store's choice (the wheel files
keys in 100 ms slots); the model checks that it only took expired ones, within the
budget, and then forgets the same ones.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from geocache.clock import ManualClock
from geocache.store import Store, StoreError, TooLarge, entry_size
from geocache.store.counters import INT64_MAX, INT64_MIN
from geocache.store.expiry import DEFAULT_SLOT_MS

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"\x00\xff"])
INTEGER_TEXTS = st.sampled_from(
    [b"0", b"-1", b"41", b"9223372036854775807", b"-9223372036854775808", b"01", b"+1", b" 1"]
)
VALUES = st.one_of(
    INTEGER_TEXTS,
    st.integers(INT64_MIN, INT64_MAX).map(lambda i: str(i).encode()),
    st.binary(max_size=40),
    st.binary(min_size=200, max_size=600),
)
# Relative expiries in ms: some already passed, some within the steps' time advances.
TTLS_MS = st.one_of(st.none(), st.integers(1, 3000))
DELTAS = st.one_of(st.integers(-5, 5), st.sampled_from([INT64_MAX, INT64_MIN, 1 << 64]))


def canonical_int(value: bytes) -> int | None:
    """The model's reading of a counter: only the canonical decimal text of an int64."""
    text = value.decode("latin-1")
    try:
        number = int(text)
    except ValueError:
        return None
    if str(number) != text or not INT64_MIN <= number <= INT64_MAX:
        return None  # " 1", "+1", "01", "-0", "1_0" and the like, or out of range
    return number


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        # key -> (value, expires_at_ms, split): split when the expiry has its own version.
        self.held: dict[bytes, tuple[bytes, int, bool]] = {}
        self.order: list[bytes] = []  # least recently used first
        self.stats = {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0}

    @initialize(
        max_keys=st.sampled_from([0, 2, 4]),
        max_bytes=st.sampled_from([0, 900, 1600]),
    )
    def make_store(self, max_keys: int, max_bytes: int) -> None:
        self.store = Store(self.clock, max_keys=max_keys, max_bytes=max_bytes)
        self.max_keys, self.max_bytes = max_keys, max_bytes

    # -- the model -------------------------------------------------------------------

    def now(self) -> int:
        return self.clock.wall_ms()

    def size(self, key: bytes) -> int:
        return entry_size(key, *self.held[key])

    def used(self) -> int:
        return sum(self.size(key) for key in self.held)

    def live(self, key: bytes) -> bool:
        if key not in self.held:
            return False
        expires_at_ms = self.held[key][1]
        return not expires_at_ms or expires_at_ms > self.now()

    def drop(self, key: bytes) -> None:
        del self.held[key]
        self.order.remove(key)

    def access(self, key: bytes) -> bool:
        """The store's lazy expiry: an access to an expired key reclaims it."""
        if key in self.held and not self.live(key):
            self.drop(key)
            self.stats["expirations"] += 1
        return key in self.held

    def touch(self, key: bytes) -> None:
        self.order.remove(key)
        self.order.append(key)

    def model_set(self, key: bytes, value: bytes, expires_at_ms: int, split: bool = False) -> bool:
        """False when the entry can never fit (TooLarge): nothing changes then. `split`:
        one register written apart (expire_at, incr_by of a key held)."""
        size = entry_size(key, value, expires_at_ms, split)
        if self.max_bytes and size > self.max_bytes:
            return False
        if key in self.held:
            self.drop(key)
        while self.order and (
            (self.max_bytes and self.used() + size > self.max_bytes)
            or (self.max_keys and len(self.held) >= self.max_keys)
        ):
            del self.held[self.order.pop(0)]
            self.stats["evictions"] += 1
        self.held[key] = (value, expires_at_ms, split)
        self.order.append(key)
        return True

    def expires(self, ttl_ms: int | None) -> int:
        return 0 if ttl_ms is None else self.now() + ttl_ms

    # -- rules -----------------------------------------------------------------------

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        found = self.store.get(key)
        if self.access(key):
            self.stats["hits"] += 1
            self.touch(key)
            assert found == self.held[key][0]
        else:
            self.stats["misses"] += 1
            assert found is None

    @rule(key=KEYS)
    def peek_and_ttl(self, key: bytes) -> None:
        ttl = self.store.ttl_ms(key)
        present = self.access(key)
        assert (key in self.store) is present
        if not present:
            assert ttl == -2
        elif not self.held[key][1]:
            assert ttl == -1
        else:
            assert ttl == self.held[key][1] - self.now() > 0

    @rule(key=KEYS, value=VALUES, ttl_ms=TTLS_MS)
    def set(self, key: bytes, value: bytes, ttl_ms: int | None) -> None:
        expires_at_ms = self.expires(ttl_ms)
        fits = self.model_set(key, value, expires_at_ms)
        if fits:
            self.store.set(key, value, expires_at_ms)
        else:
            with pytest.raises(TooLarge):
                self.store.set(key, value, expires_at_ms)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        existed = self.access(key)
        if existed:
            self.drop(key)
        assert self.store.delete(key) is existed

    @rule(key=KEYS, offset_ms=st.one_of(st.none(), st.integers(-1000, 3000)))
    def expire_at(self, key: bytes, offset_ms: int | None) -> None:
        """offset None: expire_at(key, 0), which keeps the value and drops the expiry."""
        when = 0 if offset_ms is None else self.now() + offset_ms
        if not self.access(key):
            assert self.store.expire_at(key, when) is False
        elif when and when <= self.now():
            self.drop(key)
            assert self.store.expire_at(key, when) is True
        elif self.model_set(key, self.held[key][0], when, split=True):
            assert self.store.expire_at(key, when) is True
        else:
            with pytest.raises(TooLarge):
                self.store.expire_at(key, when)

    @rule(key=KEYS)
    def persist(self, key: bytes) -> None:
        """PERSIST as the command does it: the expiry register alone, written as none."""
        entry = self.store.peek(key)
        assert (entry is not None) is self.access(key)
        if entry is not None and entry[1]:
            assert self.model_set(key, entry[0], 0, split=True)
            assert self.store.expire_at(key, 0) is True

    @rule(key=KEYS, delta=DELTAS)
    def incr_by(self, key: bytes, delta: int) -> None:
        present = self.access(key)
        current = canonical_int(self.held[key][0]) if present else 0
        result = None if current is None else current + delta
        if result is None or not INT64_MIN <= result <= INT64_MAX:
            with pytest.raises(StoreError):
                self.store.incr_by(key, delta)
            return
        expires_at_ms = self.held[key][1] if present else 0
        assert self.model_set(key, str(result).encode(), expires_at_ms, split=present)
        assert self.store.incr_by(key, delta) == result

    @rule(ms=st.integers(0, 2000))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule(ms=st.integers(1, 500))
    def wall_clock_steps_back(self, ms: int) -> None:
        # NTP may move the wall clock back: expired keys not yet reclaimed live again.
        self.clock.set_wall_ms(self.now() - ms)

    @rule(budget=st.integers(1, 4))
    def active_expire(self, budget: int) -> None:
        before = set(self.held)
        looked_at = self.store.active_expire(budget)
        assert 0 <= looked_at <= budget
        reclaimed = before - set(self.store._data)  # white box: which entries it took
        # Every key the wheel hands over is a held key whose slot is due: no stale filings.
        assert len(reclaimed) == looked_at
        for key in reclaimed:
            assert not self.live(key), "active expiry reclaimed a live key"
            self.drop(key)
            self.stats["expirations"] += 1
        if looked_at < budget:  # nothing due is left: all slots before now's are empty
            due_slot = self.now() // DEFAULT_SLOT_MS
            assert all(
                not exp or exp // DEFAULT_SLOT_MS >= due_slot for _, exp, _ in self.held.values()
            )

    @rule()
    def flush(self) -> None:
        self.store.flush()
        self.held.clear()
        self.order.clear()

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def accounting_matches(self) -> None:
        assert len(self.store) == len(self.held)
        assert self.store.used_bytes == self.used()

    @invariant()
    def limits_hold(self) -> None:
        if self.max_keys:
            assert len(self.store) <= self.max_keys
        if self.max_bytes:
            assert self.store.used_bytes <= self.max_bytes

    @invariant()
    def lru_order_and_values_match(self) -> None:
        live = [key for key in self.order if self.live(key)]
        assert list(self.store.keys()) == live
        assert {key: (*entry[:2], len(entry) == 6) for key, entry in self.store.items()} == {
            key: self.held[key] for key in live
        }

    @invariant()
    def stats_match(self) -> None:
        stats = self.store.stats()
        assert (stats.hits, stats.misses, stats.evictions, stats.expirations) == (
            self.stats["hits"],
            self.stats["misses"],
            self.stats["evictions"],
            self.stats["expirations"],
        )
        assert stats.keys == len(self.held)
        assert stats.bytes == self.used()


StoreMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMachine = StoreMachine.TestCase
