"""The compact form the keyspace holds an entry in: one bytes object, header then value.

An entry (entry.py) as a tuple costs the tuple (72 bytes with its GC header) and a
64-bit version int (36) beside the key and the value. Held packed, its registers are
machine integers in front of the value, in the value's own bytes object: 13 bytes for
the common shape, and no object at all but that one.

    byte 0        shape: HAS_EXPIRY (expires_at_ms is not 0), SPLIT (the expiry register
                  has a version of its own: the six-field entry)
    bytes 1-8     version, unsigned 64-bit little-endian (versions are 64-bit: clock.py)
    bytes 9-12    origin, as an index into the store's `Origins`
    8 bytes       expires_at_ms, signed, when HAS_EXPIRY
    12 bytes      expiry version and expiry origin index, when SPLIT
    the rest      the value

A read copies the value out of the record (a slice). That copy is cheap for small values
and not for large ones, where the tuple's overhead is small beside the value anyway: a
value longer than PACK_MAX_VALUE_BYTES is held as its entry tuple, unchanged. `Held` is
either form; the helpers here read both.

Records never leave the store: what it hands out and takes in (journals, replication,
commands) are entry tuples, unpacked on the way out.
"""

from __future__ import annotations

from struct import Struct
from typing import Final

from geocache.store.entry import Entry

Held = bytes | Entry

HAS_EXPIRY: Final = 1
SPLIT: Final = 2
# One layout per shape (index: the shape byte), and where the value starts.
_LAYOUTS: Final = (Struct("<BQI"), Struct("<BQIq"), Struct("<BQIQI"), Struct("<BQIqQI"))
VALUE_AT: Final = (13, 21, 25, 33)
_EXPIRES: Final = Struct("<q")
_EXPIRES_AT: Final = 13  # expires_at_ms follows the fixed part, when there is one
_SPLIT_AT: Final = (13, 21)  # the expiry register's stamp, by HAS_EXPIRY
_STAMP: Final = Struct("<QI")
# 1 KiB: below it the copy a read makes is cheaper than a tuple's bookkeeping would be
# worth; above it the 108 bytes a tuple costs are under a tenth of the value.
PACK_MAX_VALUE_BYTES: Final = 1024


class Origins:
    """The origins (node ids) of a store's records, each numbered once. A cluster has a
    handful; the table only grows (by one per node id ever seen writing here)."""

    __slots__ = ("_ids", "_names")

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self._names)

    def id_of(self, origin: str) -> int:
        found = self._ids.get(origin)
        if found is not None:
            return found
        number = self._ids[origin] = len(self._names)
        self._names.append(origin)
        return number

    def name(self, number: int) -> str:
        return self._names[number]


def pack(entry: Entry, origins: Origins) -> Held:
    """The form `entry` is held in: packed, or the tuple itself for a large value."""
    value, expires_at_ms, version, origin = entry[0], entry[1], entry[2], entry[3]
    if len(value) > PACK_MAX_VALUE_BYTES:
        return entry
    origin_id = origins.id_of(origin)
    if len(entry) == 6:
        x_version, x_origin = entry[4], origins.id_of(entry[5])
        if expires_at_ms:
            head = _LAYOUTS[3].pack(3, version, origin_id, expires_at_ms, x_version, x_origin)
        else:
            head = _LAYOUTS[2].pack(2, version, origin_id, x_version, x_origin)
    elif expires_at_ms:
        head = _LAYOUTS[1].pack(1, version, origin_id, expires_at_ms)
    else:
        head = _LAYOUTS[0].pack(0, version, origin_id)
    return head + value


def unpack(held: Held, origins: Origins) -> Entry:
    """The entry tuple of a held record."""
    if not isinstance(held, bytes):
        return held  # a large value's entry tuple
    packed = held
    shape = packed[0]
    value = packed[VALUE_AT[shape] :]
    if shape == 0:
        _shape, version, origin_id = _LAYOUTS[0].unpack_from(packed)
        return (value, 0, version, origins.name(origin_id))
    if shape == HAS_EXPIRY:
        _shape, version, origin_id, expires_at_ms = _LAYOUTS[1].unpack_from(packed)
        return (value, expires_at_ms, version, origins.name(origin_id))
    expires_at_ms = expiry_of(packed)
    version, origin_id = _STAMP.unpack_from(packed, 1)
    x_version, x_origin = _STAMP.unpack_from(packed, _SPLIT_AT[shape & HAS_EXPIRY])
    origin, x_origin_name = origins.name(origin_id), origins.name(x_origin)
    return (value, expires_at_ms, version, origin, x_version, x_origin_name)


def expiry_of(held: Held) -> int:
    """The record's expires_at_ms (0: never)."""
    if isinstance(held, bytes):
        if held[0] & HAS_EXPIRY:
            expires_at_ms: int = _EXPIRES.unpack_from(held, _EXPIRES_AT)[0]
            return expires_at_ms
        return 0
    return held[1]


def value_of(held: Held) -> bytes:
    """The record's value (a copy, for a packed record)."""
    if isinstance(held, bytes):
        return held[VALUE_AT[held[0]] :]
    return held[0]


def version_of(held: Held) -> int:
    """The version of the record's value register."""
    if isinstance(held, bytes):
        version: int = _STAMP.unpack_from(held, 1)[0]
        return version
    return held[2]


def sizes_of(held: Held) -> tuple[int, int, bool]:
    """(len(value), expires_at_ms, split): what `entry_size` needs, without a copy."""
    if isinstance(held, bytes):
        shape = held[0]
        return len(held) - VALUE_AT[shape], expiry_of(held), bool(shape & SPLIT)
    return len(held[0]), held[1], len(held) == 6
