"""The keyspace: entries, LRU order, expiry, memory accounting, tombstones."""

from geocache.store.entry import (
    ENTRY_OVERHEAD_BYTES,
    EXPIRY_OVERHEAD_BYTES,
    Entry,
    Tombstone,
    entry_size,
    newer,
)
from geocache.store.errors import StoreError, TooLarge
from geocache.store.keyspace import NoTombstones, Store, StoreStats
from geocache.store.tombstones import Tombstones

__all__ = [
    "ENTRY_OVERHEAD_BYTES",
    "EXPIRY_OVERHEAD_BYTES",
    "Entry",
    "NoTombstones",
    "Store",
    "StoreError",
    "StoreStats",
    "Tombstone",
    "Tombstones",
    "TooLarge",
    "entry_size",
    "newer",
]
