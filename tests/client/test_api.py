"""One contract for the Python API, run against LocalCache, Client and AsyncClient (on a
node process), as cachetools runs one suite against every cache: each method, the
namespace of `key_prefix` and `version`, `clear`, `cas`/`getver`, and memoize's
`invalidate` and `refresh`. The network clients are typed here so that values compare
as LocalCache's do; test_interop.py checks what plain clients store."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from client.regions import addr
from geocache import AsyncClient, Client, LocalCache
from geocache.client.errors import CommandError
from geocache.store.errors import NotAnInteger
from support.procs import ServerProcess

pytestmark = pytest.mark.timeout(30)
KINDS = ["local", "client", "async"]
_names = itertools.count()


class Blocking:
    """An AsyncClient driven from plain code: each coroutine runs to its end on one
    event loop of its own, so the contract is written once."""

    def __init__(self, client: AsyncClient, runner: asyncio.Runner) -> None:
        self.client = client
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not inspect.iscoroutinefunction(method):
            return method
        return lambda *args, **kwargs: self._runner.run(method(*args, **kwargs))


Factory = Callable[..., Any]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, solo: ServerProcess) -> Iterator[Factory]:
    """`make(**options)`: a cache of this kind; network ones in a namespace of their own."""
    made: list[Any] = []
    runner = asyncio.Runner()

    def factory(**options: Any) -> Any:
        options.setdefault("key_prefix", f"api{next(_names)}:")
        if request.param == "local":
            return LocalCache(**options)
        if request.param == "client":
            made.append(Client([addr(solo)], typed=True, **options))
            return made[-1]
        client = AsyncClient([addr(solo)], typed=True, **options)
        made.append(client)
        return Blocking(client, runner)

    yield factory
    for cache in made:
        if isinstance(cache, Client):
            cache.close()
        else:
            runner.run(cache.close())
    runner.close()


@pytest.fixture
def cache(make: Factory) -> Any:
    return make()


def test_get_set_add_delete_exists(cache: Any) -> None:
    assert cache.get("k") is None and cache.get("k", "d") == "d"
    cache.set("k", {"a": [1, "x"]})
    assert cache.get("k") == {"a": [1, "x"]}
    assert cache.exists("k") and not cache.exists("nope")
    assert cache.add("k", "other") is False and cache.get("k") == {"a": [1, "x"]}
    assert cache.add("new", "v", ttl_s=30) is True and cache.get("new") == "v"
    assert 0 < cache.ttl("new") <= 30
    cache.set("none", None)
    assert cache.exists("none") and cache.get("none", "d") is None
    assert cache.delete("k") is True and cache.delete("k") is False
    assert not cache.exists("k")


def test_many(cache: Any) -> None:
    cache.set_many({"a": 1, "b": "two", b"c": b"three"}, ttl_s=60)
    assert cache.get_many(["a", "b", b"c", "d"]) == {"a": 1, "b": "two", b"c": b"three"}
    assert 0 < cache.ttl("b") <= 60
    assert cache.get_many(iter([])) == {}
    assert cache.delete_many(["a", "b", "d"]) == 2
    assert cache.get_many(["a", "b", b"c"]) == {b"c": b"three"}


def test_touch_and_expire(cache: Any) -> None:
    cache.set("k", 1, ttl_s=5)
    assert cache.touch("k", 100) and 5 < cache.ttl("k") <= 100
    assert cache.touch("k") and cache.ttl("k") == math.inf  # None: never expires
    assert cache.touch("nope") is False and cache.touch("nope", 10) is False
    assert cache.touch("k", 0) is True and not cache.exists("k")  # zero deletes
    cache.set("e", 1)
    assert cache.expire("e", 50) and 0 < cache.ttl("e") <= 50


def test_incr_decr(cache: Any) -> None:
    assert cache.incr("n") == 1 and cache.incr("n", 10) == 11
    assert cache.decr("n") == 10 and cache.decr("n", 20) == -10
    cache.set("m", 41)
    assert cache.incr("m") == 42 and cache.get("m") == 42
    cache.set("s", "text")
    with pytest.raises((CommandError, NotAnInteger)):
        cache.incr("s")
    with pytest.raises(TypeError):
        cache.decr("n", 1.5)


def test_getver_and_cas(cache: Any) -> None:
    assert cache.getver("k") is None
    first = cache.cas("k", 0, "v1")  # 0: only if missing
    assert isinstance(first, int) and first > 0
    assert cache.cas("k", 0, "again") is None  # it exists now
    assert cache.getver("k") == first
    second = cache.cas("k", first, "v2", ttl_s=30)
    assert second is not None and second > first and cache.get("k") == "v2"
    assert 0 < cache.ttl("k") <= 30
    assert cache.cas("k", first, "stale") is None and cache.get("k") == "v2"
    cache.set("k", "v3")  # any write moves the version on
    assert cache.getver("k") not in (None, first, second)


def test_key_prefix_and_version_namespace_every_key(make: Factory) -> None:
    v1 = make(key_prefix="ns:", version=1)
    v2 = make(key_prefix="ns:", version=2)
    other = make(key_prefix="other:")
    v1.set("k", "one")
    v2.set("k", "two")
    other.set("k", "three")
    assert (v1.get("k"), v2.get("k"), other.get("k")) == ("one", "two", "three")
    with pytest.raises(TypeError):
        make(version="1")


def test_clear_is_scoped_to_the_namespace_and_prefix(make: Factory) -> None:
    mine, theirs = make(), make()
    mine.set_many({"user:1": 1, "user:2": 2, "item:1": 3})
    theirs.set("user:1", "kept")
    assert mine.clear("user:") == 2
    assert mine.get_many(["user:1", "user:2", "item:1"]) == {"item:1": 3}
    assert mine.clear() == 1 and mine.get("item:1") is None
    assert theirs.get("user:1") == "kept"


def test_clear_with_glob_characters_in_the_prefix(make: Factory) -> None:
    odd, near = make(key_prefix="a*[b]?\\"), make(key_prefix="aX[b]?\\")
    odd.set("k", 1)
    near.set("k", 2)
    assert odd.clear() == 1
    assert near.get("k") == 2  # the prefix's * [ ] ? \\ are literal, not a pattern


def test_memoize_invalidate_and_refresh(cache: Any) -> None:
    calls: list[int] = []
    if isinstance(cache, Blocking):  # its memoize is for coroutines (tests below)
        with pytest.raises(TypeError, match="decorates async functions"):
            cache.memoize()(len)
        return

    @cache.memoize(ttl_s=60)
    def square(x: int, *, bonus: int = 0) -> str:
        calls.append(x)
        return f"{x * x + bonus}:{len(calls)}"

    assert square(3) == square(3) == "9:1"
    assert square.invalidate(3) is True and square.invalidate(3) is False
    assert square(3) == "9:2"
    assert square.refresh(3) == "9:3" and square(3) == "9:3"
    assert square(3, bonus=1) == "10:4" and square.invalidate(3, bonus=1)
    assert square(3) == "9:3"  # only that call's result went


def test_typos_in_options_fail(make: Factory) -> None:
    with pytest.raises(ValueError, match="unknown serializer"):
        make(serializer="jsn")


@pytest.mark.parametrize("kind", ["client", "async"])
def test_on_error_is_checked(kind: str, solo: ServerProcess) -> None:
    cls = Client if kind == "client" else AsyncClient
    with pytest.raises(ValueError, match='on_error is "raise" or "miss"'):
        cls([addr(solo)], on_error="ignore")  # type: ignore[arg-type]


async def test_async_memoize_invalidate_and_refresh(solo: ServerProcess) -> None:
    calls = 0
    async with AsyncClient([addr(solo)], key_prefix="amemo:") as client:

        @client.memoize()
        async def value(x: int) -> dict[str, int]:
            nonlocal calls
            calls += 1
            return {"x": x, "calls": calls}

        assert await value(1) == await value(1) == {"x": 1, "calls": 1}
        assert await value.invalidate(1) is True
        assert await value(1) == {"x": 1, "calls": 2}
        assert await value.refresh(1) == {"x": 1, "calls": 3}
        assert await value(1) == {"x": 1, "calls": 3}


async def test_memoize_of_coroutines_on_blocking_caches(solo: ServerProcess) -> None:
    with Client([addr(solo)], key_prefix="smemo:") as client:
        for cache in (client, LocalCache()):
            calls = 0

            @cache.memoize()
            async def word(x: int) -> str:
                nonlocal calls
                calls += 1
                return f"w{x}.{calls}"

            assert await word(1) == await word(1) == "w1.1"  # str stays str: stored typed
            assert await word.invalidate(1) is True
            assert await word.refresh(1) == "w1.2" and await word(1) == "w1.2"


def test_memoized_values_are_typed_even_on_a_plain_client(solo: ServerProcess) -> None:
    with Client([addr(solo)], key_prefix="plainmemo:") as client:

        @client.memoize()
        def name(x: int) -> str:
            return f"n{x}"

        assert name(1) == name(1) == "n1"  # not b"n1" from the cache
        assert client.get_or_set("gos", lambda: "text") == "text"
        assert client.get_or_set("gos", lambda: "other") == "text"
        with redis.Redis(host=solo.host, port=solo.port) as r:
            assert r.get("plainmemo:gos") == b"\xc1str:text"
