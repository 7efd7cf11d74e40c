"""The aiocache backend against a real node process: aiocache's API, its serializers, its
`cached` decorator and its optimistic lock, and what other clients read of its values."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from aiocache import cached
from aiocache.lock import OptimisticLock, OptimisticLockError
from aiocache.serializers import JsonSerializer, PickleSerializer

from client.regions import addr
from geocache.contrib.aiocache import GeocacheCache
from support.procs import ServerProcess, start_geocache

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_geocache(tmp_path_factory.mktemp("aiocache"), ["--log-level", "warning"])
    yield server
    server.stop()


@pytest.fixture
async def cache(node: ServerProcess) -> AsyncIterator[GeocacheCache]:
    cache = GeocacheCache(seeds=[addr(node)], namespace="aio:")
    await cache.clear()
    yield cache
    await cache.close()


async def test_the_api(cache: GeocacheCache, node: ServerProcess) -> None:
    assert await cache.get("k") is None and await cache.get("k", default=1) == 1
    assert await cache.set("k", "v", ttl=30) is True
    assert await cache.get("k") == "v" and await cache.exists("k")
    with pytest.raises(ValueError, match="already exists"):
        await cache.add("k", "w")
    assert await cache.add("new", "w") is True
    assert await cache.multi_set([("a", "1"), ("b", "2")]) is True
    assert await cache.multi_get(["a", "zz", "b"]) == ["1", None, "2"]
    assert await cache.increment("n", 5) == 5 and await cache.increment("n", -2) == 3
    assert await cache.expire("k", 100) is True and await cache.expire("a", 0) is True
    with redis.Redis(host=node.host, port=node.port) as r:
        assert r.get("aio:new") == b"w"  # aiocache's strings, readable by anyone
        assert 99_000 < r.pttl("aio:k") <= 100_000 and r.pttl("aio:a") == -1
    assert await cache.delete("k") == 1 and await cache.delete("k") == 0
    assert await cache.clear() is True and await cache.multi_get(["a", "b"]) == [None, None]


async def test_serializers(node: ServerProcess) -> None:
    for serializer, value in ((JsonSerializer(), {"a": [1]}), (PickleSerializer(), {1, 2})):
        cache = GeocacheCache(seeds=addr(node), serializer=serializer, namespace="aios:")
        try:
            await cache.set("v", value)
            assert await cache.get("v") == value
        finally:
            await cache.close()


async def test_clear_keeps_other_namespaces(node: ServerProcess) -> None:
    one = GeocacheCache(seeds=addr(node), namespace="aio1:")
    two = GeocacheCache(seeds=addr(node), namespace="aio2:")
    try:
        await one.set("k", "1")
        await two.set("k", "2")
        await one.clear()
        assert await one.get("k") is None and await two.get("k") == "2"
    finally:
        await one.close()
        await two.close()


async def test_optimistic_lock_is_getver_and_cas(cache: GeocacheCache) -> None:
    await cache.set("counter", "1")
    async with OptimisticLock(cache, "counter") as lock:
        await lock.cas("2")
    assert await cache.get("counter") == "2"
    async with OptimisticLock(cache, "counter") as lock:
        await cache.set("counter", "changed meanwhile")
        with pytest.raises(OptimisticLockError):
            await lock.cas("3")
    async with OptimisticLock(cache, "fresh") as lock:  # missing: only if still missing
        await lock.cas("first")
    assert await cache.get("fresh") == "first"


async def test_the_cached_decorator(node: ServerProcess) -> None:
    calls = 0

    @cached(
        cache=GeocacheCache,
        seeds=[addr(node)],
        namespace="aiodec:",
        ttl=60,
        serializer=JsonSerializer(),
    )
    async def double(x: int) -> int:
        nonlocal calls
        calls += 1
        return 2 * x

    try:
        assert await double(4) == 8 and await double(4) == 8 and calls == 1
    finally:
        await double.cache.close()
