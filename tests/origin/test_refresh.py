"""Refresh-ahead on a manual clock: which keys, when, and when not."""

from __future__ import annotations

import pytest

from geocache.clock import ManualClock
from geocache.fill import Fill
from geocache.origin import refresh as refresh_module
from geocache.origin.readthrough import ReadThrough
from geocache.origin.refresh import MIN_AHEAD_MS, RETRY_MS, Refresher

from .test_readthrough import SETTINGS, TTL_MS, ScriptedLoader

AHEAD_MS = max(TTL_MS // 5, MIN_AHEAD_MS)


class Keys:
    """The node's keyspace as the refresher sees it: a dict, and whether this node is primary."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.primary = True
        self.writes: list[tuple[bytes, Fill]] = []

    def held(self, key: bytes) -> int | None:
        value = self.values.get(key)
        return None if value is None else hash(value)

    def is_primary(self, key: bytes) -> bool:
        return self.primary

    async def write(self, key: bytes, fill: Fill) -> None:
        self.writes.append((key, fill))
        self.values[key] = fill.value


def setup(patterns: str = "hot:*,exact") -> tuple[Refresher, ReadThrough, ScriptedLoader, Keys]:
    loader, keys = ScriptedLoader(), Keys()
    rt = ReadThrough(loader, SETTINGS, ManualClock())
    refresher = Refresher(patterns, TTL_MS, rt, keys)
    rt.refresher = refresher
    return refresher, rt, loader, keys


async def load_and_store(rt: ReadThrough, keys: Keys, key: bytes) -> None:
    fill = await rt.fill(key)
    assert isinstance(fill, Fill)
    keys.values[key] = fill.value


def advance(rt: ReadThrough, ms: int) -> None:
    clock = rt.clock
    assert isinstance(clock, ManualClock)
    clock.advance(ms)


async def test_hot_keys_are_reloaded_before_they_expire() -> None:
    refresher, rt, loader, keys = setup()
    loader.values.update({b"hot:1": b"v1", b"exact": b"e1", b"cold": b"c1", b"exactly": b"x"})
    for key in loader.values:
        await load_and_store(rt, keys, key)
    assert len(refresher) == 2  # hot:1 and exact; not cold, not exactly
    loader.values.update({b"hot:1": b"v2", b"exact": b"e2"})
    advance(rt, TTL_MS - AHEAD_MS - 1)
    assert refresher.due() == []
    advance(rt, 1)
    due = refresher.due()
    assert sorted(key for key, _ in due) == [b"exact", b"hot:1"]
    for key, value_hash in due:
        await refresher.refresh(key, value_hash)
    assert keys.values[b"hot:1"] == b"v2" and keys.values[b"exact"] == b"e2"
    assert sorted(keys.writes) == [
        (b"exact", Fill(b"e2", TTL_MS, True)),
        (b"hot:1", Fill(b"v2", TTL_MS, True)),
    ]
    assert rt.stats.refreshes == 2 and len(refresher) == 2  # tracked again, for next time


async def test_a_key_deleted_or_overwritten_or_not_primary_is_dropped() -> None:
    refresher, rt, loader, keys = setup()
    for key in (b"hot:gone", b"hot:mine", b"hot:moved"):
        loader.values[key] = b"v"
        await load_and_store(rt, keys, key)
    del keys.values[b"hot:gone"]
    keys.values[b"hot:mine"] = b"a client's own value"
    advance(rt, TTL_MS)
    keys.primary = False
    calls = len(loader.calls)
    for key, value_hash in refresher.due():
        await refresher.refresh(key, value_hash)
    assert len(loader.calls) == calls and keys.writes == [] and len(refresher) == 0


async def test_a_failed_reload_is_retried_while_the_value_lives() -> None:
    refresher, rt, loader, keys = setup()
    loader.values[b"hot:1"] = b"v1"
    await load_and_store(rt, keys, b"hot:1")
    loader.failing = True
    advance(rt, TTL_MS - AHEAD_MS)
    [(key, value_hash)] = refresher.due()
    await refresher.refresh(key, value_hash)
    assert keys.writes == [] and rt.stats.refresh_failures == 1
    advance(rt, RETRY_MS - 1)
    assert refresher.due() == []
    advance(rt, 1)
    loader.failing = False
    loader.values[b"hot:1"] = b"v2"
    [(key, value_hash)] = refresher.due()
    await refresher.refresh(key, value_hash)
    assert keys.values[b"hot:1"] == b"v2"


def test_tracked_keys_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refresh_module, "MAX_TRACKED", 3)
    refresher, _, _, _ = setup("*")
    for i in range(5):
        refresher.track(b"k%d" % i, b"v")
    assert len(refresher) == 3 and refresher.untracked == 2
