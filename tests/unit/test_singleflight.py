"""Singleflight: one load per key however many callers, for threads and for coroutines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from geocache.singleflight import AsyncFlights, Flights

THREADS = 32
TIMEOUT_S = 10


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll with a deadline: the only way to see other threads arrive, without sleeping on luck."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


Started = tuple[list[threading.Thread], list[object]]


def start_threads(target: Callable[[], object], count: int = THREADS) -> Started:
    """Run `target` in `count` threads released together; their results or exceptions."""
    results: list[object] = [None] * count
    start = threading.Barrier(count, timeout=TIMEOUT_S)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = target()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def join(started: Started) -> list[object]:
    threads, results = started
    for thread in threads:
        thread.join(timeout=TIMEOUT_S)
        assert not thread.is_alive()
    return results


def test_threads_share_one_load() -> None:
    flights: Flights[str] = Flights()
    calls, release = [], threading.Event()

    def load() -> str:
        calls.append(1)
        assert release.wait(TIMEOUT_S)
        return "value"

    started = start_threads(lambda: flights.do("k", load))
    wait_for(lambda: flights.coalesced == THREADS - 1, "every caller to join the flight")
    release.set()
    assert join(started) == ["value"] * THREADS
    assert len(calls) == 1


def test_an_exception_reaches_every_waiter_and_the_next_call_retries() -> None:
    flights: Flights[str] = Flights()
    release = threading.Event()
    boom = RuntimeError("origin down")

    def failing() -> str:
        assert release.wait(TIMEOUT_S)
        raise boom

    started = start_threads(lambda: flights.do("k", failing), 8)
    wait_for(lambda: flights.coalesced == 7, "every caller to join the flight")
    release.set()
    assert join(started) == [boom] * 8
    assert flights.do("k", lambda: "second try") == "second try"


def test_different_keys_load_independently() -> None:
    flights: Flights[str] = Flights()
    assert flights.do("a", lambda: "A") == "A"
    assert flights.do("b", lambda: "B") == "B"
    assert flights.coalesced == 0


async def test_coroutines_share_one_load() -> None:
    flights: AsyncFlights[int] = AsyncFlights()
    calls, release = [], asyncio.Event()

    async def load() -> int:
        calls.append(1)
        await release.wait()
        return 42

    tasks = [asyncio.create_task(flights.do("k", load)) for _ in range(THREADS)]
    await asyncio.sleep(0)
    assert len(flights) == 1
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT_S) == [42] * THREADS
    assert len(calls) == 1
    assert flights.coalesced == THREADS - 1
    assert len(flights) == 0


async def test_an_async_exception_reaches_every_waiter_and_the_next_call_retries() -> None:
    flights: AsyncFlights[int] = AsyncFlights()
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise KeyError("gone")

    tasks = [asyncio.create_task(flights.do("k", failing)) for _ in range(4)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, KeyError) for r in results)

    async def ok() -> int:
        return 7

    assert await flights.do("k", ok) == 7


async def test_cancelling_the_first_caller_does_not_cancel_the_others() -> None:
    """The first caller's cancellation (a timeout, a client gone) used to reach every waiter."""
    flights: AsyncFlights[int] = AsyncFlights()
    started, release = asyncio.Event(), asyncio.Event()

    async def load() -> int:
        started.set()
        await release.wait()
        return 42

    first = asyncio.create_task(flights.do("k", load))
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    second = asyncio.create_task(flights.do("k", load))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await asyncio.wait_for(second, TIMEOUT_S) == 42


async def test_a_load_whose_callers_all_left_still_finishes() -> None:
    flights: AsyncFlights[int] = AsyncFlights()
    release, finished = asyncio.Event(), asyncio.Event()

    async def load() -> int:
        await release.wait()
        finished.set()
        return 1

    caller = asyncio.create_task(flights.do("k", load))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    await asyncio.wait_for(finished.wait(), TIMEOUT_S)
    await asyncio.sleep(0)
    assert len(flights) == 0
