"""memoize and get_or_set over the network: keys, once-only computation, outages."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from client.regions import addr
from geocache import AsyncClient, Client
from geocache.memoize import KeyMaker
from support.procs import SRC_DIR, ServerProcess, free_port

pytestmark = pytest.mark.timeout(30)

THREADS = 16
TASKS = 50
# How long a computation takes in the concurrency tests (seconds): long enough that
# every caller arrives while the first is still computing.
SLOW_S = 0.3


@pytest.fixture
def ns() -> str:
    """A namespace of its own for each test: the node is shared by the module."""
    return f"ns{uuid.uuid4().hex[:8]}"


def stored_keys(solo: ServerProcess, ns: str) -> list[bytes]:
    with redis.Redis(host=solo.host, port=solo.port, socket_timeout=5) as r:
        return sorted(r.scan_iter(match=f"{ns}:*"))


def test_positional_keyword_and_default_arguments(
    client: Client, solo: ServerProcess, ns: str
) -> None:
    calls: list[tuple[object, ...]] = []

    @client.memoize(namespace=ns)
    def area(w: Any, h: Any = 2, *, unit: str = "m") -> str:
        calls.append((w, h, unit))
        return f"{w * h}{unit}"

    assert area(3) == area(3, 2) == area(w=3) == area(3, h=2) == area(h=2, w=3) == "6m"
    assert area(3, unit="m") == "6m" and len(calls) == 1
    assert area(3, 5) == "15m" and area(3, unit="cm") == "6cm" and area("3") == "33m"
    assert area(3.0) == "6.0m"  # 3.0 is not 3
    assert len(calls) == 5
    keys = stored_keys(solo, ns)
    assert len(keys) == 5
    prefix = f"{ns}:{area.__module__}.{area.__qualname__}:".encode()
    assert all(k.startswith(prefix) for k in keys)
    assert KeyMaker(area.__wrapped__, ns)((3,), {}) in keys  # type: ignore[attr-defined]


def test_methods_key_on_their_instance(client: Client, ns: str) -> None:
    calls: list[int] = []

    @dataclasses.dataclass(frozen=True)
    class Account:
        id: int

        @client.memoize(namespace=ns)
        def balance(self, currency: str = "EUR") -> str:
            calls.append(self.id)
            return f"{self.id} {currency}"

    assert Account(1).balance() == Account(1).balance("EUR") == "1 EUR"
    assert Account(2).balance() == "2 EUR" and Account(1).balance("USD") == "1 USD"
    assert calls == [1, 2, 1]


def test_key_builder_and_ttl(client: Client, solo: ServerProcess, ns: str) -> None:
    @client.memoize(ttl_s=30, key_builder=lambda user_id, **_: f"user:{user_id}", namespace=ns)
    def profile(user_id: int, verbose: bool = False) -> dict[str, int]:
        return {"id": user_id}

    assert profile(7) == profile(7, verbose=True) == {"id": 7}
    assert stored_keys(solo, ns) == [f"{ns}:user:7".encode()]
    with redis.Redis(host=solo.host, port=solo.port, socket_timeout=5) as r:
        assert r.get(f"{ns}:user:7") == b'\xc1json:{"id":7}'  # marked: a serializer's
        assert 29_000 < r.pttl(f"{ns}:user:7") <= 30_000


def test_a_stored_none_is_a_hit(client: Client, ns: str) -> None:
    calls: list[int] = []

    @client.memoize(namespace=ns)
    def nothing(x: int) -> None:
        calls.append(x)

    assert nothing(1) is None and nothing(1) is None and calls == [1]


MODULE = """
import sys
from geocache import Client

def lookup(ids, options, flag=False):
    with open(sys.argv[2], "a") as log:
        log.write("computed\\n")
    return sorted(ids)

with Client([sys.argv[1]]) as client:
    cached = client.memoize(namespace="xproc")(lookup)
    print(cached({3, 1, 2}, {"b": [1], "a": (2,)}))
"""


def test_keys_are_stable_across_processes(tmp_path: Path, solo: ServerProcess) -> None:
    """Another process, another hash seed (set and dict orders): the same key."""
    script, log = tmp_path / "memo_module.py", tmp_path / "computed.log"
    script.write_text(MODULE)
    outputs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(SRC_DIR)}
        result = subprocess.run(
            [sys.executable, str(script), addr(solo), str(log)],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
            check=True,
        )
        outputs.append(result.stdout.strip())
    assert outputs == ["[1, 2, 3]"] * 3
    assert log.read_text().count("computed") == 1


def test_threads_compute_a_missing_key_once(client: Client, ns: str) -> None:
    calls: list[int] = []
    start = threading.Barrier(THREADS, timeout=10)

    @client.memoize(namespace=ns)
    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(SLOW_S)
        return x * 10

    results: list[object] = []

    def run() -> None:
        start.wait()
        results.append(slow(4))

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == [40] * THREADS and calls == [4]


def test_get_or_set_in_threads(client: Client, ns: str) -> None:
    calls: list[int] = []

    def load() -> str:
        calls.append(1)
        time.sleep(SLOW_S)
        return "loaded"

    threads = [
        threading.Thread(target=client.get_or_set, args=(f"{ns}:gos", load, 60))
        for _ in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert calls == [1] and client.get(f"{ns}:gos") == "loaded"


async def test_tasks_compute_a_missing_key_once(solo: ServerProcess, ns: str) -> None:
    calls: list[int] = []
    async with AsyncClient([addr(solo)]) as client:

        @client.memoize(namespace=ns)
        async def fetch(x: int, scale: int = 2) -> int:
            calls.append(x)
            await asyncio.sleep(SLOW_S)
            return x * scale

        results = await asyncio.gather(*(fetch(5) for _ in range(TASKS)))
        assert results == [10] * TASKS and calls == [5]
        assert await fetch(5, scale=2) == 10 and await fetch(x=5) == 10 and calls == [5]
        assert await fetch(5, 3) == 15 and calls == [5, 5]


async def test_a_sync_client_memoizes_async_functions(client: Client, ns: str) -> None:
    calls: list[int] = []

    @client.memoize(namespace=ns)
    async def fetch(x: int) -> list[int]:
        calls.append(x)
        await asyncio.sleep(SLOW_S)
        return [x]

    results = await asyncio.gather(*(fetch(1) for _ in range(TASKS)))
    assert results == [[1]] * TASKS and calls == [1]
    assert await fetch(2) == [2] and calls == [1, 2]


async def test_async_get_or_set_takes_plain_and_async_loaders(solo: ServerProcess, ns: str) -> None:
    async def load() -> int:
        return 2

    async with AsyncClient([addr(solo)]) as client:
        assert await client.get_or_set(f"{ns}:plain", lambda: 1) == 1
        assert await client.get_or_set(f"{ns}:async", load) == 2
        assert await client.get_or_set(f"{ns}:plain", lambda: 9) == 1


async def test_async_memoize_wants_async_functions(solo: ServerProcess) -> None:
    async with AsyncClient([addr(solo)]) as client:
        with pytest.raises(TypeError):
            client.memoize()(lambda x: x)


def test_an_unreachable_cache_computes_quickly_with_on_error_miss(ns: str) -> None:
    calls: list[int] = []
    with Client([f"127.0.0.1:{free_port()}"], on_error="miss") as client:

        @client.memoize(namespace=ns)
        def square(x: int) -> int:
            calls.append(x)
            return x * x

        started = time.monotonic()
        assert [square(3) for _ in range(20)] == [9] * 20
        assert time.monotonic() - started < 0.5
        assert calls == [3] * 20  # nothing to cache in: computed each time
