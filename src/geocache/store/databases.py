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
from geocache.store.entry import Entry
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
        self._owner.share_limits(self)
        super()._put(key, entry)
        self._owner.share_limits(self)

    def _remove(self, key: bytes) -> Entry:
        entry = super()._remove(key)
        self._owner.share_limits(self)
        return entry

    def flush(self) -> None:
        super().flush()
        self._owner.share_limits(self)


class Databases:
    """The node's databases, 0 being its store."""

    __slots__ = ("_clock", "_stores", "max_bytes", "max_keys")

    def __init__(self, main: Store, clock: Clock, count: int = DATABASES) -> None:
        self._clock = clock
        self._stores: list[Store | None] = [main] + [None] * (count - 1)
        self.max_bytes = main.max_bytes
        self.max_keys = main.max_keys

    def __len__(self) -> int:
        return len(self._stores)

    @property
    def main(self) -> Store:
        store = self._stores[0]
        assert store is not None
        return store

    def get(self, index: int) -> Store:
        """Database `index` (0 <= index < len(self)), made on first use."""
        store = self._stores[index]
        if store is None:
            store = self._stores[index] = SharedStore(self._clock, self, self.main.node_id)
            self.share_limits(store)
        return store

    def held(self) -> Iterator[tuple[int, Store]]:
        """(index, store) of every database made so far."""
        for index, store in enumerate(self._stores):
            if store is not None:
                yield index, store

    def set_limits(self, max_bytes: int, max_keys: int) -> None:
        """CONFIG SET maxmemory: the new limits, shared out again."""
        self.max_bytes, self.max_keys = max_bytes, max_keys
        self.main.max_bytes, self.main.max_keys = max_bytes, max_keys
        for _index, store in self.held():
            self.share_limits(store)

    def share_limits(self, changed: Store) -> None:
        """Give `changed` (if not database 0) and database 0 what the others leave them."""
        if changed is not self.main:
            changed.max_bytes, changed.max_keys = self._left_for(changed)
        self.main.max_bytes, self.main.max_keys = self._left_for(self.main)

    def _left_for(self, store: Store) -> tuple[int, int]:
        others = [s for _i, s in self.held() if s is not store]
        # 0 means "no limit" to a store, so a database left nothing keeps 1 (byte, key).
        max_bytes = self.max_bytes and max(self.max_bytes - sum(s.used_bytes for s in others), 1)
        max_keys = self.max_keys and max(self.max_keys - sum(len(s) for s in others), 1)
        return max_bytes, max_keys

    def flush_all(self) -> None:
        for _index, store in self.held():
            store.flush()

    def swap(self, a: int, b: int) -> None:
        """SWAPDB: the contents of two databases change places (sessions stay put)."""
        if a != b:
            self.get(a).swap_contents(self.get(b))
            self.share_limits(self.get(a))
            self.share_limits(self.get(b))
