"""What the store keeps per key, and what it costs.

A key holds two registers, each merged on its own by the larger (version, origin):
the value `(value, version, origin)` and the expiry `(expires_at_ms, expiry_version,
expiry_origin)`. A SET writes both with one version; EXPIRE, PERSIST and the other
expiry commands write only the expiry, and SET ... KEEPTTL, INCR, APPEND and SETRANGE
of a key that exists only the value, so an expiry write never undoes a value written
elsewhere and a value write never undoes an expiry (registers.py merges them).

An entry is a plain tuple, in one of two shapes:

- `(value, expires_at_ms, version, origin)`: both registers written by one write (the
  common case: the entry stores one version).
- `(value, expires_at_ms, version, origin, expiry_version, expiry_origin)`: the expiry
  was written apart from the value (an EXPIRE after the SET, or a SET ... KEEPTTL).

`value` is bytes; `expires_at_ms` the absolute wall-clock ms at which the key stops
existing, 0 for never (absolute, so every replica expires the key at the same
moment); `version` a 64-bit HLC version (clock.py); `origin` the id of the node that
coordinated the write, which breaks version ties. Positions 0 to 3 mean the same in
both shapes, so code that reads the value, the expiry or the value's version indexes
either alike.

Entries are what the store hands out and takes in (journals, hints, streams, commands
read them by position); inside the keyspace each is held packed, its registers as
machine integers in front of the value in one bytes object (record.py), which the
garbage collector never tracks. Entries are immutable: every write makes a new one.

A tombstone (a delete, or an expiry, in cluster mode) holds no value:

- `(version, origin, created_wall_ms)`: a delete. It writes both registers at its
  version: the value deleted, the expiry none.
- `(version, origin, created_wall_ms, expires_at_ms, expiry_version, expiry_origin)`:
  the value deleted, or expired and forgotten, at (version, origin), and the expiry
  register: the one that ran out (an expired entry, reclaimed), or an EXPIRE newer
  than the delete. Kept so that every replica merges the later writes of the key alike
  (the expires_at_ms int is the entry's own object: the shape costs three tuple slots).

Tombstones live in their own bounded space (tombstones.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from typing_extensions import TypeIs

Entry = tuple[bytes, int, int, str] | tuple[bytes, int, int, str, int, str]
Tombstone = tuple[int, str, int] | tuple[int, str, int, int, int, str]

VALUE: Final = 0
EXPIRES_AT_MS: Final = 1
VERSION: Final = 2
ORIGIN: Final = 3
EXPIRY_VERSION: Final = 4
EXPIRY_ORIGIN: Final = 5

# Bytes a stored entry costs beyond len(key) + len(value), as tracemalloc counts them,
# held in the compact form of record.py: the key's bytes header (33), the record's
# (33) with its 13-byte header, and the key's share of the OrderedDict (a 32-byte LRU
# node plus hash table, index and fast-node slots: 74 to 116 bytes as the table fills
# from 1/3 to 2/3). tests/unit/test_store_memory.py measures it and fails if entry_size
# drifts by over 10%; measured on CPython 3.11: 184 at 200,000 entries and 170 at
# 1,000,000, for 16-byte keys with 100-byte values and for 8-byte keys with 1000-byte
# values alike (280 and 265 when entries were tuples). A value over
# record.PACK_MAX_VALUE_BYTES is held as its tuple, about 100 bytes more: under a tenth
# of such an entry. The process's resident memory grows by more (bench/store.py):
# pymalloc rounds blocks up to a multiple of 16 and keeps arenas.
ENTRY_OVERHEAD_BYTES: Final = 180
# Bytes an entry with an expiry costs on top: its expires_at_ms in the record (8) and
# its key's filing in the expiry wheel's slot dict. Measured: 38.
EXPIRY_OVERHEAD_BYTES: Final = 40
# Bytes an entry whose expiry was written apart costs on top: the expiry register's
# version and origin in the record (12), plus allocator rounding. Measured
# (test_store_memory.py, 16-byte keys, 100-byte values, 200,000 entries): 27.
SPLIT_OVERHEAD_BYTES: Final = 28


def entry_size(key: bytes, value: bytes, expires_at_ms: int = 0, split: bool = False) -> int:
    """The bytes an entry is accounted for against max_bytes (`split`: the six-field shape)."""
    size = len(key) + len(value) + ENTRY_OVERHEAD_BYTES
    if expires_at_ms:
        size += EXPIRY_OVERHEAD_BYTES
    return size + SPLIT_OVERHEAD_BYTES if split else size


def stored_size(key: bytes, entry: Entry) -> int:
    """`entry_size` of a stored entry."""
    return entry_size(key, entry[0], entry[1], len(entry) == 6)


def newer(version: int, origin: str, than_version: int, than_origin: str) -> bool:
    """The merge rule: a write wins if its (version, origin) is larger."""
    return version > than_version or (version == than_version and origin > than_origin)


def is_tombstone(record: Entry | Tombstone) -> TypeIs[Tombstone]:
    """Whether a record (as journals, hints and streams carry them) is a tombstone."""
    return not isinstance(record[0], bytes)


def expiry_stamp(entry: Entry) -> tuple[int, str]:
    """The (version, origin) of the entry's expiry register."""
    if len(entry) == 6:
        return entry[4], entry[5]
    return entry[2], entry[3]


def latest_version(record: Entry | Tombstone) -> int:
    """The version of the newest write the record holds (either register): what GETVER,
    CAS, WATCH and HTTP ETags show, and what a forwarded write must exceed."""
    if is_tombstone(record):
        return max(record[0], record[4]) if len(record) == 6 else record[0]
    return max(record[2], record[4]) if len(record) == 6 else record[2]


def tombstone_expiry(tomb: Tombstone) -> tuple[int, int, str]:
    """The tombstone's expiry register: (expires_at_ms, version, origin)."""
    if len(tomb) == 6:
        return tomb[3], tomb[4], tomb[5]
    return 0, tomb[0], tomb[1]


def make_entry(
    value: bytes, expires_at_ms: int, stamp: tuple[int, str], x: tuple[int, str]
) -> Entry:
    """An entry from its registers, in the four-field shape when they share a version."""
    if x == stamp:
        return (value, expires_at_ms, stamp[0], stamp[1])
    return (value, expires_at_ms, stamp[0], stamp[1], x[0], x[1])


def make_tombstone(
    stamp: tuple[int, str], created_wall_ms: int, expires_at_ms: int, x: tuple[int, str]
) -> Tombstone:
    """A tombstone from its registers, in the three-field shape for a delete (no expiry,
    at the tombstone's version)."""
    if x == stamp and not expires_at_ms:
        return (stamp[0], stamp[1], created_wall_ms)
    return (stamp[0], stamp[1], created_wall_ms, expires_at_ms, x[0], x[1])
