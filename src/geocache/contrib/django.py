"""A Django cache backend on the geocache client.

```python
CACHES = {
    "default": {
        "BACKEND": "geocache.contrib.django.GeocacheCache",
        "LOCATION": "10.0.0.1:7379,10.0.0.2:7379",  # seeds: a list, or split on , and ;
        "OPTIONS": {"region": "eu", "password": "...", "serializer": "pickle"},
    }
}
```

`OPTIONS` are `geocache.Client` arguments (region, password, serializer, timeout_s,
on_error, pool_size, topology_refresh_s, routes); an unknown one is a TypeError when
the cache is first used. The client has no TLS, so there are no TLS options. Values are
stored typed (client/values.py): what was set comes back, str as str and bytes as
bytes; ints are decimal text so `incr` is one atomic INCRBY. Anything else goes
through the serializer, pickle by default as in Django's own backends: only for a
cache that only trusted code can write, since unpickling runs code.

Django's keys (KEY_PREFIX, VERSION, KEY_FUNCTION) are made by Django. `clear()`
deletes the keys that start with `KEY_PREFIX:` when there is a KEY_PREFIX, else every
key (Django's Redis backend flushes the whole database).

Django makes a backend object per thread and per `override_settings`; they share one
client per (LOCATION, OPTIONS) in the process, since a client holds a pool of sockets
and a background thread. `close()` keeps it, as Django's Redis backend keeps its pools.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    DEFAULT_TIMEOUT,
    BaseCache,
)

from geocache.client.sync import Client

_clients: dict[tuple[tuple[str, ...], str], Client] = {}
_clients_lock = threading.Lock()


def shared_client(seeds: tuple[str, ...], options: Mapping[str, Any]) -> Client:
    """The process's client for these seeds and options, made on first use."""
    key = (seeds, repr(sorted(options.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            options = {"serializer": "pickle", **options, "typed": True}
            client = _clients[key] = Client(list(seeds), **options)
        return client


class GeocacheCache(BaseCache):  # type: ignore[misc, unused-ignore]
    """Django's cache API on a geocache cluster (module docstring)."""

    def __init__(self, server: str | Iterable[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        seeds = re.split("[;,]", server) if isinstance(server, str) else list(server)
        self._seeds = tuple(s.strip() for s in seeds if s.strip())
        self._options = dict(params.get("OPTIONS") or {})

    @property
    def client(self) -> Client:
        """The geocache client this backend uses (shared, see the module docstring)."""
        return shared_client(self._seeds, self._options)

    def ttl_s(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """Django's timeout as seconds for the client: None never expires, and 0 or less
        means the value is not to be kept."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(0.0, float(timeout))

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        """Store only if the key has no value; True if stored."""
        key = self.make_and_validate_key(key, version=version)
        ttl_s = self.ttl_s(timeout)
        added = self.client.add(key, value, ttl_s or None)
        if added and ttl_s == 0:
            self.client.delete(key)  # stored and gone at once, as Django's Redis backend
        return added

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        """The value, or `default`."""
        key = self.make_and_validate_key(key, version=version)
        return self.client.get(key, default)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        """Store `value` for `timeout` seconds (None: forever; 0: not at all)."""
        key = self.make_and_validate_key(key, version=version)
        ttl_s = self.ttl_s(timeout)
        if ttl_s == 0:
            self.client.delete(key)
        else:
            self.client.set(key, value, ttl_s)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        """A new timeout for the key; True if it exists."""
        key = self.make_and_validate_key(key, version=version)
        ttl_s = self.ttl_s(timeout)
        if ttl_s == 0:
            return self.client.delete(key)
        return self.client.touch(key, ttl_s)

    def delete(self, key: Any, version: Any = None) -> bool:
        """Delete the key; True if it existed."""
        key = self.make_and_validate_key(key, version=version)
        return self.client.delete(key)

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        """The keys found, with their values; one pipeline per node."""
        made = {self.make_and_validate_key(k, version=version): k for k in keys}
        found = self.client.get_many(list(made))
        return {made[k]: v for k, v in found.items()}

    def has_key(self, key: Any, version: Any = None) -> bool:
        """Whether the key has a value."""
        key = self.make_and_validate_key(key, version=version)
        return self.client.exists(key)

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """Add `delta` (INCRBY); ValueError if the key is missing, CommandError if its
        value is not an integer."""
        key = self.make_and_validate_key(key, version=version)
        if not self.client.exists(key):
            raise ValueError(f"Key '{key}' not found.")
        return self.client.incr(key, delta)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        """Store every value; the keys that failed (none: failures raise)."""
        if not data:
            return []
        made = {self.make_and_validate_key(k, version=version): v for k, v in data.items()}
        ttl_s = self.ttl_s(timeout)
        if ttl_s == 0:
            self.client.delete_many(made)
        else:
            self.client.set_many(made, ttl_s)
        return []

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        """Delete every key."""
        made = [self.make_and_validate_key(k, version=version) for k in keys]
        if made:
            self.client.delete_many(made)

    def clear(self) -> None:
        """Delete this cache's keys: those under KEY_PREFIX, or all (module docstring)."""
        self.client.clear(f"{self.key_prefix}:" if self.key_prefix else "")
