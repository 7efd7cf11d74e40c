"""The clients' `memoize` decorators: cache a function's results per arguments.

Keys come from memoize.py, shared with LocalCache: `namespace:module.qualname:digest`
of the bound arguments with defaults applied, so `f(1)`, `f(1, b=2)` (2 the default)
and `f(a=1)` share a key and `f(1, b=5)` does not; or from a `key_builder`.

One caller per process computes a missing key; concurrent callers wait for its result
(singleflight: threads through `get_or_set`, coroutines through AsyncFlights). Other
processes are not coordinated: each may compute the key once.

- `Client.memoize` decorates plain functions, and async functions too: their cache
  calls then run in a worker thread (`asyncio.to_thread`), so the event loop never
  blocks on the network.
- `AsyncClient.memoize` decorates async functions only.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

from geocache.memoize import KeyBuilder, KeyMaker, custom_key
from geocache.singleflight import AsyncFlights
from geocache.store.local import check_ttl_s

F = TypeVar("F", bound=Callable[..., Any])
MakeKey = Callable[[tuple[Any, ...], dict[str, Any]], bytes]
MISSING: Any = object()


class SyncCache(Protocol):
    def get(self, key: str | bytes, default: Any = None) -> Any: ...
    def set(self, key: str | bytes, value: Any, ttl_s: float | None = None) -> None: ...
    def get_or_set(
        self, key: str | bytes, fn: Callable[[], Any], ttl_s: float | None = None
    ) -> Any: ...


class AsyncCache(Protocol):
    async def get_or_set(
        self, key: str | bytes, fn: Callable[[], Any], ttl_s: float | None = None
    ) -> Any: ...


def key_maker(
    fn: Callable[..., Any], key_builder: KeyBuilder | None, namespace: str | None
) -> MakeKey:
    return custom_key(namespace, key_builder) if key_builder else KeyMaker(fn, namespace)


def sync_memoize(
    cache: SyncCache,
    ttl_s: float | None,
    key_builder: KeyBuilder | None,
    namespace: str | None,
) -> Callable[[F], F]:
    check_ttl_s(ttl_s)

    def decorate(fn: F) -> F:
        make_key = key_maker(fn, key_builder, namespace)
        if inspect.iscoroutinefunction(fn):
            return cast(F, _threaded_async(cache, fn, make_key, ttl_s))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return cache.get_or_set(make_key(args, kwargs), lambda: fn(*args, **kwargs), ttl_s)

        return cast(F, wrapper)

    return decorate


def async_memoize(
    cache: AsyncCache,
    ttl_s: float | None,
    key_builder: KeyBuilder | None,
    namespace: str | None,
) -> Callable[[F], F]:
    check_ttl_s(ttl_s)

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"AsyncClient.memoize decorates async functions; {fn!r} is not one"
                " (use Client.memoize for plain functions)"
            )
        make_key = key_maker(fn, key_builder, namespace)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await cache.get_or_set(
                make_key(args, kwargs), lambda: fn(*args, **kwargs), ttl_s
            )

        return cast(F, wrapper)

    return decorate


def _threaded_async(
    cache: SyncCache,
    fn: Callable[..., Awaitable[Any]],
    make_key: MakeKey,
    ttl_s: float | None,
) -> Callable[..., Awaitable[Any]]:
    # One AsyncFlights per event loop: a flight's task belongs to the loop it runs on.
    flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncFlights[Any]] = (
        weakref.WeakKeyDictionary()
    )

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = make_key(args, kwargs)
        value = await asyncio.to_thread(cache.get, key, MISSING)
        if value is not MISSING:
            return value

        async def load() -> Any:
            # Another process, or a flight that just ended here, may have stored it.
            value = await asyncio.to_thread(cache.get, key, MISSING)
            if value is MISSING:
                value = await fn(*args, **kwargs)
                await asyncio.to_thread(cache.set, key, value, ttl_s)
            return value

        loop = asyncio.get_running_loop()
        loop_flights = flights.get(loop)
        if loop_flights is None:
            loop_flights = flights[loop] = AsyncFlights()
        return await loop_flights.do(key, load)

    return wrapper
