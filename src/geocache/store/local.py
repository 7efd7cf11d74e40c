"""LocalCache: the node's store for in-process use, thread-safe, with memoize.

One lock guards the store's writes; it is held only for the store operation itself,
never while a loader or a memoized function runs. A read of a key that has not expired
takes no lock (`Store.get_shared`: one dict lookup and one move in LRU order, each
atomic under the GIL); a miss or an expired key takes the locked path, which counts
the miss and reclaims the entry. Concurrent callers of `get_or_set` or a memoized
function for the same missing key wait for one computation (singleflight), for
threads and for coroutines alike.

Values go through a serializer (serializers.py): `auto` by default, which keeps bytes as
they are (as `raw` does: no copy, no header) and pickles any other object (safe here
because only this process writes to this cache); `raw` refuses anything but bytes.
Memory limits count serialized bytes. A cache without a namespace or a default TTL that
keeps bytes as they are (`auto`, `raw`) serves `get` and `set` of bytes compiled
(bytespath.py): this module is not compiled, so that its checks speak in its own words.

`key_prefix` and `version` put every key in a namespace (`key_prefix`, then `version:`
when a version is given), as the network clients do; `clear` then deletes only that
namespace's keys.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from geocache.clock import Clock, SystemClock
from geocache.memoize import MISSING, KeyBuilder, Memoize, MemoStore, memoize_sync
from geocache.serializers import SERIALIZERS, Serializer, SerializerName, get_serializer
from geocache.singleflight import Flights
from geocache.store import counters
from geocache.store.bytespath import BytesPath
from geocache.store.entry import latest_version
from geocache.store.errors import NotAnInteger
from geocache.store.keyspace import Store, StoreStats

K = TypeVar("K", bound=str | bytes)
_MISSING = MISSING


def to_key(key: object) -> bytes:
    """A cache key as bytes: str (UTF-8) and bytes are accepted."""
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key)
    raise TypeError(f"cache keys are str or bytes, not {type(key).__name__}")


def namespace_of(key_prefix: str | bytes, version: int | None) -> bytes:
    """The bytes in front of every key: the prefix, then `version:` if a version is set."""
    prefix = to_key(key_prefix)
    if version is None:
        return prefix
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"version is an int, not {type(version).__name__}")
    return prefix + b"%d:" % version


def check_ttl_s(ttl_s: float | None) -> float | None:
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise TypeError(f"ttl_s is a number of seconds, not {type(ttl_s).__name__}")
    if not ttl_s > 0 or math.isinf(ttl_s):
        raise ValueError(f"ttl_s must be a positive, finite number of seconds, not {ttl_s}")
    return ttl_s


class LocalCache:
    """An in-process cache: the node's store behind a lock, with memoize.

    `max_keys`, `max_bytes`: limits (0: none), LRU eviction beyond. `default_ttl_s`: the
    TTL of writes that give none (None: never expire). `serializer`: "auto" (default:
    bytes as they are, anything else pickled), "pickle", "raw" (bytes only), "json" or
    "msgpack", or a Serializer. `key_prefix`,
    `version`: the namespace of every key (module docstring). `clock`: for tests.
    """

    def __init__(
        self,
        *,
        max_keys: int = 0,
        max_bytes: int = 0,
        default_ttl_s: float | None = None,
        serializer: SerializerName | Serializer = "auto",
        key_prefix: str | bytes = "",
        version: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock if clock is not None else SystemClock()
        self._store = Store(self._clock, max_bytes=max_bytes, max_keys=max_keys)
        self._default_ttl_s = check_ttl_s(default_ttl_s)
        self._serializer = get_serializer(serializer)
        self._namespace = namespace_of(key_prefix, version)
        self._lock = threading.Lock()
        self._flights: Flights[Any] = Flights()
        # Bytes in and out with no TTL: `get` and `set` are served compiled (bytespath.py)
        # and hand every other call to the methods below.
        auto = self._serializer is SERIALIZERS["auto"]
        if (
            not self._namespace
            and default_ttl_s is None
            and (auto or self._serializer is SERIALIZERS["raw"])
        ):
            path = BytesPath(self._store, self._lock, auto, self.get, self.set)
            self.get = path.get  # type: ignore[method-assign]
            self.set = path.set  # type: ignore[method-assign]

    def __len__(self) -> int:
        """Keys held, in every namespace."""
        with self._lock:
            return len(self._store)

    def __contains__(self, key: object) -> bool:
        raw = self._key(key)
        with self._lock:
            return self._store.peek(raw) is not None

    # -- one key ---------------------------------------------------------------------------

    def get(self, key: str | bytes, default: Any = None) -> Any:
        """The value of `key`, or `default` if there is none (a stored None is a value)."""
        raw = key if type(key) is bytes and not self._namespace else self._key(key)
        value = self._store.get_shared(raw)
        if value is None:
            with self._lock:  # counts the miss, and reclaims an expired entry
                value = self._store.get(raw)
            if value is None:
                return default
        return self._serializer.loads(value)

    def set(self, key: str | bytes, value: Any, ttl_s: float | None = None) -> None:
        """Store `value`; `ttl_s` (seconds) overrides the default TTL."""
        raw = key if type(key) is bytes and not self._namespace else self._key(key)
        data = self._serializer.dumps(value)
        if ttl_s is None and self._default_ttl_s is None:
            expires_at_ms = 0
        else:
            expires_at_ms = self._expires_at_ms(check_ttl_s(ttl_s))
        with self._lock:
            self._store.set(raw, data, expires_at_ms)

    def add(self, key: str | bytes, value: Any, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` has none; True if it was stored."""
        raw, data = self._key(key), self._serializer.dumps(value)
        expires_at_ms = self._expires_at_ms(check_ttl_s(ttl_s))
        with self._lock:
            if self._store.peek(raw) is not None:
                return False
            self._store.set(raw, data, expires_at_ms)
            return True

    def delete(self, key: str | bytes) -> bool:
        """Delete `key`; True if it existed."""
        raw = self._key(key)
        with self._lock:
            return self._store.delete(raw)

    def exists(self, key: str | bytes) -> bool:
        """Whether `key` has a value (a stored None counts)."""
        return key in self

    def expire(self, key: str | bytes, ttl_s: float) -> bool:
        """Set a key's TTL; zero or less deletes it, as Redis's EXPIRE. True if the key exists."""
        raw = self._key(key)
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
            raise TypeError(f"ttl_s is a number of seconds, not {type(ttl_s).__name__}")
        if ttl_s <= 0:
            with self._lock:
                return self._store.delete(raw)
        check_ttl_s(ttl_s)  # NaN and infinity: a ValueError, not an OverflowError
        with self._lock:
            return self._store.expire_at(raw, self._clock.wall_ms() + math.ceil(ttl_s * 1000))

    def touch(self, key: str | bytes, ttl_s: float | None = None) -> bool:
        """Give `key` a new TTL (None: the default TTL, or never if there is none; zero or
        less deletes it); True if it exists."""
        if ttl_s is not None:
            return self.expire(key, ttl_s)
        raw = self._key(key)
        with self._lock:
            return self._store.expire_at(raw, self._expires_at_ms(None))

    def ttl(self, key: str | bytes) -> float | None:
        """Seconds left: None if there is no such key, math.inf if it never expires."""
        raw = self._key(key)
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
        raw = self._key(key)
        with self._lock:
            if self._serializer.name == "raw":
                return self._store.incr_by(raw, delta)
            entry = self._store.peek(raw)
            current = self._serializer.loads(entry[0]) if entry is not None else 0
            if type(current) is not int or not counters.INT64_MIN <= current <= counters.INT64_MAX:
                raise NotAnInteger()
            result = counters.add_int(current, delta)
            if entry is None:
                self._store.set(raw, self._serializer.dumps(result))
            else:
                self._store.set_value(raw, self._serializer.dumps(result))
            return result

    def decr(self, key: str | bytes, delta: int = 1) -> int:
        """Subtract from an integer counter; as `incr`."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta is an int, not {type(delta).__name__}")
        return self.incr(key, -delta)

    def getver(self, key: str | bytes) -> int | None:
        """The version of `key`'s value (it grows with every write), None if missing."""
        raw = self._key(key)
        with self._lock:
            entry = self._store.peek(raw)
        return None if entry is None else latest_version(entry)

    def cas(
        self, key: str | bytes, version: int, value: Any, ttl_s: float | None = None
    ) -> int | None:
        """Store `value` only if `key`'s version is still `version` (0: only if missing);
        the new version, or None if another write came first."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version is an int, not {type(version).__name__}")
        raw, data = self._key(key), self._serializer.dumps(value)
        expires_at_ms = self._expires_at_ms(check_ttl_s(ttl_s))
        with self._lock:
            entry = self._store.peek(raw)
            if (latest_version(entry) if entry is not None else 0) != version:
                return None
            return self._store.set(raw, data, expires_at_ms)[2]

    # -- many keys -------------------------------------------------------------------------

    def get_many(self, keys: Iterable[K]) -> dict[K, Any]:
        """The keys found, as given, with their values."""
        found: dict[K, Any] = {}
        for key in keys:
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                found[key] = value
        return found

    def set_many(self, values: Mapping[K, Any], ttl_s: float | None = None) -> None:
        """Store every key's value (as `set`)."""
        check_ttl_s(ttl_s)
        for key, value in values.items():
            self.set(key, value, ttl_s)

    def delete_many(self, keys: Iterable[str | bytes]) -> int:
        """Delete every key; how many existed."""
        return sum(self.delete(key) for key in keys)

    def clear(self, prefix: str | bytes = "") -> int:
        """Delete every key of this cache's namespace, or every key when it has none;
        with `prefix`, only the keys (as given) that start with it. How many were deleted."""
        namespace = self._key(prefix)
        with self._lock:
            live = list(self._store.keys())  # live keys only (a Store is not a dict)
            if not namespace:
                self._store.flush()
                return len(live)
            doomed = [k for k in live if k.startswith(namespace)]
            return sum(self._store.delete(k) for k in doomed)

    # -- the cache itself ------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """The store's counters: hits, misses, evictions, keys, bytes."""
        with self._lock:
            return self._store.stats()

    def expire_cycle(self, max_keys: int = 10_000) -> int:
        """Reclaim expired entries now (they are never returned either way)."""
        with self._lock:
            return self._store.active_expire(max_keys)

    # -- computed values -------------------------------------------------------------------

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
    ) -> Memoize:
        """Decorate a function (plain or async) so its results are cached per arguments;
        it gets `invalidate(*args)` and `refresh(*args)` (memoize.py)."""
        check_ttl_s(ttl_s)
        # Made per decorator, not kept: a cache that held one would hold itself.
        store = MemoStore(
            get_or_set=self.get_or_set,
            put=self.set,
            delete=self.delete,
            get=lambda key: self.get(key, MISSING),
        )
        return memoize_sync(store, ttl_s, key_builder, namespace)

    def _load(self, key: bytes, fn: Callable[[], Any], ttl_s: float | None) -> Any:
        # Another caller may have stored it between our miss and taking the flight.
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = fn()
        self.set(key, value, ttl_s)
        return value

    def _key(self, key: object) -> bytes:
        return self._namespace + to_key(key)

    def _expires_at_ms(self, ttl_s: float | None) -> int:
        ttl = ttl_s if ttl_s is not None else self._default_ttl_s
        return self._clock.wall_ms() + math.ceil(ttl * 1000) if ttl else 0
