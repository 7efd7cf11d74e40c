"""Merging a replicated record into what a key holds, one register at a time.

A record (entry.py: an entry or a tombstone) is the whole state of a key as the node
that sent it held it: a value register and an expiry register, each with its own
(version, origin). Merging takes, for each register, the one with the larger (version,
origin); which of the two shapes the result is stored in (an entry, or a tombstone when
the value is deleted or the expiry has run out) follows from the merged registers. So
the outcome does not depend on the order records arrive in, nor on duplicates: two
replicas that merged the same records hold the same registers.

Three rules beside the plain maximum:

- A tombstone's value is "nothing" at its version. A value at exactly that (version,
  origin) fills in a six-field tombstone (a delete's has three): that one is an entry
  that expired and was reclaimed, and the record re-supplies the value it forgot (a
  version is minted once per key, so no deleted value can share it). Without this, a
  TTL extended on another replica just before it ran out would bring the key back
  there and not here. What
  cannot be re-supplied: an expiry write made on an older value (concurrently with the
  newer one), arriving after the newer value's expiry ran out and was reclaimed here.
  The key then stays gone here while a replica that had the expiry write in time keeps
  the value until that expiry passes (docs/architecture.md).
- The resurrection floor (tombstones.py): for a key not held live here, a register at
  or below the floor is not taken (a delete newer than it may have been forgotten).
  With no tombstone to carry it either, the record's expiry is dropped with its value.
- A merged entry whose expiry has passed is kept as a tombstone (its value forgotten),
  which retires every older write just as a delete would.

Sans-IO and clock-free: the caller passes the time.
"""

from __future__ import annotations

from geocache.store.entry import (
    Entry,
    Tombstone,
    expiry_stamp,
    is_tombstone,
    make_entry,
    make_tombstone,
    tombstone_expiry,
)

# (value or None for a tombstone, (version, origin)), and (expires_at_ms, (version, origin)).
ValueRegister = tuple[bytes | None, tuple[int, str]]
ExpiryRegister = tuple[int, tuple[int, str]]


def registers(record: Entry | Tombstone) -> tuple[ValueRegister, ExpiryRegister]:
    """The record's value and expiry registers."""
    if is_tombstone(record):
        expires_at_ms, x_version, x_origin = tombstone_expiry(record)
        return (None, (record[0], record[1])), (expires_at_ms, (x_version, x_origin))
    return (record[0], (record[2], record[3])), (record[1], expiry_stamp(record))


def merge(
    held: Entry | Tombstone | None, incoming: Entry | Tombstone, floor: int, now_ms: int
) -> Entry | Tombstone | None:
    """What the key holds once `incoming` is merged into `held`; None if nothing changes."""
    (in_value, in_stamp), in_expiry = registers(incoming)
    if held is None:
        if in_value is not None and in_stamp[0] <= floor:
            return None
        return _compose((in_value, in_stamp), in_expiry, now_ms)
    (held_value, held_stamp), held_expiry = registers(held)
    take_value = in_stamp > held_stamp or (
        in_stamp == held_stamp and held_value is None and in_value is not None and len(held) == 6
    )
    if take_value and in_value is not None and held_value is None and in_stamp[0] <= floor:
        take_value = False
    take_expiry = in_expiry[1] > held_expiry[1] and (
        held_value is not None or in_expiry[1][0] > floor
    )
    if not (take_value or take_expiry):
        return None
    merged = _compose(
        (in_value, in_stamp) if take_value else (held_value, held_stamp),
        in_expiry if take_expiry else held_expiry,
        now_ms,
    )
    return None if same_record(merged, held) else merged


def _compose(value: ValueRegister, expiry: ExpiryRegister, now_ms: int) -> Entry | Tombstone:
    data, stamp = value
    expires_at_ms, x_stamp = expiry
    if data is not None and not (expires_at_ms and expires_at_ms <= now_ms):
        return make_entry(data, expires_at_ms, stamp, x_stamp)
    return make_tombstone(stamp, now_ms, expires_at_ms, x_stamp)


def same_record(a: Entry | Tombstone, b: Entry | Tombstone) -> bool:
    """Equal registers (a tombstone's creation time aside)."""
    if is_tombstone(a) and is_tombstone(b):
        return a[:2] == b[:2] and a[3:] == b[3:]
    return a == b
