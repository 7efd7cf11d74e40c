"""LocalCache: the node's store for in-process use, thread-safe, with memoize.

One lock guards the store; it is held only for the store operation itself, never while
a loader or a memoized function runs. Concurrent callers of `get_or_set` or a memoized
function for the same missing key wait for one computation (singleflight), for
threads and for coroutines alike.

Values go through a serializer (serializers.py): `pickle` by default, which round-trips
any object and is safe here because only this process writes to this cache; `raw`
keeps bytes as they are and is the fastest. Memory limits count serialized bytes.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from geocache.clock import Clock, SystemClock
from geocache.memoize import KeyBuilder, KeyMaker, custom_key
from geocache.serializers import Serializer, get_serializer
from geocache.singleflight import AsyncFlights, Flights
from geocache.store import counters
from geocache.store.errors import NotAnInteger
from geocache.store.keyspace import Store, StoreStats

F = TypeVar("F", bound=Callable[..., Any])
_MISSING = object()


def to_key(key: object) -> bytes:
    """A cache key as bytes: str (UTF-8) and bytes are accepted."""
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key)
    raise TypeError(f"cache keys are str or bytes, not {type(key).__name__}")


def check_ttl_s(ttl_s: float | None) -> float | None:
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise TypeError(f"ttl_s is a number of seconds, not {type(ttl_s).__name__}")
    if not ttl_s > 0 or math.isinf(ttl_s):
        raise ValueError(f"ttl_s must be a positive, finite number of seconds, not {ttl_s}")
    return ttl_s


class LocalCache:
    def __init__(
        self,
        *,
        max_keys: int = 0,
        max_bytes: int = 0,
        default_ttl_s: float | None = None,
        serializer: str | Serializer = "pickle",
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self._store = Store(self._clock, max_bytes=max_bytes, max_keys=max_keys)
        self._default_ttl_s = check_ttl_s(default_ttl_s)
        self._serializer = get_serializer(serializer)
        self._lock = threading.Lock()
        self._flights: Flights[Any] = Flights()

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    def __contains__(self, key: object) -> bool:
        raw = to_key(key)
        with self._lock:
            return self._store.peek(raw) is not None

    def get(self, key: str | bytes, default: Any = None) -> Any:
        raw = to_key(key)
        with self._lock:
            value = self._store.get(raw)
        return default if value is None else self._serializer.loads(value)

    def set(self, key: str | bytes, value: Any, ttl_s: float | None = None) -> None:
        """Store `value`; `ttl_s` (seconds) overrides the default TTL."""
        raw, data = to_key(key), self._serializer.dumps(value)
        expires_at_ms = self._expires_at_ms(check_ttl_s(ttl_s))
        with self._lock:
            self._store.set(raw, data, expires_at_ms)

    def delete(self, key: str | bytes) -> bool:
        raw = to_key(key)
        with self._lock:
            return self._store.delete(raw)

    def expire(self, key: str | bytes, ttl_s: float) -> bool:
        """Set a key's TTL; zero or less deletes it, as Redis's EXPIRE. True if the key exists."""
        raw = to_key(key)
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
            raise TypeError(f"ttl_s is a number of seconds, not {type(ttl_s).__name__}")
        if ttl_s <= 0:
            with self._lock:
                return self._store.delete(raw)
        check_ttl_s(ttl_s)  # NaN and infinity: a ValueError, not an OverflowError
        with self._lock:
            return self._store.expire_at(raw, self._clock.wall_ms() + math.ceil(ttl_s * 1000))

    def ttl(self, key: str | bytes) -> float | None:
        """Seconds left: None if there is no such key, math.inf if it never expires."""
        raw = to_key(key)
        with self._lock:
            ms = self._store.ttl_ms(raw)
        if ms == -2:
            return None
        return math.inf if ms == -1 else ms / 1000

    def incr(self, key: str | bytes, delta: int = 1) -> int:
        """Add to an integer counter; a missing key counts as 0 and the TTL is kept.

        With the raw serializer the count is decimal text, as in Redis; with any other
        it is the serializer's form of an int, so `set(k, 5)`, `incr(k)` and `get(k)`
        agree. A value that is not a 64-bit int raises NotAnInteger, changing nothing.
        """
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta is an int, not {type(delta).__name__}")
        raw = to_key(key)
        with self._lock:
            if self._serializer.name == "raw":
                return self._store.incr_by(raw, delta)
            entry = self._store.peek(raw)
            current = self._serializer.loads(entry[0]) if entry is not None else 0
            if type(current) is not int or not counters.INT64_MIN <= current <= counters.INT64_MAX:
                raise NotAnInteger()
            result = counters.add_int(current, delta)
            expires_at_ms = entry[1] if entry is not None else 0
            self._store.set(raw, self._serializer.dumps(result), expires_at_ms)
            return result

    def clear(self) -> None:
        with self._lock:
            self._store.flush()

    def stats(self) -> StoreStats:
        with self._lock:
            return self._store.stats()

    def expire_cycle(self, max_keys: int = 10_000) -> int:
        """Reclaim expired entries now (they are never returned either way)."""
        with self._lock:
            return self._store.active_expire(max_keys)

    def get_or_set(
        self, key: str | bytes, fn: Callable[[], Any], ttl_s: float | None = None
    ) -> Any:
        """The cached value, or `fn()` stored and returned; concurrent callers wait for one."""
        raw = to_key(key)
        check_ttl_s(ttl_s)  # before fn runs, not after
        value = self.get(raw, _MISSING)
        if value is not _MISSING:
            return value
        return self._flights.do(raw, lambda: self._load(raw, fn, ttl_s))

    def memoize(
        self,
        ttl_s: float | None = None,
        key_builder: KeyBuilder | None = None,
        namespace: str | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function (plain or async) so its results are cached per arguments."""
        check_ttl_s(ttl_s)

        def decorate(fn: F) -> F:
            make_key = (
                custom_key(namespace, key_builder) if key_builder else KeyMaker(fn, namespace)
            )
            if inspect.iscoroutinefunction(fn):
                return cast(F, self._memoize_async(fn, make_key, ttl_s))

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self.get_or_set(make_key(args, kwargs), lambda: fn(*args, **kwargs), ttl_s)

            return cast(F, wrapper)

        return decorate

    def _memoize_async(
        self,
        fn: Callable[..., Awaitable[Any]],
        make_key: Callable[[tuple[Any, ...], dict[str, Any]], bytes],
        ttl_s: float | None,
    ) -> Callable[..., Awaitable[Any]]:
        flights: AsyncFlights[Any] = AsyncFlights()

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = make_key(args, kwargs)
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                return value

            async def load() -> Any:
                result = await fn(*args, **kwargs)
                self.set(key, result, ttl_s)
                return result

            return await flights.do(key, load)

        return wrapper

    def _load(self, key: bytes, fn: Callable[[], Any], ttl_s: float | None) -> Any:
        # Another caller may have stored it between our miss and taking the flight.
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = fn()
        self.set(key, value, ttl_s)
        return value

    def _expires_at_ms(self, ttl_s: float | None) -> int:
        ttl = ttl_s if ttl_s is not None else self._default_ttl_s
        return self._clock.wall_ms() + math.ceil(ttl * 1000) if ttl else 0
