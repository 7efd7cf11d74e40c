"""Incremental bucket digests of what a node holds, for repair to compare owners cheaply.

Every key falls in one of `BUCKETS` buckets by its xxh3 hash. A bucket's digest is the XOR
of `record_hash(key, version, origin, is_tombstone)` over the live entries and the
tombstones the node holds in that bucket. XOR makes every change O(1): adding a record
and removing it are the same operation, and the order of changes does not matter, so
two nodes holding the same records in a bucket have the same digest however they got
there, and (but for a 2**-64 collision) different records give different digests.

What counts: exactly what the store holds, entries (expired ones too, until they are
reclaimed and become tombstones) and tombstones. Evicted keys leave the digest: an
eviction is local, so the evicting replica's bucket then differs from the other owners'.
That difference is harmless: repair only pulls records newer than the ones held and
copies keys a node lacks only while it is warming, so an evicted key is never pulled
back by a routine round (repair.py).

Placement is per bucket (cluster.py: `owners(key)` is the owners of `bucket_of(key)`), so
all keys of a bucket have the same owners and two owners of a bucket should hold exactly
the same records in it: equal digests are the convergence criterion.

`keys_in_bucket(b)` lists a bucket's records from a per-bucket dict kept beside the
digest: O(records in the bucket), no scan of the store. The dicts cost about 100 bytes a
key (a dict slot and a small tuple sharing the entry's version and origin objects),
in cluster mode only.

Sans-IO: nothing here awaits, reads a clock or does I/O.
"""

from __future__ import annotations

import struct
from typing import Final

import xxhash

# 1024 buckets: a digest is 8 KiB on the wire, and each bucket holds a thousandth of the
# keys, so one differing key costs one bucket's key list (about 1,000 records at a
# million keys), not the whole keyspace.
BUCKETS: Final = 1024
_MASK: Final = BUCKETS - 1
_WIRE: Final = struct.Struct(f"<{BUCKETS}Q")
# Seed of the bucket hash: distinct from the record hash's (0), so a key's bucket and its
# records' hashes are independent.
_BUCKET_SEED: Final = 0x6765_6F63_6163_6865  # "geocache"
_RECORD_HEAD: Final = struct.Struct("<QBI")

_hash = xxhash.xxh3_64_intdigest

# (key, version, origin, is_tombstone): one record as repair compares it.
Record = tuple[bytes, int, str, bool]


def bucket_of(key: bytes) -> int:
    """The bucket a key falls in (0 .. BUCKETS-1); the same on every node."""
    return _hash(key, seed=_BUCKET_SEED) & _MASK


def bucket_token(bucket: int) -> bytes:
    """A stable name for a bucket, hashed by placement in place of the key."""
    return b"bucket:%d" % bucket


def record_hash(key: bytes, version: int, origin: str, tombstone: bool) -> int:
    """A 64-bit hash of one record; the key's length is framed, so fields cannot run together."""
    head = _RECORD_HEAD.pack(version, tombstone, len(key))
    return _hash(head + key + origin.encode("utf-8", "surrogateescape"))


class Digest:
    """Per-bucket XOR digests and record lists, updated on every change. No I/O."""

    __slots__ = ("_records", "buckets")

    def __init__(self) -> None:
        self.buckets: list[int] = [0] * BUCKETS
        # Per bucket, key -> (version, origin, is_tombstone) of what is held.
        self._records: list[dict[bytes, tuple[int, str, bool]]] = [{} for _ in range(BUCKETS)]

    def __len__(self) -> int:
        return sum(len(r) for r in self._records)

    def add(self, key: bytes, version: int, origin: str, tombstone: bool) -> None:
        """A record is now held for `key` (the previous one was `remove`d first)."""
        b = bucket_of(key)
        self.buckets[b] ^= record_hash(key, version, origin, tombstone)
        self._records[b][key] = (version, origin, tombstone)

    def remove(self, key: bytes, version: int, origin: str, tombstone: bool) -> None:
        """A record is no longer held for `key`."""
        b = bucket_of(key)
        self.buckets[b] ^= record_hash(key, version, origin, tombstone)
        records = self._records[b]
        # The store may add a key's new record before removing its old one (a write
        # replacing a tombstone): only forget the key if this was the record listed.
        if records.get(key) == (version, origin, tombstone):
            del records[key]

    def clear(self) -> None:
        self.buckets = [0] * BUCKETS
        for records in self._records:
            records.clear()

    def keys_in_bucket(self, bucket: int) -> list[Record]:
        """The records held in `bucket`: O(records in the bucket)."""
        return [(k, v, o, t) for k, (v, o, t) in self._records[bucket].items()]


def recompute(records: list[Record]) -> list[int]:
    """The bucket digests of `records` from scratch (for tests and audits)."""
    buckets = [0] * BUCKETS
    for key, version, origin, tombstone in records:
        buckets[bucket_of(key)] ^= record_hash(key, version, origin, tombstone)
    return buckets


def differing(mine: list[int], theirs: list[int]) -> list[int]:
    """The buckets whose digests differ."""
    return [b for b in range(BUCKETS) if mine[b] != theirs[b]]


def encode_buckets(buckets: list[int]) -> bytes:
    """The digests as GC.DIGEST sends them: 1024 little-endian uint64s (8 KiB)."""
    return _WIRE.pack(*buckets)


def decode_buckets(data: bytes) -> list[int]:
    """GC.DIGEST's reply as digests; ValueError if it is not exactly 8 KiB."""
    if len(data) != _WIRE.size:
        raise ValueError(f"a digest is {_WIRE.size} bytes, not {len(data)}")
    return list(_WIRE.unpack(data))
