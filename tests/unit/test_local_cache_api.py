"""LocalCache's API beyond get and set, on a ManualClock: add, exists, touch, the many-key
calls, decr, getver and cas, the namespace of key_prefix and version, clear, and
memoize's invalidate and refresh (tests/client/test_api.py runs the shared contract)."""

from __future__ import annotations

import asyncio
import math

import pytest

from geocache import LocalCache, ManualClock
from geocache.store.errors import NotAnInteger

NOW_MS = 1_700_000_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW_MS)


@pytest.fixture
def cache(clock: ManualClock) -> LocalCache:
    return LocalCache(clock=clock)


def test_add_only_when_missing_or_expired(cache: LocalCache, clock: ManualClock) -> None:
    assert cache.add("k", 1, ttl_s=1) is True
    assert cache.add("k", 2) is False and cache.get("k") == 1
    clock.advance(1000)
    assert cache.add("k", 3) is True and cache.get("k") == 3  # an expired key is missing


def test_exists_counts_a_stored_none(cache: LocalCache) -> None:
    cache.set("none", None)
    assert cache.exists("none") and not cache.exists("other")


def test_touch(clock: ManualClock) -> None:
    cache = LocalCache(clock=clock, default_ttl_s=60)
    cache.set("k", 1, ttl_s=1)
    assert cache.touch("k", 10) and cache.ttl("k") == 10
    assert cache.touch("k") and cache.ttl("k") == 60  # None: the default TTL
    assert LocalCache(clock=clock).touch("x") is False
    plain = LocalCache(clock=clock)
    plain.set("k", 1, ttl_s=5)
    assert plain.touch("k") and plain.ttl("k") == math.inf  # no default: never expires
    assert plain.touch("k", 0) and not plain.exists("k")
    assert plain.touch("missing", 5) is False


def test_many(cache: LocalCache, clock: ManualClock) -> None:
    cache.set_many({"a": 1, b"b": [2]}, ttl_s=2)
    assert cache.get_many(["a", b"b", "c"]) == {"a": 1, b"b": [2]}
    clock.advance(2000)
    assert cache.get_many(["a", b"b"]) == {}
    cache.set_many({"a": 1, "b": 2})
    assert cache.delete_many(["a", "b", "c"]) == 2
    with pytest.raises(ValueError):
        cache.set_many({"a": 1}, ttl_s=0)


def test_decr(cache: LocalCache) -> None:
    assert cache.decr("n") == -1 and cache.decr("n", 4) == -5 and cache.incr("n", 5) == 0
    cache.set("s", "x")
    with pytest.raises(NotAnInteger):
        cache.decr("s")
    with pytest.raises(TypeError):
        cache.decr("n", True)


def test_getver_and_cas(cache: LocalCache, clock: ManualClock) -> None:
    assert cache.getver("k") is None and cache.cas("k", 5, "x") is None
    v1 = cache.cas("k", 0, "a", ttl_s=3)
    assert v1 is not None and cache.getver("k") == v1 and cache.ttl("k") == 3
    v2 = cache.cas("k", v1, "b")
    assert v2 is not None and v2 > v1 and cache.get("k") == "b"
    assert cache.cas("k", v1, "c") is None and cache.get("k") == "b"
    with pytest.raises(TypeError):
        cache.cas("k", "1", "x")  # type: ignore[arg-type]


def test_namespace_and_clear(clock: ManualClock) -> None:
    v1 = LocalCache(clock=clock, key_prefix="app:", version=1)
    v1.set("user:1", "a")
    v1.set("user:2", "b")
    v1.set("item:1", "c")
    assert v1.get("user:1") == "a" and "user:1" in v1
    assert v1.clear("user:") == 2 and v1.get_many(["user:1", "item:1"]) == {"item:1": "c"}
    assert v1.clear() == 1 and len(v1) == 0
    whole = LocalCache(clock=clock)
    whole.set_many({"a": 1, "b": 2})
    assert whole.clear() == 2 and len(whole) == 0


def test_memoize_invalidate_and_refresh(cache: LocalCache) -> None:
    runs: list[int] = []

    @cache.memoize()
    def f(x: int) -> int:
        runs.append(x)
        return x * len(runs)

    assert f(2) == f(2) == 2
    assert f.invalidate(2) is True and f.invalidate(2) is False
    assert f(2) == 4 and f.refresh(2) == 6 and f(2) == 6
    assert f.invalidate(3) is False and runs == [2, 2, 2]


def test_memoize_invalidate_and_refresh_async(cache: LocalCache) -> None:
    runs = 0

    @cache.memoize(namespace="a")
    async def g(x: int) -> tuple[int, int]:
        nonlocal runs
        runs += 1
        return (x, runs)

    async def main() -> None:
        assert await g(1) == await g(1) == (1, 1)
        assert await g.invalidate(1) is True
        assert await g(1) == (1, 2)
        assert await g.refresh(1) == (1, 3) and await g(1) == (1, 3)

    asyncio.run(main())


def test_memoize_of_a_method_takes_self_in_invalidate(cache: LocalCache) -> None:
    class Account:
        def __init__(self, n: int) -> None:
            self.n, self.calls = n, 0

        def __repr__(self) -> str:
            return f"Account({self.n})"

        @cache.memoize()
        def balance(self) -> int:
            self.calls += 1
            return self.n * 10 + self.calls

    acct = Account(1)
    assert acct.balance() == acct.balance() == 11
    assert Account.balance.invalidate(acct) is True  # self is an argument like any
    assert acct.balance() == 12


def test_typos_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown serializer 'pickel'"):
        LocalCache(serializer="pickel")  # type: ignore[arg-type]
