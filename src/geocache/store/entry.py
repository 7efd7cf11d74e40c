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

# Bytes a stored entry costs beyond len(key) + len(value): the two bytes objects'
# headers (33 each, rounded up by the allocator), the entry tuple (72), its version
# int (36), and the key's share of the OrderedDict (hash table slot, index and LRU
# node). Measured with tracemalloc over 1,000,000 entries of 16-byte keys and 100-byte
# values by tests/unit/test_store_memory.py, which fails if this drifts by over 10%.
ENTRY_OVERHEAD_BYTES: Final = 280


def entry_size(key: bytes, value: bytes) -> int:
    """The bytes an entry is accounted for against max_bytes."""
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES


def newer(version: int, origin: str, than_version: int, than_origin: str) -> bool:
    """The merge rule: a write wins if its (version, origin) is larger."""
    return version > than_version or (version == than_version and origin > than_origin)
