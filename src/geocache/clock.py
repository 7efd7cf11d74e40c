"""Clocks: the wall clock, the monotonic clock, the hybrid logical clock, and a manual clock.

Everything that reads time takes a `Clock` in its constructor, so tests drive time with
a `ManualClock` and never sleep.

The hybrid logical clock (HLC) issues 64-bit versions: the high 48 bits are wall-clock
milliseconds, the low 16 bits a counter. `now()` returns a version larger than every
version this clock has issued or seen; `update(received)` folds in a version that came
from another node, so a write caused by one we received always gets a larger version,
however skewed the two nodes' wall clocks are.

Versions come from the network, so the clock trusts none of them: a received version
more than `max_ahead_ms` ahead of this node's wall clock is not admitted (`admits`, which
the store checks before it merges a record), `update` folds in at most that bound
whatever it is given, and every result is capped at MAX_VERSION. So one forged version
near 2**64 can neither drag the clock past the bound nor overflow its arithmetic (the
digest packs versions in 8 bytes): every later write still gets a version.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
# 48 bits of milliseconds last until the year 10889.
MAX_VERSION = (1 << 64) - 1
# How far ahead of this node's wall clock a received version may be (ms): 60 s is many
# times what NTP-disciplined clocks drift, and bounds how far one bad sender can drag
# every clock in the cluster into the future (config max_clock_skew_ms).
MAX_AHEAD_MS = 60_000
# Below this a version is a machine integer in compiled code (mypyc tags ints up to
# 2**62 - 1), so `now` compares it without touching the 64-bit MAX_VERSION object.
_SMALL_VERSION: Final = (1 << 62) - 1
# Bound once: compiled code reads a Final from a C static, not `time`'s attributes.
_time_ns: Final = time.time_ns
_monotonic_ns: Final = time.monotonic_ns


class Clock(Protocol):
    """Where time comes from: wall time for expiry and versions, monotonic for intervals."""

    def wall_ms(self) -> int: ...

    def mono_ms(self) -> int: ...


class SystemClock:
    """The machine's clocks."""

    __slots__ = ()

    def wall_ms(self) -> int:
        return _time_ns() // 1_000_000

    def mono_ms(self) -> int:
        return _monotonic_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; for tests."""

    __slots__ = ("_mono_ms", "_wall_ms")

    def __init__(self, wall_ms: int = 1_700_000_000_000, mono_ms: int = 1_000_000) -> None:
        self._wall_ms = wall_ms
        self._mono_ms = mono_ms

    def wall_ms(self) -> int:
        return self._wall_ms

    def mono_ms(self) -> int:
        return self._mono_ms

    def advance(self, ms: int) -> None:
        """Move both clocks forward by `ms`."""
        if ms < 0:
            raise ValueError("a clock cannot go backwards by advance(); use set_wall_ms")
        self._wall_ms += ms
        self._mono_ms += ms

    def set_wall_ms(self, wall_ms: int) -> None:
        """Jump the wall clock (as NTP may, even backwards); the monotonic clock stays."""
        self._wall_ms = wall_ms


class OffsetClock:
    """A clock whose wall time is shifted by a fixed offset; for skew tests."""

    __slots__ = ("_base", "offset_ms")

    def __init__(self, base: Clock, offset_ms: int) -> None:
        self._base = base
        self.offset_ms = offset_ms

    def wall_ms(self) -> int:
        return self._base.wall_ms() + self.offset_ms

    def mono_ms(self) -> int:
        return self._base.mono_ms()


def version_ms(version: int) -> int:
    """The wall-clock milliseconds part of an HLC version."""
    return version >> COUNTER_BITS


def make_version(ms: int, counter: int = 0) -> int:
    return (ms << COUNTER_BITS) | (counter & COUNTER_MASK)


class HLC:
    """A hybrid logical clock issuing strictly increasing 64-bit versions.

    Not thread-safe: its owner serializes calls (a node's event loop, or LocalCache's
    lock), which keeps a version at about 150 ns on the write path. Versions stop
    increasing only at MAX_VERSION, which the wall clock reaches in the year 10889.
    """

    __slots__ = ("_last", "_pinned", "_wall_ms", "max_ahead_ms")

    def __init__(self, clock: Clock, max_ahead_ms: int = MAX_AHEAD_MS) -> None:
        if max_ahead_ms < 1:
            raise ValueError("max_ahead_ms must be at least 1")
        self._wall_ms = clock.wall_ms
        self._last = 0
        self._pinned = 0
        self.max_ahead_ms = max_ahead_ms

    def limit(self) -> int:
        """The largest version admitted now: `max_ahead_ms` past the wall clock."""
        version = ((self._wall_ms() + self.max_ahead_ms) << COUNTER_BITS) | COUNTER_MASK
        return version if 0 <= version < _SMALL_VERSION else _capped(version)

    def admits(self, version: int) -> bool:
        """Whether a received version is in range and not too far ahead of this clock."""
        return 0 <= version <= self.limit()

    def ahead_ms(self, version: int) -> int:
        """How far a version's time is ahead of this node's wall clock (ms; < 0: behind)."""
        return version_ms(version) - self._wall_ms()

    def pin(self, version: int) -> None:
        """Until `pin(0)`, `now()` returns `version`: a forwarded write carries the version
        the forwarding node minted when the client asked (cluster/router.py), which the
        caller has checked with `admits`; one out of range raises ValueError."""
        if not 0 <= version <= MAX_VERSION:
            raise ValueError(f"version out of range: {version}")
        self._pinned = version
        if version > self._last:
            self._last = version

    @property
    def last(self) -> int:
        """The largest version issued or seen so far."""
        return self._last

    def now(self) -> int:
        """A new version for a local event: larger than any issued or seen before (or
        the pinned one)."""
        if self._pinned:
            return self._pinned
        wall, last = self._wall_ms() << COUNTER_BITS, self._last
        if wall < _SMALL_VERSION and last < _SMALL_VERSION:  # nearly always: no cap near
            version = wall if wall > last else last + 1
            self._last = version
            return version
        # Counter overflow (65,536 events in one ms) borrows the next millisecond, which
        # keeps versions strictly increasing; the wall clock catches up. Written out
        # rather than through `_capped`: this runs on every local write.
        if wall > last:
            version = wall if wall <= MAX_VERSION else MAX_VERSION
        else:
            version = last + 1 if last < MAX_VERSION else MAX_VERSION
        self._last = version
        return version

    def update(self, received: int) -> int:
        """Fold in a version received from another node; returns a version after both
        (after `limit()` at most: a version beyond it moves the clock only that far)."""
        wall_ms, last = self._wall_ms(), self._last
        limit = ((wall_ms + self.max_ahead_ms) << COUNTER_BITS) | COUNTER_MASK
        if 0 <= received <= limit < _SMALL_VERSION and 0 <= last < _SMALL_VERSION:
            # Nearly always: every value a machine integer, nothing near a cap (received
            # + 1 and last + 1 stay below 2**62).
            wall = wall_ms << COUNTER_BITS
            version = received + 1 if received >= last else last + 1
            if wall > version:
                version = wall
        else:
            folded = min(max(received, 0), _capped(limit))
            wall = _capped(wall_ms << COUNTER_BITS)
            version = max(wall, _capped(last + 1), _capped(folded + 1))
        self._last = version
        return version


def _capped(version: int) -> int:
    """A version in 0..MAX_VERSION, whatever arithmetic produced it."""
    return min(max(version, 0), MAX_VERSION)
