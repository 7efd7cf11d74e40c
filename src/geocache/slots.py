"""Redis Cluster's hash slots: CRC16 of the key, or of its `{hash tag}`, mod 16384.

Exactly as Redis computes it (cluster.c `keyHashSlot`): if the key holds a `{` and a
later `}` with at least one byte between them, only the bytes between the first `{`
and the first `}` after it are hashed, so `{user1000}.following` and
`{user1000}.followers` share a slot. The CRC is CRC-16/XMODEM (polynomial 0x1021,
initial value 0), which the standard library computes in C as `binascii.crc_hqx`.

Placement builds on slots: slot >> 4 is the key's digest bucket (cluster/digest.py),
so 1,024 buckets of 16 contiguous slots each, and buckets go to owners by rendezvous
hashing (cluster/placement.py). Cluster-aware clients route by the same slots.
"""

from __future__ import annotations

import binascii
from typing import Final

SLOTS: Final = 16384
SLOT_MASK: Final = SLOTS - 1
# Digest buckets (cluster/digest.py): 1024, so a digest is 8 KiB on the wire and each
# bucket holds a thousandth of the keys; 16 contiguous slots each.
BUCKETS: Final = 1024
SLOTS_PER_BUCKET: Final = SLOTS // BUCKETS
# Bound once: compiled code reads a Final from a C static rather than the module's dict.
_crc_hqx: Final = binascii.crc_hqx


def key_slot(key: bytes) -> int:
    """The hash slot of `key` (0 .. 16383)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return _crc_hqx(key, 0) & SLOT_MASK
