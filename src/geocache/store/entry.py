"""What the store keeps per key, and what it costs.

An entry is a plain tuple `(value, expires_at_ms, version, origin)`:

- `value`: bytes.
- `expires_at_ms`: absolute wall-clock ms at which the key stops existing, 0 for never.
  Absolute, so every replica expires the key at the same moment.
- `version`: 64-bit HLC version of the write (clock.py).
- `origin`: id of the node that coordinated the write; breaks version ties.

Why a tuple and not a class: CPython's garbage collector stops tracking a tuple that
holds only bytes, ints and strs, so a million entries add nothing to each full GC pass
(a slotted object would be traversed every time), and a tuple is as small as a slotted
object. Entries are immutable: every write makes a new one.

A tombstone (a delete in cluster mode) is `(version, origin, created_wall_ms)`, kept in
its own bounded space (tombstones.py).
"""

from __future__ import annotations

from typing import Final

Entry = tuple[bytes, int, int, str]
Tombstone = tuple[int, str, int]

VALUE: Final = 0
EXPIRES_AT_MS: Final = 1
VERSION: Final = 2
ORIGIN: Final = 3

# Bytes a stored entry costs beyond len(key) + len(value), as tracemalloc counts them:
# the key's and the value's bytes headers (33 each), the entry tuple (72), its version
# int (36), and the key's share of the OrderedDict (a 32-byte LRU node plus hash table,
# index and fast-node slots: 74 to 116 bytes as the table fills from 1/3 to 2/3).
# tests/unit/test_store_memory.py measures it and fails if entry_size drifts by over
# 10%; measured on CPython 3.11: 279 at 200,000 entries and 265 at 1,000,000, for
# 16-byte keys with 100-byte values and for 8-byte keys with 1000-byte values alike.
# The process's resident memory grows by more (445 an entry at 1,000,000 against 381
# traced, bench/store.py): pymalloc rounds blocks up to a multiple of 16 and keeps arenas.
ENTRY_OVERHEAD_BYTES: Final = 280
# Bytes an entry with an expiry costs on top: its expires_at_ms int (36) and its key's
# filing in the expiry wheel's slot dict (37 to 52). Measured: 73 to 88.
EXPIRY_OVERHEAD_BYTES: Final = 80


def entry_size(key: bytes, value: bytes, expires_at_ms: int = 0) -> int:
    """The bytes an entry is accounted for against max_bytes."""
    size = len(key) + len(value) + ENTRY_OVERHEAD_BYTES
    return size + EXPIRY_OVERHEAD_BYTES if expires_at_ms else size


def newer(version: int, origin: str, than_version: int, than_origin: str) -> bool:
    """The merge rule: a write wins if its (version, origin) is larger."""
    return version > than_version or (version == than_version and origin > than_origin)
