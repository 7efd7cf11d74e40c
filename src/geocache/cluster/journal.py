"""A store that remembers the writes made through it, for the coordinator to replicate.

In cluster mode the command handlers run unchanged against a `JournaledStore`: every
local write (set, delete, and what is built on them: EXPIRE, INCR, APPEND...) is
appended to `journal` as (key, entry) or (key, tombstone). After a command, the router
takes the journal and ships it to the key's other owners. Writes that arrive from peers
go through `apply`/`apply_delete`, which are not journaled: only the coordinator
replicates.
"""

from __future__ import annotations

from geocache.store.entry import Entry, Tombstone
from geocache.store.keyspace import Store

Write = tuple[bytes, Entry | Tombstone]


class JournaledStore(Store):
    __slots__ = ("journal",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.journal: list[Write] = []

    def set(self, key: bytes, value: bytes, expires_at_ms: int = 0) -> Entry:
        entry = super().set(key, value, expires_at_ms)
        self.journal.append((key, entry))
        return entry

    def delete(self, key: bytes) -> bool:
        existed = super().delete(key)
        tomb = self.tombstones.get(key)
        if tomb is not None:
            self.journal.append((key, tomb))
        return existed

    def take_journal(self) -> list[Write]:
        journal, self.journal = self.journal, []
        return journal


def is_tombstone(record: Entry | Tombstone) -> bool:
    return len(record) == 3
