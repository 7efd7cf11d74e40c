"""LocalCache: the in-process cache, its bad-input errors, its threads and its memoize."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from geocache import LocalCache, ManualClock
from geocache.store import TooLarge, entry_size
from geocache.store.bytespath import BytesPath
from geocache.store.errors import NotAnInteger, Overflow

NOW_MS = 1_700_000_000_000
THREADS = 32
TIMEOUT_S = 10


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW_MS)


@pytest.fixture
def cache(clock: ManualClock) -> LocalCache:
    return LocalCache(clock=clock)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


# -- the basics ------------------------------------------------------------------------


def test_get_set_delete(cache: LocalCache) -> None:
    assert cache.get("k") is None
    assert cache.get("k", "dflt") == "dflt"
    cache.set("k", {"any": ["picklable", 1]})
    assert cache.get("k") == {"any": ["picklable", 1]}
    assert cache.get(b"k") == {"any": ["picklable", 1]}  # str keys are UTF-8 bytes
    cache.set("none", None)
    assert cache.get("none", "dflt") is None  # a stored None is not a miss
    assert "k" in cache and len(cache) == 2
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert "k" not in cache


def test_ttl_and_expiry(cache: LocalCache, clock: ManualClock) -> None:
    cache.set("k", 1, ttl_s=1.5)
    assert cache.ttl("k") == 1.5
    assert cache.ttl("missing") is None
    cache.set("forever", 1)
    assert cache.ttl("forever") == math.inf
    clock.advance(1499)
    assert cache.get("k") == 1
    clock.advance(1)
    assert cache.get("k") is None
    cache.set("tiny", 1, ttl_s=0.0001)  # rounds up to 1 ms, never to 0
    assert cache.ttl("tiny") == 0.001


@pytest.mark.parametrize("serializer", ["auto", "raw"])
def test_bytes_take_the_compiled_path_and_everything_else_the_checked_one(
    serializer: str, clock: ManualClock
) -> None:
    cache = LocalCache(serializer=serializer, clock=clock)  # type: ignore[arg-type]
    assert isinstance(cache.get.__self__, BytesPath)
    assert isinstance(cache.set.__self__, BytesPath)
    cache.set(b"k", b"v")
    assert cache.get(b"k") == b"v" and cache.get("k") == b"v"
    cache.set(b"odd", b"\x80\x05.")  # pickle's first opcode: `auto` pickles it, `raw` not
    assert cache.get(b"odd") == b"\x80\x05."
    assert cache.get(b"missing") is None and cache.get(b"missing", 7) == 7
    cache.set(b"short", b"v", ttl_s=1)  # a TTL takes the checked path, and holds
    clock.advance(1000)
    assert cache.get(b"short") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (3, 3)  # misses are counted on the locked path
    with pytest.raises(TypeError, match="cache keys are str or bytes, not int"):
        cache.get(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache keys are str or bytes, not int"):
        cache.set(5, b"v")  # type: ignore[arg-type]
    if serializer == "auto":
        cache.set(b"obj", {"a": 1})
        assert cache.get(b"obj") == {"a": 1}
        cache.set(b"ba", bytearray(b"x"))
        assert cache.get(b"ba") == bytearray(b"x") and type(cache.get(b"ba")) is bytearray
    else:
        with pytest.raises(TypeError):
            cache.set(b"obj", {"a": 1})


def test_a_namespace_or_a_default_ttl_keeps_the_checked_path(clock: ManualClock) -> None:
    for cache in (
        LocalCache(key_prefix="app:", clock=clock),
        LocalCache(default_ttl_s=5, clock=clock),
        LocalCache(serializer="json", clock=clock),
    ):
        assert not isinstance(getattr(cache.get, "__self__", None), BytesPath)
        cache.set(b"k", b"v")
        assert cache.get(b"k") == b"v"


def test_default_ttl_and_override(clock: ManualClock) -> None:
    cache = LocalCache(default_ttl_s=10, clock=clock)
    cache.set("default", 1)
    cache.set("own", 1, ttl_s=60)
    assert (cache.ttl("default"), cache.ttl("own")) == (10, 60)


def test_expire(cache: LocalCache, clock: ManualClock) -> None:
    cache.set("k", "v")
    assert cache.expire("k", 2) is True
    assert cache.ttl("k") == 2
    assert cache.expire("missing", 2) is False
    assert cache.expire("k", 0) is True  # zero or less deletes, as Redis's EXPIRE
    assert "k" not in cache
    cache.set("k", "v")
    assert cache.expire("k", -5) is True
    assert cache.get("k") is None
    assert cache.expire("k", -5) is False


@pytest.mark.parametrize("ttl_s", [math.inf, math.nan])
def test_expire_refuses_infinite_and_nan(cache: LocalCache, ttl_s: float) -> None:
    cache.set("k", "v", ttl_s=5)
    with pytest.raises(ValueError, match="positive, finite number of seconds"):
        cache.expire("k", ttl_s)
    assert cache.ttl("k") == 5


def test_the_default_serializer_stores_bytes_as_they_are(cache: LocalCache) -> None:
    value = b"v" * 100
    cache.set("k", value)
    assert cache.get("k") == value
    assert cache.stats().bytes == entry_size(b"k", value)  # not a pickle's size
    cache.set("obj", {"a": 1})
    assert cache.get("obj") == {"a": 1}
    cache.set("odd", b"\x80\x05.")  # looks like a pickle: still comes back as bytes
    assert cache.get("odd") == b"\x80\x05."


def test_reads_without_the_lock_survive_concurrent_writes_and_evictions() -> None:
    """Readers take no lock while writers delete, overwrite and evict the same keys:
    no reader fails, and each read sees a value that was written or nothing."""
    cache = LocalCache(max_keys=8)
    keys = [b"k%d" % i for i in range(16)]
    written = {b"v%d" % i for i in range(4)}
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(20_000):
                for key in keys:
                    got = cache.get(key)
                    assert got is None or got in written
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    def write() -> None:
        try:
            for i in range(20_000):
                key = keys[i % len(keys)]
                cache.delete(key) if i % 5 == 0 else cache.set(key, b"v%d" % (i % 4))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=f) for f in (read, read, write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 8


def test_incr_with_the_default_serializer(cache: LocalCache) -> None:
    assert cache.incr("hits") == 1
    assert cache.incr("hits", 10) == 11
    assert cache.get("hits") == 11  # readable back: was an UnpicklingError
    cache.set("n", 5, ttl_s=30)
    assert cache.incr("n", -7) == -2  # was NotAnInteger: set stores pickle, not text
    assert cache.get("n") == -2
    assert cache.ttl("n") == 30  # the TTL is kept


def test_incr_with_raw_and_json_uses_decimal_text(clock: ManualClock) -> None:
    raw = LocalCache(serializer="raw", clock=clock)
    raw.set("n", b"41")
    assert raw.incr("n") == 42
    assert raw.get("n") == b"42"
    json = LocalCache(serializer="json", clock=clock)
    json.set("n", 41)
    assert json.incr("n") == 42
    assert json.get("n") == 42


@pytest.mark.parametrize("value", ["5", 5.0, True, 1 << 63, [1]])
def test_incr_on_a_non_integer_is_an_error_and_changes_nothing(
    cache: LocalCache, value: object
) -> None:
    cache.set("k", value)
    with pytest.raises(NotAnInteger):
        cache.incr("k")
    assert cache.get("k") == value


def test_incr_past_64_bits_is_an_error(cache: LocalCache) -> None:
    cache.set("k", (1 << 63) - 1)
    with pytest.raises(Overflow):
        cache.incr("k")
    assert cache.get("k") == (1 << 63) - 1
    raw = LocalCache(serializer="raw")
    raw.set("k", b"9223372036854775807")
    with pytest.raises(Overflow):
        raw.incr("k")


def test_stats_count_hits_misses_and_bytes(cache: LocalCache) -> None:
    cache.set("a", 1)
    cache.get("a")
    cache.get("b")
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.keys, stats.evictions) == (1, 1, 1, 0)
    assert stats.bytes > 0 and stats.tombstones == 0


def test_clear_and_expire_cycle(cache: LocalCache, clock: ManualClock) -> None:
    for i in range(10):
        cache.set(f"k{i}", i, ttl_s=1)
    clock.advance(1100)
    assert len(cache) == 10  # expired, not yet reclaimed
    assert cache.expire_cycle(4) == 4
    assert cache.expire_cycle() == 6
    assert len(cache) == 0
    cache.set("x", 1)
    cache.clear()
    assert len(cache) == 0


def test_writes_from_many_threads_get_distinct_versions(cache: LocalCache) -> None:
    """The HLC is not thread-safe by itself: LocalCache's lock must serialize every write."""
    start = threading.Barrier(8, timeout=TIMEOUT_S)

    def write(thread_no: int) -> None:
        start.wait()
        for i in range(500):
            cache.set(f"{thread_no}:{i}", i)
            if i % 50 == 0:
                cache.incr(f"{thread_no}:counter")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    versions = [entry[2] for _, entry in cache._store.items()]  # white box
    assert len(versions) == 8 * 501
    assert len(set(versions)) == len(versions)


def test_limits_evict_least_recently_used(clock: ManualClock) -> None:
    cache = LocalCache(max_keys=3, clock=clock)
    for key in "abc":
        cache.set(key, key)
    cache.get("a")
    cache.set("d", "d")
    assert [k for k in "abcd" if k in cache] == ["a", "c", "d"]
    assert cache.stats().evictions == 1


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [1, 1.5, None, ("a",), object()])
def test_wrong_key_types_say_what_is_accepted(cache: LocalCache, key: Any) -> None:
    name = type(key).__name__
    for call in (
        lambda: cache.get(key),
        lambda: cache.set(key, 1),
        lambda: cache.delete(key),
        lambda: cache.ttl(key),
        lambda: cache.incr(key),
        lambda: cache.expire(key, 1),
        lambda: cache.get_or_set(key, lambda: 1),
        lambda: key in cache,
    ):
        with pytest.raises(TypeError, match=f"cache keys are str or bytes, not {name}"):
            call()


def test_bytearray_and_memoryview_keys_are_accepted(cache: LocalCache) -> None:
    cache.set(bytearray(b"k"), 1)  # type: ignore[arg-type]
    assert cache.get(memoryview(b"k")) == 1  # type: ignore[arg-type]


def test_wrong_value_and_argument_types(clock: ManualClock) -> None:
    raw = LocalCache(serializer="raw", clock=clock)
    with pytest.raises(TypeError, match="the raw serializer stores bytes, not str"):
        raw.set("k", "text")
    with pytest.raises(TypeError, match="ttl_s is a number of seconds, not str"):
        raw.set("k", b"v", ttl_s="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ttl_s is a number of seconds, not bool"):
        raw.set("k", b"v", ttl_s=True)
    with pytest.raises(TypeError, match="ttl_s is a number of seconds, not str"):
        raw.expire("k", "5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="delta is an int, not float"):
        raw.incr("k", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LocalCache(default_ttl_s="1")  # type: ignore[arg-type]
    assert len(raw) == 0


@pytest.mark.parametrize("ttl_s", [0, -1, -0.001, math.nan, math.inf])
def test_a_ttl_of_zero_or_less_on_set_is_an_error(cache: LocalCache, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="positive, finite number of seconds"):
        cache.set("k", "v", ttl_s=ttl_s)
    assert "k" not in cache
    with pytest.raises(ValueError):
        LocalCache(default_ttl_s=ttl_s)


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes and max_keys"):
        LocalCache(max_bytes=-1)


def test_a_value_larger_than_max_bytes_stores_and_evicts_nothing(clock: ManualClock) -> None:
    cache = LocalCache(max_bytes=10_000, serializer="raw", clock=clock)
    cache.set("small", b"x" * 100)
    cache.set("other", b"y" * 100)
    before = cache.stats()
    with pytest.raises(TooLarge, match=r"larger than the limit of 10000 bytes") as error:
        cache.set("big", b"z" * 10_000)
    assert error.value.limit == 10_000 and error.value.size > 10_000
    with pytest.raises(TooLarge):
        cache.set("small", b"z" * 10_000)  # not even over a key it would replace
    assert cache.stats() == before
    assert cache.get("small") == b"x" * 100 and cache.get("other") == b"y" * 100


# -- get_or_set -------------------------------------------------------------------------


def test_get_or_set_stores_the_loaded_value(cache: LocalCache) -> None:
    assert cache.get_or_set("k", lambda: [1, 2], ttl_s=5) == [1, 2]
    assert cache.ttl("k") == 5
    assert cache.get_or_set("k", lambda: pytest.fail("cached: no load")) == [1, 2]


def test_get_or_set_checks_the_ttl_before_loading(cache: LocalCache) -> None:
    calls = []
    with pytest.raises(ValueError):
        cache.get_or_set("k", lambda: calls.append(1), ttl_s=-1)
    assert calls == []


def race_get_or_set(
    cache: LocalCache, loader: Callable[[], Any]
) -> tuple[list[threading.Thread], list[object]]:
    """THREADS callers of one missing key, released together; their results or errors."""
    results: list[object] = [None] * THREADS
    start = threading.Barrier(THREADS, timeout=TIMEOUT_S)

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = cache.get_or_set("k", loader)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    # Hold the load until every other caller is waiting on it: the race is then real.
    wait_for(lambda: cache._flights.coalesced >= THREADS - 1, "all callers to wait")
    return threads, results  # joined by the caller after releasing the loader


def test_get_or_set_under_32_threads_loads_once(cache: LocalCache) -> None:
    calls, release = [], threading.Event()

    def loader() -> str:
        calls.append(threading.get_ident())
        assert release.wait(TIMEOUT_S)
        return "loaded"

    threads, results = race_get_or_set(cache, loader)
    release.set()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert results == ["loaded"] * THREADS
    assert len(calls) == 1
    assert cache.get("k") == "loaded"


def test_get_or_set_errors_reach_every_waiter_and_the_next_call_retries(
    cache: LocalCache,
) -> None:
    release, error = threading.Event(), ConnectionError("origin down")

    def failing() -> str:
        assert release.wait(TIMEOUT_S)
        raise error

    threads, results = race_get_or_set(cache, failing)
    release.set()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert results == [error] * THREADS
    assert "k" not in cache
    assert cache.get_or_set("k", lambda: "second try") == "second try"


# -- memoize ----------------------------------------------------------------------------


def test_memoize_plain_function(cache: LocalCache) -> None:
    calls: list[tuple[Any, ...]] = []

    @cache.memoize(ttl_s=60)
    def area(width: int, height: int = 2, *, unit: str = "m") -> str:
        calls.append((width, height, unit))
        return f"{width * height}{unit}"

    assert area(3) == "6m"
    assert area(3, 2) == area(width=3) == area(3, height=2, unit="m") == "6m"
    assert len(calls) == 1
    assert area(3, 3) == "9m" and area(3, unit="cm") == "6cm" and area("3") == "33m"
    assert len(calls) == 4
    assert area.__name__ == "area"  # functools.wraps


def test_memoize_ttl_expires_results(cache: LocalCache, clock: ManualClock) -> None:
    calls = []

    @cache.memoize(ttl_s=1)
    def now() -> int:
        calls.append(1)
        return len(calls)

    assert now() == now() == 1
    clock.advance(1000)
    assert now() == 2


def test_memoize_methods_key_on_self(cache: LocalCache) -> None:
    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name
            self.calls = 0

        def __repr__(self) -> str:
            return f"Repo({self.name!r})"

        @cache.memoize()
        def find(self, ident: int) -> str:
            self.calls += 1
            return f"{self.name}/{ident}"

    a, b = Repo("a"), Repo("b")
    assert a.find(1) == a.find(1) == "a/1"
    assert b.find(1) == "b/1"
    assert (a.calls, b.calls) == (1, 1)


def test_memoize_key_builder_and_namespace(cache: LocalCache) -> None:
    @cache.memoize(key_builder=lambda user_id, verbose=False: f"user:{user_id}", namespace="v1")
    def load_user(user_id: int, verbose: bool = False) -> dict[str, Any]:
        return {"id": user_id, "verbose": verbose}

    assert load_user(7, verbose=True) == {"id": 7, "verbose": True}
    assert load_user(7) == {"id": 7, "verbose": True}  # the builder ignores verbose
    assert cache.get("v1:user:7") == {"id": 7, "verbose": True}


def test_memoize_namespaces_keep_functions_apart(cache: LocalCache) -> None:
    @cache.memoize(namespace="one")
    def f(x: int) -> str:
        return "one"

    g = cache.memoize(namespace="two")(f.__wrapped__)  # type: ignore[attr-defined]
    assert (f(1), g(1)) == ("one", "one")
    assert len(cache) == 2


def test_memoize_does_not_cache_exceptions(cache: LocalCache) -> None:
    attempts = []

    @cache.memoize()
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise TimeoutError("first try fails")
        return "ok"

    with pytest.raises(TimeoutError):
        flaky()
    assert flaky() == "ok"
    assert flaky() == "ok"
    assert len(attempts) == 2


def test_memoize_refuses_a_bad_ttl_at_decoration(cache: LocalCache) -> None:
    with pytest.raises(ValueError):
        cache.memoize(ttl_s=0)


async def test_memoize_async_function(cache: LocalCache) -> None:
    calls = []

    @cache.memoize(ttl_s=5)
    async def fetch(ident: int, *, fresh: bool = False) -> str:
        calls.append(ident)
        await asyncio.sleep(0)
        return f"item-{ident}"

    assert await fetch(1) == await fetch(ident=1) == await fetch(1, fresh=False) == "item-1"
    assert await fetch(2) == "item-2"
    assert calls == [1, 2]
    assert asyncio.iscoroutinefunction(fetch)


async def test_concurrent_async_callers_run_the_function_once(cache: LocalCache) -> None:
    calls, release = [], asyncio.Event()

    @cache.memoize()
    async def slow(ident: int) -> str:
        calls.append(ident)
        await release.wait()
        return f"done-{ident}"

    callers = [asyncio.create_task(slow(1)) for _ in range(THREADS)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*callers), TIMEOUT_S)
    assert results == ["done-1"] * THREADS
    assert calls == [1]
    assert await slow(1) == "done-1" and calls == [1]


async def test_async_memoize_errors_reach_all_callers_and_are_not_cached(
    cache: LocalCache,
) -> None:
    attempts, release = [], asyncio.Event()

    @cache.memoize()
    async def flaky() -> str:
        attempts.append(1)
        await release.wait()
        if len(attempts) == 1:
            raise LookupError("first try fails")
        return "ok"

    callers = [asyncio.create_task(flaky()) for _ in range(4)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert await flaky() == "ok"
    assert len(attempts) == 2


def test_memoize_under_threads_runs_once(cache: LocalCache) -> None:
    calls, release = [], threading.Event()

    @cache.memoize()
    def load(ident: int) -> int:
        calls.append(ident)
        assert release.wait(TIMEOUT_S)
        return ident * 10

    results: list[int] = []
    start = threading.Barrier(8, timeout=TIMEOUT_S)

    def call() -> None:
        start.wait()
        results.append(load(4))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: cache._flights.coalesced >= 7, "all callers to wait")
    release.set()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert results == [40] * 8 and calls == [4]
