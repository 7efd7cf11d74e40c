"""SCAN cursors over the store: no key present for the whole scan is missed."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from geocache.clock import ManualClock
from geocache.store import Store
from geocache.store.scan import DEFAULT_IDLE_MS, Scanner


def scan_once(scanner: Scanner, store: Store, cursor: int, count: int) -> tuple[int, list[bytes]]:
    return scanner.scan(cursor, count, lambda: list(store.keys()), store.__contains__)


BETWEEN_CALLS = st.lists(
    st.tuples(st.sampled_from(["get", "add", "delete"]), st.integers(0, 10_000)), max_size=8
)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.integers(0, 60),
    count=st.integers(1, 15),
    steps=st.lists(BETWEEN_CALLS, max_size=30),
)
def test_every_key_present_throughout_is_returned(
    initial: int, count: int, steps: list[list[tuple[str, int]]]
) -> None:
    clock = ManualClock()
    store, scanner = Store(clock), Scanner(clock)
    for i in range(initial):
        store.set(b"key%d" % i, b"v")
    present_throughout = set(store.keys())
    returned: list[bytes] = []
    cursor, calls = 0, 0
    pending = iter(steps)
    while True:
        cursor, keys = scan_once(scanner, store, cursor, count)
        calls += 1
        assert all(key in store for key in keys)  # deleted keys are not returned
        returned += keys
        if cursor == 0:
            break
        for action, n in next(pending, []):
            live = list(store.keys())
            if action == "get" and live:
                store.get(live[n % len(live)])  # moves it to the most recent end
            elif action == "add":
                store.set(b"new%d" % n, b"v")
            elif action == "delete" and live:
                victim = live[n % len(live)]
                store.delete(victim)
                present_throughout.discard(victim)
    assert present_throughout <= set(returned)
    assert calls <= max(1, math.ceil(initial / count))


def test_a_full_scan_returns_each_key_once_and_ends_at_zero() -> None:
    clock = ManualClock()
    store, scanner = Store(clock), Scanner(clock)
    for i in range(25):
        store.set(b"k%02d" % i, b"v")
    cursor, seen = 0, []
    cursor, keys = scan_once(scanner, store, cursor, 10)
    seen += keys
    assert cursor != 0
    while cursor:
        cursor, keys = scan_once(scanner, store, cursor, 10)
        seen += keys
    assert sorted(seen) == sorted(store.keys())


def test_an_empty_store_scans_to_zero_at_once() -> None:
    clock = ManualClock()
    assert scan_once(Scanner(clock), Store(clock), 0, 10) == (0, [])


def test_keys_expired_since_the_snapshot_are_not_returned() -> None:
    clock = ManualClock()
    store, scanner = Store(clock), Scanner(clock)
    store.set(b"b", b"v")
    store.set(b"a", b"v", clock.wall_ms() + 10)
    cursor, first = scan_once(scanner, store, 0, 1)
    assert first == [b"b"]
    clock.advance(10)
    assert scan_once(scanner, store, cursor, 10) == (0, [])


def test_an_idle_cursor_restarts_on_a_fresh_snapshot_at_its_offset() -> None:
    clock = ManualClock()
    store, scanner = Store(clock), Scanner(clock)
    for i in range(4):
        store.set(b"k%d" % i, b"v")
    cursor, keys = scan_once(scanner, store, 0, 2)
    assert keys == [b"k0", b"k1"]
    clock.advance(DEFAULT_IDLE_MS)
    store.get(b"k0")  # order is now k1 k2 k3 k0
    cursor, keys = scan_once(scanner, store, cursor, 2)
    assert (cursor, keys) == (0, [b"k3", b"k0"])  # documented: may repeat or skip


def test_too_many_concurrent_scans_drop_the_oldest_snapshot() -> None:
    clock = ManualClock()
    store, scanner = Store(clock), Scanner(clock, max_snapshots=2)
    for i in range(6):
        store.set(b"k%d" % i, b"v")
    cursors = [scan_once(scanner, store, 0, 2)[0] for _ in range(3)]
    assert len(set(cursors)) == 3
    assert len(scanner._snapshots) == 2
    # The newest two carry on from their snapshots.
    assert scan_once(scanner, store, cursors[2], 2)[1] == [b"k2", b"k3"]
