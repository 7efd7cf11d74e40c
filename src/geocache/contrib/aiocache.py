"""An aiocache backend on the geocache AsyncClient.

```python
from aiocache import cached
from geocache.contrib.aiocache import GeocacheCache

cache = GeocacheCache(seeds=["10.0.0.1:7379"], region="eu", namespace="app:")

@cached(cache=GeocacheCache, seeds=["10.0.0.1:7379"], ttl=60)
async def profile(user_id: int) -> dict: ...
```

aiocache serializes values itself (its StringSerializer by default) and hands the
backend str or bytes, which the client stores as they are (client/values.py), so other
clients read aiocache's values too. Other keyword arguments are `AsyncClient`
arguments (region, password, timeout_s, on_error, routes...).

`multi_get` is one pipeline per node; `clear(namespace)` deletes the keys that start
with the namespace, the cache's own when none is given (aiocache's Redis backend
flushes the whole database then: too much for a cache that other programs share), and
every key only for a cache without a namespace. The optimistic lock (`aiocache.lock.
OptimisticLock`) is GETVER and CAS: `_gets` returns the key's version (0 when it is
missing), and a set with that token succeeds only if no write came between. `RedLock`
is not supported: releasing it needs an atomic "delete if the value is still mine",
which geocache nodes do not have.
"""

from __future__ import annotations

from typing import Any

from aiocache.base import BaseCache  # type: ignore[import-untyped, import-not-found, unused-ignore]

from geocache.client.aio import AsyncClient


class GeocacheCache(BaseCache):  # type: ignore[misc, unused-ignore]
    """aiocache's cache API on a geocache cluster (module docstring)."""

    NAME = "geocache"

    def __init__(
        self,
        seeds: list[str] | str = "127.0.0.1:7379",
        serializer: Any = None,
        plugins: Any = None,
        namespace: str | None = None,
        key_builder: Any = None,
        timeout: float | None = 5,
        ttl: float | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(
            serializer=serializer,
            plugins=plugins,
            namespace=namespace,
            key_builder=key_builder,
            timeout=timeout,
            ttl=ttl,
        )
        self.client = AsyncClient(seeds, **client_options)

    def __repr__(self) -> str:
        return f"GeocacheCache(region={self.client.region!r}, namespace={self.namespace!r})"

    async def _get(self, key: str, encoding: str | None = "utf-8", _conn: Any = None) -> Any:
        return _text(await self.client.get(key), encoding)

    async def _gets(self, key: str, encoding: str | None = "utf-8", _conn: Any = None) -> int:
        return await self.client.getver(key) or 0

    async def _multi_get(
        self, keys: list[str], encoding: str | None = "utf-8", _conn: Any = None
    ) -> list[Any]:
        found = await self.client.get_many(keys)
        return [_text(found.get(key), encoding) for key in keys]

    async def _set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        _cas_token: int | None = None,
        _conn: Any = None,
    ) -> bool:
        if _cas_token is not None:
            return await self.client.cas(key, _cas_token, value, ttl or None) is not None
        await self.client.set(key, value, ttl or None)
        return True

    async def _multi_set(
        self, pairs: list[tuple[str, Any]], ttl: float | None = None, _conn: Any = None
    ) -> bool:
        await self.client.set_many(dict(pairs), ttl or None)
        return True

    async def _add(self, key: str, value: Any, ttl: float | None = None, _conn: Any = None) -> bool:
        if not await self.client.add(key, value, ttl or None):
            raise ValueError(f"Key {key} already exists, use .set to update the value")
        return True

    async def _exists(self, key: str, _conn: Any = None) -> bool:
        return await self.client.exists(key)

    async def _increment(self, key: str, delta: int, _conn: Any = None) -> int:
        return await self.client.incr(key, delta)

    async def _expire(self, key: str, ttl: float, _conn: Any = None) -> bool:
        # aiocache: a ttl of 0 takes the expiry away.
        return await self.client.touch(key, ttl or None)

    async def _delete(self, key: str, _conn: Any = None) -> int:
        return int(await self.client.delete(key))

    async def _clear(self, namespace: str | None = None, _conn: Any = None) -> bool:
        await self.client.clear(namespace or self.namespace or "")
        return True

    async def _raw(self, command: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("raw commands: use geocache.AsyncClient or a Redis client")

    async def _redlock_release(self, key: str, value: Any) -> int:
        raise NotImplementedError(
            "RedLock needs an atomic delete-if-unchanged, which geocache nodes lack;"
            " use aiocache.lock.OptimisticLock (GETVER and CAS)"
        )

    async def _close(self, *args: Any, _conn: Any = None, **kwargs: Any) -> None:
        await self.client.close()


def _text(value: Any, encoding: str | None) -> Any:
    """aiocache asks for str (its encoding) or, with encoding None, bytes."""
    if encoding is not None and isinstance(value, bytes):
        return value.decode(encoding)
    return value
