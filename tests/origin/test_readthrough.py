"""The read-through with a scripted loader and a manual clock: coalescing, negative
answers, stale-if-error, the breaker, timeouts and the concurrency cap."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from geocache.clock import ManualClock
from geocache.fill import Fill
from geocache.origin.readthrough import SETTLE_MS, ReadThrough, Settings
from geocache.protocol.types import Error

TTL_MS = 10_000
SETTINGS = Settings(
    ttl_ms=TTL_MS,
    timeout_s=5.0,
    concurrency=4,
    max_stale_ms=0,
    negative_ttl_ms=0,
    max_value_bytes=1 << 20,
    breaker_failures=0,
    breaker_reset_ms=1000,
    stale_bytes=1 << 20,
    negative_bytes=1 << 20,
)


class ScriptedLoader:
    """An origin the test controls: values, failures, and a gate that holds loads."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.failing = False
        self.calls: list[bytes] = []
        self.release = asyncio.Event()
        self.release.set()
        self.running = 0
        self.most_running = 0

    async def load(self, key: bytes) -> bytes | None:
        self.calls.append(key)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
            if self.failing:
                raise ConnectionError("origin down")
            return self.values.get(key)
        finally:
            self.running -= 1

    async def close(self) -> None:
        pass


def through(**changes: object) -> tuple[ReadThrough, ScriptedLoader, ManualClock]:
    loader, clock = ScriptedLoader(), ManualClock()
    return ReadThrough(loader, replace(SETTINGS, **changes), clock), loader, clock


async def test_concurrent_misses_of_one_key_load_it_once() -> None:
    rt, loader, _ = through()
    loader.values[b"k"] = b"v"
    loader.release.clear()
    fills = [asyncio.create_task(rt.fill(b"k")) for _ in range(100)]
    await asyncio.sleep(0)
    assert rt.loading == 1
    loader.release.set()
    assert await asyncio.gather(*fills) == [Fill(b"v", TTL_MS, True)] * 100
    assert loader.calls == [b"k"]
    assert rt.counters()["coalesced"] == 99 and rt.stats.loads == 1 and rt.stats.found == 1


async def test_a_miss_just_after_a_load_reuses_it_then_loads_again() -> None:
    rt, loader, clock = through()
    loader.values[b"k"] = b"v1"
    assert await rt.fill(b"k") == Fill(b"v1", TTL_MS, True)
    loader.values[b"k"] = b"v2"
    clock.advance(SETTLE_MS - 1)
    assert await rt.fill(b"k") == Fill(b"v1", TTL_MS, True)  # its waiters are storing v1
    clock.advance(1)
    assert await rt.fill(b"k") == Fill(b"v2", TTL_MS, True)
    assert loader.calls == [b"k", b"k"]


async def test_no_such_key_is_remembered_only_when_asked() -> None:
    rt, loader, clock = through()
    assert await rt.fill(b"gone") is None
    clock.advance(SETTLE_MS)
    assert await rt.fill(b"gone") is None
    assert len(loader.calls) == 2

    rt, loader, clock = through(negative_ttl_ms=5_000)
    assert await rt.fill(b"gone") is None
    clock.advance(4_999)
    assert await rt.fill(b"gone") is None
    assert len(loader.calls) == 1 and rt.stats.negative_hits == 1
    loader.values[b"gone"] = b"back"
    clock.advance(1)
    assert await rt.fill(b"gone") == Fill(b"back", TTL_MS, True)


async def test_stale_if_error_serves_the_last_value_until_max_stale() -> None:
    rt, loader, clock = through(max_stale_ms=3_000)
    loader.values[b"k"] = b"v1"
    assert await rt.fill(b"k") == Fill(b"v1", TTL_MS, True)
    loader.failing = True
    clock.advance(TTL_MS + 3_000 - SETTLE_MS)  # expired in the store a while ago
    assert await rt.fill(b"k") == Fill(b"v1", 0, False)  # answered, not stored again
    assert rt.stats.stale_served == 1 and rt.stats.errors == 1
    clock.advance(SETTLE_MS)
    reply = await rt.fill(b"k")
    assert isinstance(reply, Error) and "ConnectionError: origin down" in reply
    assert rt.stats.failed_fills == 1 and rt.stats.stale_served == 1


async def test_without_max_stale_a_failure_is_an_error() -> None:
    rt, loader, clock = through()
    loader.values[b"k"] = b"v1"
    await rt.fill(b"k")
    loader.failing = True
    clock.advance(TTL_MS)
    reply = await rt.fill(b"k")
    assert isinstance(reply, Error) and reply.startswith("ERR origin unavailable")
    assert len(rt.stale) == 0


async def test_a_key_gone_at_the_origin_is_never_served_stale() -> None:
    rt, loader, clock = through(max_stale_ms=60_000)
    loader.values[b"k"] = b"v1"
    await rt.fill(b"k")
    del loader.values[b"k"]
    clock.advance(SETTLE_MS)
    assert await rt.fill(b"k") is None
    loader.failing = True
    clock.advance(SETTLE_MS)
    assert isinstance(await rt.fill(b"k"), Error)


async def test_the_breaker_opens_after_failures_and_closes_after_a_good_trial() -> None:
    rt, loader, clock = through(breaker_failures=2, breaker_reset_ms=1_000)
    loader.failing = True
    for key in (b"a", b"b"):
        assert isinstance(await rt.fill(key), Error)
    assert rt.breaker.state == "open" and rt.breaker.opened == 1
    refused = await rt.fill(b"c")
    assert isinstance(refused, Error) and "circuit breaker open" in refused
    assert loader.calls == [b"a", b"b"] and rt.stats.rejected == 1
    clock.advance(1_000)
    loader.failing = False
    loader.values[b"c"] = b"v"
    assert await rt.fill(b"c") == Fill(b"v", TTL_MS, True)  # the trial
    assert rt.breaker.state == "closed"


async def test_a_failed_trial_opens_the_breaker_again() -> None:
    rt, loader, clock = through(breaker_failures=1, breaker_reset_ms=1_000)
    loader.failing = True
    await rt.fill(b"a")
    clock.advance(1_000)
    await rt.fill(b"b")  # the trial, failing
    assert rt.breaker.state == "open" and rt.breaker.opened == 2
    await rt.fill(b"c")
    assert loader.calls == [b"a", b"b"]


async def test_a_load_past_the_timeout_fails_and_frees_its_slot() -> None:
    rt, loader, _ = through(timeout_s=0.05, concurrency=1)
    assert rt.timeout_ms == 50  # what a node forwarding a miss to this one waits for
    loader.release.clear()
    reply = await rt.fill(b"slow")
    assert isinstance(reply, Error) and "timed out after 0.05 s" in reply
    assert rt.stats.timeouts == 1 and loader.running == 0
    loader.release.set()
    loader.values[b"next"] = b"v"
    assert await rt.fill(b"next") == Fill(b"v", TTL_MS, True)


async def test_loads_at_once_are_capped() -> None:
    rt, loader, _ = through(concurrency=2)
    loader.release.clear()
    fills = [asyncio.create_task(rt.fill(b"k%d" % i)) for i in range(6)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert loader.running == 2 and rt.loading == 6
    loader.release.set()
    await asyncio.gather(*fills)
    assert loader.most_running == 2 and len(loader.calls) == 6


async def test_a_value_over_max_value_bytes_is_refused() -> None:
    rt, loader, _ = through(max_value_bytes=4)
    loader.values[b"big"] = b"12345"
    reply = await rt.fill(b"big")
    assert isinstance(reply, Error) and "max-value-bytes" in reply
    assert rt.breaker.state == "closed"


@pytest.mark.parametrize("command, served", [(b"get", True), (b"getex", False), (b"mget", False)])
def test_serves_get_only(command: bytes, served: bool) -> None:
    rt, _, _ = through()
    assert rt.serves(command) is served
