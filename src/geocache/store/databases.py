"""Redis's numbered databases on one node: database 0 is the node's store, 1..15 more.

Theory of operation:

- Database 0 is the node's own store, built by the node and used as before by every
  part that knows nothing of databases (HTTP API, origin, cluster). A client's `SELECT`
  only points its session at another `Store`, so a command on database 0 costs exactly
  what it did.
- Databases 1..15 are made on first use and are plain stores (no journal, no
  tombstones): only a standalone node has them; a cluster has database 0 alone, as Redis
  Cluster.
- `max_bytes` and `max_keys` are shared by all databases, as Redis's maxmemory is: each
  other database's limit is what the others leave (`SharedStore`), and after each of
  its changes database 0's limit is lowered by what the others hold. A write evicts
  least recently used keys of its own database only (Redis samples all of them).
"""

from __future__ import annotations

from collections.abc import Iterator

from geocache.clock import Clock
from geocache.store.entry import ENTRY_OVERHEAD_BYTES, EXPIRY_OVERHEAD_BYTES, Entry
from geocache.store.keyspace import Store

# Redis's default `databases` setting.
DATABASES = 16


class SharedStore(Store):
    """A database other than 0: its limits are the node's minus what the others hold."""

    __slots__ = ("_owner",)

    def __init__(self, clock: Clock, owner: Databases, node_id: str) -> None:
        super().__init__(clock, node_id=node_id)
        self._owner = owner

    def _put(self, key: bytes, entry: Entry) -> None:
        # Databases.left_for and .grew, inlined: this runs on every write here.
        owner, main = self._owner, self._owner.main
        limit_bytes, limit_keys = owner.max_bytes, owner.max_keys
        used_bytes, used_keys = self.used_bytes, len(self._data)
        if limit_bytes:
            others = main.used_bytes + owner.others_bytes - used_bytes
            self.max_bytes = max(limit_bytes - others, 1)
        if limit_keys:
            self.max_keys = max(limit_keys - len(main) - owner.others_keys + used_keys, 1)
        try:
            super()._put(key, entry)
        finally:
            owner.others_bytes += self.used_bytes - used_bytes
            owner.others_keys += len(self._data) - used_keys
            if limit_bytes:
                main.max_bytes = max(limit_bytes - owner.others_bytes, 1)
            if limit_keys:
                main.max_keys = max(limit_keys - owner.others_keys, 1)

    def _remove(self, key: bytes) -> Entry:
        entry = super()._remove(key)
        self._owner.grew(-len(key) - len(entry[0]) - _overhead(entry), -1)
        return entry

    def flush(self) -> None:
        used_bytes, used_keys = self.used_bytes, len(self._data)
        super().flush()
        self._owner.grew(-used_bytes, -used_keys)


def _overhead(entry: Entry) -> int:
    return ENTRY_OVERHEAD_BYTES + (EXPIRY_OVERHEAD_BYTES if entry[1] else 0)


class Databases:
    """The node's databases, 0 being its store."""

    __slots__ = (
        "_clock",
        "_stores",
        "main",
        "max_bytes",
        "max_keys",
        "others_bytes",
        "others_keys",
    )

    def __init__(self, main: Store, clock: Clock, count: int = DATABASES) -> None:
        self._clock = clock
        self._stores: list[Store | None] = [main] + [None] * (count - 1)
        self.main = main
        self.max_bytes = main.max_bytes
        self.max_keys = main.max_keys
        # What databases 1..15 hold, kept up to date by their every change (SharedStore).
        self.others_bytes = self.others_keys = 0

    def __len__(self) -> int:
        return len(self._stores)

    def replace_main(self, store: Store) -> None:
        """Make `store` database 0 (before any client has used the old one)."""
        self.main = self._stores[0] = store
        self.grew(0, 0)

    def get(self, index: int) -> Store:
        """Database `index` (0 <= index < len(self)), made on first use."""
        store = self._stores[index]
        if store is None:
            store = self._stores[index] = SharedStore(self._clock, self, self.main.node_id)
        return store

    def held(self) -> Iterator[tuple[int, Store]]:
        """(index, store) of every database made so far."""
        for index, store in enumerate(self._stores):
            if store is not None:
                yield index, store

    def set_limits(self, max_bytes: int, max_keys: int) -> None:
        """CONFIG SET maxmemory: the new limits, shared out again (database 0 evicts
        down to its share on its next write)."""
        self.max_bytes, self.max_keys = max_bytes, max_keys
        self.grew(0, 0)

    def left_for(self, store: Store) -> tuple[int, int]:
        """(max_bytes, max_keys) the other databases leave database `store` (not 0)."""
        main = self.main
        others_bytes = main.used_bytes + self.others_bytes - store.used_bytes
        others_keys = len(main) + self.others_keys - len(store)
        return self._left(others_bytes, others_keys)

    def grew(self, delta_bytes: int, delta_keys: int) -> None:
        """A database other than 0 changed in size: database 0's share follows."""
        self.others_bytes += delta_bytes
        self.others_keys += delta_keys
        self.main.max_bytes, self.main.max_keys = self._left(self.others_bytes, self.others_keys)

    def _left(self, others_bytes: int, others_keys: int) -> tuple[int, int]:
        # 0 means "no limit" to a store, so a database left nothing keeps 1 (byte, key).
        max_bytes = self.max_bytes and max(self.max_bytes - others_bytes, 1)
        max_keys = self.max_keys and max(self.max_keys - others_keys, 1)
        return max_bytes, max_keys

    def flush_all(self) -> None:
        for _index, store in self.held():
            store.flush()

    def swap(self, a: int, b: int) -> None:
        """SWAPDB: the contents of two databases change places (sessions stay put)."""
        if a == b:
            return
        first, second = self.get(a), self.get(b)
        first.swap_contents(second)
        others = [s for _i, s in self.held() if s is not self.main]
        self.others_bytes = sum(s.used_bytes for s in others)
        self.others_keys = sum(len(s) for s in others)
        self.grew(0, 0)
