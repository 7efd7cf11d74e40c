"""Refresh-ahead: hot keys (`--refresh-keys`) are reloaded before they expire.

A key that matches one of the comma-separated names or globs is tracked each time its
value is loaded from the origin, due when a fifth of its TTL is left. When it falls
due, it is reloaded (joining a read's load of it, if one is in flight) and written
through the node's own write path, so in a cluster it is replicated like any write, with
a new TTL; readers never see it expire. Only while this node is still the key's
primary and still holds the value it loaded: a key deleted, evicted, expired or
overwritten by a client since is dropped, and its next miss loads it as any other.
A failed reload is retried every RETRY_MS for as long as the old value lives.

Bounded: at most MAX_TRACKED keys are tracked (hot keys are few; a glob matching much
of the keyspace is capped, and counted in `refresh_untracked`).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable
from typing import Protocol

from geocache.clock import Clock
from geocache.fill import Fill
from geocache.origin import readthrough
from geocache.store.pattern import compile_glob

# Reload when a fifth of the TTL is left, and at least MIN_AHEAD_MS before expiry: two
# ticks and a load's usual time, so a short TTL still refreshes in time.
AHEAD_SHARE = 5
MIN_AHEAD_MS = 300
TICK_S = 0.1
# A failed reload is tried again this often while the old value lives (ms).
RETRY_MS = 1000
MAX_TRACKED = 10_000


class Keyspace(Protocol):
    """What refreshing needs of the node (service.py binds it)."""

    def held(self, key: bytes) -> int | None:
        """hash() of the value held for `key`, None if it holds none."""
        ...

    def is_primary(self, key: bytes) -> bool: ...
    def write(self, key: bytes, fill: Fill) -> Awaitable[None]: ...


class Refresher:
    def __init__(
        self, patterns: str, ttl_ms: int, through: readthrough.ReadThrough, keys: Keyspace
    ) -> None:
        self._matchers = [compile_glob(p.strip().encode()) for p in patterns.split(",") if p]
        self._ttl_ms = ttl_ms
        self._through = through
        self._clock: Clock = through.clock
        self._keys = keys
        self._tracked: dict[bytes, tuple[int, int]] = {}  # key -> (due_ms, value hash)
        self._heap: list[tuple[int, bytes]] = []  # (due_ms, key); stale pairs are skipped
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.untracked = 0  # keys not tracked because MAX_TRACKED were

    def __len__(self) -> int:
        return len(self._tracked)

    def matches(self, key: bytes) -> bool:
        return any(match(key) for match in self._matchers)

    def track(self, key: bytes, value: bytes) -> None:
        """A value of `key` was loaded: schedule its reload, if the key is a hot one."""
        if not self.matches(key):
            return
        if key not in self._tracked and len(self._tracked) >= MAX_TRACKED:
            self.untracked += 1
            return
        ahead_ms = max(self._ttl_ms // AHEAD_SHARE, MIN_AHEAD_MS)
        self._schedule(key, hash(value), self._clock.mono_ms() + self._ttl_ms - ahead_ms)

    def _schedule(self, key: bytes, value_hash: int, due_ms: int) -> None:
        self._tracked[key] = (due_ms, value_hash)
        heapq.heappush(self._heap, (due_ms, key))
        if len(self._heap) > 2 * MAX_TRACKED:  # re-tracked keys left stale pairs behind
            self._heap = [(due, k) for k, (due, _) in self._tracked.items()]
            heapq.heapify(self._heap)

    def due(self) -> list[tuple[bytes, int]]:
        """Keys due now, with the hash of the value they had; no longer tracked."""
        now, heap, found = self._clock.mono_ms(), self._heap, []
        while heap and heap[0][0] <= now:
            due_ms, key = heapq.heappop(heap)
            tracked = self._tracked.get(key)
            if tracked is not None and tracked[0] == due_ms:
                del self._tracked[key]
                found.append((key, tracked[1]))
        return found

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for key, value_hash in self.due():
                task = asyncio.create_task(self.refresh(key, value_hash))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def refresh(self, key: bytes, value_hash: int) -> None:
        keys, stats = self._keys, self._through.stats
        if keys.held(key) != value_hash or not keys.is_primary(key):
            return
        outcome = await self._through.load(key)
        if isinstance(outcome, Fill) and outcome.store:
            if keys.held(key) == value_hash:  # not written by a client during the load
                await keys.write(key, outcome)
                stats.refreshes += 1
            return
        if outcome is not None:  # failed (answered stale or an error): retry while it lives
            stats.refresh_failures += 1
            if key not in self._tracked:
                self._schedule(key, value_hash, self._clock.mono_ms() + RETRY_MS)

    def close(self) -> None:
        for task in [self._runner, *self._tasks]:
            if task is not None:
                task.cancel()
