"""LocalCache's get and set for bytes, compiled.

LocalCache (local.py) stays interpreted so that its checks answer users in its own words
(compiled, mypyc's argument checks would answer first). Most calls need none of them: a
bytes key, a bytes value, no TTL, in a cache without a namespace that keeps bytes as
they are (the `auto` and `raw` serializers). `BytesPath` serves those calls compiled and
hands every other call, unchanged, to the cache's own method: its parameters are typed
`object`, so mypyc checks nothing on the way in.

The same rules hold either way: a read takes no lock (`Store.get_shared`) and a miss
goes to the locked path that counts it; a write takes the cache's lock; with `auto`, a
value that starts with pickle's PROTO opcode is pickled (serializers.py), so such bytes
written here are handed over too.

No I/O.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable

from geocache.serializers import PICKLE_PROTO
from geocache.store.keyspace import Store


class BytesPath:
    """`get` and `set` of one LocalCache, for bytes; `slow_get` and `slow_set` (the
    cache's own methods) take everything else."""

    def __init__(
        self,
        store: Store,
        lock: threading.Lock,
        auto: bool,
        slow_get: Callable[..., object],
        slow_set: Callable[..., None],
    ) -> None:
        self._store = store
        self._lock = lock
        self._auto = auto
        self._slow_get = slow_get
        self._slow_set = slow_set

    def get(self, key: object, default: object = None) -> object:
        if type(key) is bytes:
            value = self._store.get_shared(key)
            if value is not None:
                if self._auto and value and value[0] == PICKLE_PROTO:
                    return pickle.loads(value)
                return value
        return self._slow_get(key, default)

    def set(self, key: object, value: object, ttl_s: object = None) -> None:
        if (
            type(key) is bytes
            and type(value) is bytes
            and ttl_s is None
            and not (self._auto and value and value[0] == PICKLE_PROTO)
        ):
            with self._lock:
                self._store.set(key, value, 0)
            return
        self._slow_set(key, value, ttl_s)
