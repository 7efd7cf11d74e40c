"""Clocks and the hybrid logical clock: versions only ever go up."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geocache.clock import (
    COUNTER_BITS,
    COUNTER_MASK,
    HLC,
    MAX_AHEAD_MS,
    MAX_VERSION,
    ManualClock,
    OffsetClock,
    SystemClock,
    make_version,
    version_ms,
)

NOW_MS = 1_700_000_000_000


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(wall_ms=NOW_MS, mono_ms=5)
    assert (clock.wall_ms(), clock.mono_ms()) == (NOW_MS, 5)
    clock.advance(250)
    assert (clock.wall_ms(), clock.mono_ms()) == (NOW_MS + 250, 255)
    clock.set_wall_ms(NOW_MS - 1000)  # NTP steps the wall clock back
    assert (clock.wall_ms(), clock.mono_ms()) == (NOW_MS - 1000, 255)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_offset_clock_shifts_wall_time_only() -> None:
    base = ManualClock(wall_ms=NOW_MS, mono_ms=7)
    skewed = OffsetClock(base, -30_000)
    assert (skewed.wall_ms(), skewed.mono_ms()) == (NOW_MS - 30_000, 7)


def test_system_clock_reads_the_machine() -> None:
    clock = SystemClock()
    first = clock.mono_ms()
    assert clock.wall_ms() > NOW_MS  # after November 2023
    assert clock.mono_ms() >= first


def test_version_layout_is_48_bits_of_ms_and_16_of_counter() -> None:
    version = make_version(NOW_MS, 3)
    assert version == (NOW_MS << 16) | 3
    assert version_ms(version) == NOW_MS
    assert version & COUNTER_MASK == 3
    assert COUNTER_BITS == 16
    assert make_version(NOW_MS, 1 << 16) == make_version(NOW_MS)  # counter is masked


def test_now_follows_the_wall_clock() -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock)
    assert hlc.now() == make_version(NOW_MS)
    assert hlc.now() == make_version(NOW_MS, 1)  # same ms: the counter counts
    clock.advance(5)
    assert hlc.now() == make_version(NOW_MS + 5)
    assert hlc.last == make_version(NOW_MS + 5)


def test_versions_increase_when_the_wall_clock_goes_back() -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock)
    before = hlc.now()
    clock.set_wall_ms(NOW_MS - 60_000)
    after = [hlc.now() for _ in range(3)]
    assert before < after[0] < after[1] < after[2]
    assert version_ms(after[2]) == NOW_MS  # held at the latest ms seen, counting up
    clock.set_wall_ms(NOW_MS + 1)
    assert hlc.now() == make_version(NOW_MS + 1)  # and the wall clock takes over again


def test_counter_overflow_within_one_ms_borrows_the_next_ms() -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock)
    versions = [hlc.now() for _ in range(COUNTER_MASK + 3)]
    assert all(a < b for a, b in itertools.pairwise(versions))
    assert versions[COUNTER_MASK] == make_version(NOW_MS, COUNTER_MASK)
    assert versions[COUNTER_MASK + 1] == make_version(NOW_MS + 1, 0)
    clock.advance(1)  # the wall clock catching up does not repeat a version
    assert hlc.now() == make_version(NOW_MS + 1, 2)


def test_update_with_a_future_version_moves_past_it() -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock)
    received = make_version(NOW_MS + 60_000, 9)  # a sender whose clock is a minute ahead
    assert hlc.update(received) == received + 1
    assert hlc.now() == received + 2  # local events stay after what was received
    clock.advance(60_001)
    assert hlc.now() == make_version(NOW_MS + 60_001)


def test_update_with_a_past_version_still_advances() -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock)
    issued = hlc.now()
    assert hlc.update(make_version(NOW_MS - 5000)) == issued + 1
    clock.advance(1)
    assert hlc.update(make_version(NOW_MS - 5000)) == make_version(NOW_MS + 1)


@pytest.mark.parametrize(
    "received", [-1, -(1 << 70), 1 << 63, MAX_VERSION, MAX_VERSION + 1, 1 << 90]
)
def test_update_never_moves_past_the_bound_nor_overflows(received: int) -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock)
    version = hlc.update(received)
    assert 0 < version <= hlc.limit() + 1
    assert version_ms(version) <= NOW_MS + MAX_AHEAD_MS + 1
    # Every later version is still a 64-bit number, larger than the one before.
    later = [hlc.now() for _ in range(5)]
    assert all(a < b <= MAX_VERSION for a, b in itertools.pairwise([version, *later]))
    assert all(v.to_bytes(8, "little") for v in later)  # what the digest does with them


def test_admits_versions_up_to_the_bound_only() -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock, max_ahead_ms=1000)
    assert hlc.admits(0) and hlc.admits(make_version(NOW_MS + 1000, COUNTER_MASK))
    assert not hlc.admits(make_version(NOW_MS + 1001))
    assert not hlc.admits(-1) and not hlc.admits(1 << 63) and not hlc.admits(MAX_VERSION + 1)
    assert hlc.ahead_ms(make_version(NOW_MS + 1500)) == 1500
    clock.advance(600)  # the bound moves with the wall clock
    assert hlc.admits(make_version(NOW_MS + 1500))


def test_pin_refuses_a_version_out_of_range() -> None:
    hlc = HLC(ManualClock(NOW_MS))
    with pytest.raises(ValueError, match="out of range"):
        hlc.pin(1 << 64)
    assert hlc.now() < make_version(NOW_MS + 1)  # nothing pinned, nothing moved


def test_a_clock_at_the_end_of_time_saturates_instead_of_overflowing() -> None:
    clock = ManualClock(1 << 50)  # past the year 10889: wall_ms << 16 is over 64 bits
    hlc = HLC(clock)
    assert hlc.now() == MAX_VERSION and hlc.update(MAX_VERSION) == MAX_VERSION
    assert hlc.limit() == MAX_VERSION


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("now"), st.integers(-10_000, 10_000)),
            st.tuples(st.just("update"), st.integers(-10_000, 100_000)),
            st.tuples(st.just("forged"), st.integers(0, 1 << 70)),
        ),
        max_size=60,
    )
)
def test_every_version_is_larger_than_all_before(events: list[tuple[str, int]]) -> None:
    clock = ManualClock(NOW_MS)
    hlc = HLC(clock)
    highest = 0
    for kind, ms in events:
        if kind == "now":
            clock.set_wall_ms(NOW_MS + ms)  # the wall clock wanders, both ways
            version = hlc.now()
        elif kind == "forged":
            version = hlc.update(ms)  # any number at all, from the network
            assert version > min(ms, hlc.limit())
        else:
            received = make_version(NOW_MS + ms, ms & 0xFF)
            version = hlc.update(received)
            assert version > min(received, hlc.limit())
        # Never past the bound from a received value (a local event adds at most one).
        assert version <= max(hlc.limit() + 1, highest + 1)
        assert version > highest
        assert version >= make_version(clock.wall_ms())
        highest = version


def _capped(version: int) -> int:
    return min(max(version, 0), MAX_VERSION)


@given(
    wall_ms=st.one_of(st.integers(0, 1 << 47), st.integers(1 << 45, 1 << 50)),
    last=st.one_of(st.integers(0, 1 << 63), st.just(MAX_VERSION), st.integers(0, 1 << 20)),
    received=st.one_of(st.integers(-(1 << 66), 1 << 66), st.integers(0, 1 << 62)),
)
def test_update_and_now_match_the_plain_formulas(wall_ms: int, last: int, received: int) -> None:
    """The fast paths for machine integers give what the capped formulas give."""
    hlc = HLC(ManualClock(wall_ms))
    hlc.pin(last)
    hlc.pin(0)
    limit = _capped(make_version(wall_ms + MAX_AHEAD_MS, COUNTER_MASK))
    assert hlc.limit() == limit
    wall = _capped(wall_ms << COUNTER_BITS)
    expected = max(wall, _capped(last + 1), _capped(min(max(received, 0), limit) + 1))
    assert hlc.update(received) == expected
    after = hlc.now()
    assert after == (wall if wall > expected else min(expected + 1, MAX_VERSION))
