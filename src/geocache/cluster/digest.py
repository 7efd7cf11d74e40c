"""Incremental bucket digests of what a node holds, for repair to compare owners cheaply.

Every key falls in one of `BUCKETS` buckets by its hash slot (slots.py). A bucket's
digest is the XOR of `record_hash(key, version, origin, is_tombstone, expiry_version,
expiry_origin)` over the live entries and the tombstones the node holds in that bucket:
it covers both registers (store/entry.py), so two owners whose keys hold the same value
but different expiries differ. XOR makes every change O(1):
adding a record and removing it are the same operation, and the order of changes does not matter, so
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

`keys_in_bucket(b)` lists a bucket's records from a per-bucket dict of its keys kept
beside the digest, looking each up in the store: O(keys in the bucket), no scan. The
dicts cost about 40 bytes a key (a dict slot; the key object is the store's own), and
an update costs two xxh3 hashes of the key (bucket and record), in cluster mode only.

Sans-IO: nothing here awaits, reads a clock or does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

import xxhash

from geocache.slots import BUCKETS as BUCKETS  # re-exported: repair and tests count buckets
from geocache.slots import SLOTS_PER_BUCKET, key_slot
from geocache.store.entry import Entry, Tombstone
from geocache.store.keyspace import Stamps

# 1024 buckets: a digest is 8 KiB on the wire, and each bucket holds a thousandth of the
# keys, so one differing key costs one bucket's key list (about 1,000 records at a
# million keys), not the whole keyspace. A bucket is 16 contiguous Redis Cluster hash
# slots (slots.py), so cluster-aware clients, placement and repair agree on one map.
_SLOT_SHIFT: Final = SLOTS_PER_BUCKET.bit_length() - 1
_WIRE: Final = struct.Struct(f"<{BUCKETS}Q")
# Origins whose salts are cached: node ids are few, but junk must not grow the cache.
_MAX_ORIGINS: Final = 4096

_hash: Final = xxhash.xxh3_64_intdigest

# (key, version, origin, is_tombstone, expiry_version, expiry_origin): one record as
# repair compares it, the versions of its value and expiry registers.
Record = tuple[bytes, int, str, bool, int, str]
# What the store holds for a key: the versions of Record without the key, or None.
Lookup = Callable[[bytes], Stamps | None]
FIELDS_PER_RECORD: Final = 6

# Per origin, the 64-bit salts of its (entry, tombstone, expiry register) records.
_salts: dict[str, tuple[int, int, int]] = {}


def bucket_of(key: bytes) -> int:
    """The bucket a key falls in (0 .. BUCKETS-1): its hash slot's, the same on every node."""
    return key_slot(key) >> _SLOT_SHIFT


def bucket_token(bucket: int) -> bytes:
    """A stable name for a bucket, hashed by placement in place of the key."""
    return b"bucket:%d" % bucket


def record_hash(
    key: bytes,
    version: int,
    origin: str,
    tombstone: bool,
    expiry_version: int | None = None,
    expiry_origin: str = "",
) -> int:
    """A 64-bit hash of one record: xxh3 of the key, seeded with a hash of the version
    salted by (origin, kind); when the expiry register has a version of its own, XORed
    with a hash of that, salted by its origin.

    The salt is a hash of (origin, kind), cached per origin. The version is hashed, not
    used as the seed directly: xxh3 mixes the seed of a short key almost linearly with
    the key's bytes, so keys and versions a few bits apart (q84 at v, q87 at v + 1)
    hashed to the same value and cancelled out of a bucket's XOR, hiding a difference
    from repair. A record whose registers share a version hashes as before there were two.
    """
    h = _hash(key, _hash(version.to_bytes(8, "little"), _salts_of(origin)[tombstone]))
    if expiry_version is None or (expiry_version == version and expiry_origin == origin):
        return h
    salt = _salts_of(expiry_origin)[2]
    return h ^ _hash(key, _hash(expiry_version.to_bytes(8, "little"), salt))


def _salts_of(origin: str) -> tuple[int, int, int]:
    salts = _salts.get(origin)
    if salts is None:
        if len(_salts) >= _MAX_ORIGINS:
            _salts.clear()
        raw = origin.encode("utf-8", "surrogateescape")
        salts = _salts[origin] = (_hash(b"e" + raw), _hash(b"t" + raw), _hash(b"x" + raw))
    return salts


# Both written out rather than through expiry_stamp: they run twice on every write a
# cluster node takes (the record replaced, the record written), and compiled code calls
# with a star-argument tuple through the generic path.
def entry_hash(key: bytes, entry: Entry) -> int:
    if len(entry) == 6:
        return record_hash(key, entry[2], entry[3], False, entry[4], entry[5])
    return record_hash(key, entry[2], entry[3], False)


def tombstone_hash(key: bytes, tomb: Tombstone) -> int:
    if len(tomb) == 6:
        return record_hash(key, tomb[0], tomb[1], True, tomb[4], tomb[5])
    return record_hash(key, tomb[0], tomb[1], True)


class Digest:
    """Per-bucket XOR digests and key sets, updated on every change. No I/O."""

    __slots__ = ("_keys", "_lookup", "buckets")

    def __init__(self, lookup: Lookup) -> None:
        """`lookup` gives what the store holds for a key, for `keys_in_bucket`."""
        self.buckets: list[int] = [0] * BUCKETS
        self._lookup = lookup
        # Per bucket, key -> how many records are held for it. Normally one; two for an
        # instant while the store adds a key's entry before dropping its tombstone.
        self._keys: list[dict[bytes, int]] = [{} for _ in range(BUCKETS)]

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys)

    def add(self, key: bytes, record_hash: int) -> None:
        """A record (of that hash: entry_hash, tombstone_hash) is now held for `key`."""
        b = bucket_of(key)
        self.buckets[b] ^= record_hash
        keys = self._keys[b]
        keys[key] = keys.get(key, 0) + 1

    def remove(self, key: bytes, record_hash: int) -> None:
        """A record is no longer held for `key`."""
        b = bucket_of(key)
        self.buckets[b] ^= record_hash
        keys = self._keys[b]
        count = keys.get(key, 1) - 1
        if count > 0:
            keys[key] = count
        else:
            keys.pop(key, None)

    def replace(self, key: bytes, old_hash: int, new_hash: int) -> None:
        """`key`'s record gives way to another of the same kind (entry or tombstone)."""
        self.buckets[bucket_of(key)] ^= old_hash ^ new_hash

    def clear(self) -> None:
        self.buckets = [0] * BUCKETS
        for keys in self._keys:
            keys.clear()

    def keys_in_bucket(self, bucket: int) -> list[Record]:
        """The records held in `bucket`: O(keys in the bucket) lookups, no scan."""
        lookup, out = self._lookup, []
        for key in self._keys[bucket]:
            held = lookup(key)
            if held is not None:
                out.append((key, *held))
        return out


def recompute(records: list[Record]) -> list[int]:
    """The bucket digests of `records` from scratch (for tests and audits)."""
    buckets = [0] * BUCKETS
    for key, version, origin, tombstone, x_version, x_origin in records:
        buckets[bucket_of(key)] ^= record_hash(key, version, origin, tombstone, x_version, x_origin)
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


# -- GC.BUCKET's wire form, and checks on what a peer sent ---------------------------------


def encode_records(records: list[Record]) -> list[bytes | int]:
    """GC.BUCKET's reply: a flat array key, version, origin, is_tombstone (0/1),
    expiry_version, expiry_origin, ..."""
    out: list[bytes | int] = []
    for key, version, origin, tombstone, x_version, x_origin in records:
        out += (key, version, _raw(origin), int(tombstone), x_version, _raw(x_origin))
    return out


def decode_records(reply: object) -> list[Record]:
    """GC.BUCKET's reply as records; ValueError if it is malformed."""
    if not isinstance(reply, list) or len(reply) % FIELDS_PER_RECORD:
        raise ValueError(f"bad GC.BUCKET reply: {reply!r:.100}")
    it = iter(reply)
    return [
        (as_bytes(k), as_int(v), as_text(o), bool(as_int(t)), as_int(xv), as_text(xo))
        for k, v, o, t, xv, xo in zip(it, it, it, it, it, it, strict=True)
    ]


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def as_bytes(value: object) -> bytes:
    """A reply value that must be a bulk string (an error reply raises ValueError too)."""
    if not isinstance(value, bytes):
        raise ValueError(f"expected a bulk string, got {value!r:.100}")
    return value


def as_int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r:.100}")
    return value


def as_text(value: object) -> str:
    return as_bytes(value).decode("utf-8", "surrogateescape")
