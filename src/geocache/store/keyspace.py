"""The keyspace: entries in exact LRU order, expiry, limits, versions and the merge rule.

Theory of operation:

- `_data` is an OrderedDict from key to its entry (entry.py), least recently used
  first, each held in the compact form of record.py (one bytes object: the registers
  as machine integers, then the value). A read or a write moves the key to the end;
  eviction pops from the front. All O(1). Entries go in and out as tuples.
- An entry whose `expires_at_ms` has passed is never returned: every access checks it
  (lazy expiry), and `active_expire` reclaims expired entries from the timing wheel
  within a budget of keys per call (expiry.py).
- `used_bytes` is the sum of `entry_size` over live entries. A write that would pass
  `max_bytes` or `max_keys` first evicts least recently used entries; a write that could
  never fit raises TooLarge before anything changes. Eviction is local: it never leaves
  a tombstone.
- Every write carries a version. A key holds two registers, its value and its expiry,
  each with its own version (entry.py). Local writes take a version from the HLC and
  write one register (`set_value`, `expire_at`) or both (`set`, `delete`); replicated
  records (`apply`, `apply_delete`) bring their own, and each register keeps the larger
  (version, origin) (registers.py), so replicas converge whatever order writes arrive in.
  A received version the HLC does not admit (out of range, or more than its
  `max_ahead_ms` ahead of this node's wall clock) is refused with VersionRefused before
  anything changes, so no record can carry a forged far-future version into this store
  or its clock.
- In cluster mode deletes and expirations leave tombstones (tombstones.py); a standalone
  store uses `NoTombstones`, which remembers nothing.

The store is not thread-safe: a node's event loop owns it, and LocalCache locks it.
Nothing here awaits or does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from random import Random
from typing import Protocol

from geocache.clock import HLC, Clock
from geocache.store import counters
from geocache.store.entry import (
    ENTRY_OVERHEAD_BYTES,
    EXPIRY_OVERHEAD_BYTES,
    SPLIT_OVERHEAD_BYTES,
    Entry,
    Tombstone,
    expiry_stamp,
    is_tombstone,
    latest_version,
    make_entry,
    make_tombstone,
    stored_size,
    tombstone_expiry,
)
from geocache.store.errors import TooLarge, VersionRefused
from geocache.store.expiry import ExpiryWheel
from geocache.store.record import (
    HAS_EXPIRY,
    VALUE_AT,
    Held,
    Origins,
    expiry_of,
    pack,
    sizes_of,
    unpack,
)
from geocache.store.registers import merge

# What a key holds, as repair compares it: (version, origin, is_tombstone, expiry_version,
# expiry_origin), the versions of its value and expiry registers.
Stamps = tuple[int, str, bool, int, str]

# RANDOMKEY's tries at a random entry before it filters every key: an expired pick is
# rare unless most keys have expired unreclaimed.
RANDOM_KEY_TRIES = 16


class TombstoneSpace(Protocol):
    floor: int

    def __len__(self) -> int: ...
    def get(self, key: bytes) -> Tombstone | None: ...
    def put(self, key: bytes, version: int, origin: str, now_ms: int) -> None: ...
    def keep(self, key: bytes, tomb: Tombstone) -> None: ...
    def discard(self, key: bytes) -> None: ...
    def clear(self) -> None: ...
    def reap(self, now_ms: int, max_count: int) -> int: ...


class NoTombstones:
    """A standalone node forgets deletes: nothing can replay an older write to it."""

    __slots__ = ("floor",)

    def __init__(self) -> None:
        self.floor = 0

    def __len__(self) -> int:
        return 0

    def get(self, key: bytes) -> Tombstone | None:
        return None

    def put(self, key: bytes, version: int, origin: str, now_ms: int) -> None:
        pass

    def keep(self, key: bytes, tomb: Tombstone) -> None:
        pass

    def discard(self, key: bytes) -> None:
        pass

    def clear(self) -> None:
        pass

    def reap(self, now_ms: int, max_count: int) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class StoreStats:
    hits: int
    misses: int
    evictions: int
    expirations: int
    keys: int
    bytes: int
    tombstones: int
    max_bytes: int
    max_keys: int


class Store:
    __slots__ = (
        "_clock",
        "_data",
        "_origins",
        "_wheel",
        "evictions",
        "expirations",
        "hits",
        "hlc",
        "max_bytes",
        "max_keys",
        "misses",
        "node_id",
        "on_change",
        "tombstones",
        "used_bytes",
        "versions_refused",
    )

    def __init__(
        self,
        clock: Clock,
        *,
        max_bytes: int = 0,
        max_keys: int = 0,
        node_id: str = "local",
        tombstones: TombstoneSpace | None = None,
        hlc: HLC | None = None,
    ) -> None:
        if max_bytes < 0 or max_keys < 0:
            raise ValueError("max_bytes and max_keys must be 0 (no limit) or positive")
        self._clock = clock
        self._data: OrderedDict[bytes, Held] = OrderedDict()
        self._origins = Origins()
        self._wheel = ExpiryWheel()
        self.max_bytes = max_bytes
        self.max_keys = max_keys
        self.node_id = node_id
        self.tombstones: TombstoneSpace = tombstones if tombstones is not None else NoTombstones()
        self.hlc = hlc if hlc is not None else HLC(clock)
        self.used_bytes = 0
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.versions_refused = 0
        # Told of every change a read-through must know of (origin/readthrough.py):
        # `(key, value, purge)`: key None for all; value the new value of a write, else
        # None; purge True for writes, deletes and flushes (the old value is dead), False
        # for eviction and expiry (it just left here).
        self.on_change: Callable[[bytes | None, bytes | None, bool], None] | None = None

    # -- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        """Entries held, including expired ones not yet reclaimed (as Redis's DBSIZE)."""
        return len(self._data)

    def __contains__(self, key: bytes) -> bool:
        return self.peek(key) is not None

    def get(self, key: bytes) -> bytes | None:
        """The value of a live key, counting a hit or miss and making it most recent."""
        held = self._data.get(key)
        if held is None or (
            (held[0] & HAS_EXPIRY if isinstance(held, bytes) else held[1])
            and expiry_of(held) <= self._clock.wall_ms()
            and self._expire(key)
        ):
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return held[VALUE_AT[held[0]] :] if isinstance(held, bytes) else held[0]

    def get_shared(self, key: bytes) -> bytes | None:
        """`get` for threads that share the store, without their lock (LocalCache): the
        value of a key that has not expired, made most recent and counted a hit; None
        for a missing or expired key, counted nothing (the caller's locked `get` then
        counts the miss and reclaims the entry). It reads the table once and moves the
        key once, each atomic under the GIL, and writes nothing else but the hit count
        (which a race may leave one short); an entry removed between the two steps is
        returned as it was read."""
        held = self._data.get(key)
        if held is None or (
            (held[0] & HAS_EXPIRY if isinstance(held, bytes) else held[1])
            and expiry_of(held) <= self._clock.wall_ms()
        ):
            return None
        self.hits += 1
        try:  # noqa: SIM105 (contextlib.suppress costs a context manager per read)
            self._data.move_to_end(key)
        except KeyError:
            pass  # removed by another thread since the read: the read came first
        return held[VALUE_AT[held[0]] :] if isinstance(held, bytes) else held[0]

    def lookup(self, key: bytes) -> Entry | None:
        """The live entry, counting a hit or miss and making it most recent."""
        entry = self.peek(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return entry

    def peek(self, key: bytes) -> Entry | None:
        """The live entry, without counting or touching LRU order."""
        held = self._data.get(key)
        if held is None:
            return None
        entry = unpack(held, self._origins)
        if entry[1] and entry[1] <= self._clock.wall_ms() and self._expire(key):
            return None
        return entry

    def reclaim_if_expired(self, key: bytes) -> None:
        """Reclaim the key's entry if it has expired (counted, as any lookup would),
        without reading it: what a plain SET needs before it overwrites the key."""
        held = self._data.get(key)
        if held is not None and 0 < expiry_of(held) <= self._clock.wall_ms():
            self._expire(key)

    def keys(self) -> Iterator[bytes]:
        """Live keys, least recently used first (a snapshot: safe to write while iterating)."""
        now = self._clock.wall_ms()
        for key, held in list(self._data.items()):
            expires_at_ms = expiry_of(held)
            if not expires_at_ms or expires_at_ms > now:
                yield key

    def items(self) -> Iterator[tuple[bytes, Entry]]:
        """Live (key, entry) pairs, least recently used first (a snapshot)."""
        now = self._clock.wall_ms()
        for key, held in list(self._data.items()):
            entry = unpack(held, self._origins)
            if not entry[1] or entry[1] > now:
                yield key, entry

    def random_key(self, rng: Random) -> bytes | None:
        """A live key picked at random (RANDOMKEY), or None when there is none.

        O(n) in the worst case (the OrderedDict has no random access); a few tries skip
        expired entries, as Redis's dbRandomKey does, before a full filtered pass.
        """
        data = self._data
        for _ in range(RANDOM_KEY_TRIES):
            if not data:
                return None
            key = next(islice(data, rng.randrange(len(data)), None))
            if self.peek(key) is not None:
                return key
        live = list(self.keys())
        return rng.choice(live) if live else None

    def ttl_ms(self, key: bytes) -> int:
        """Redis's PTTL: -2 for no key, -1 for no expiry, else ms left."""
        entry = self.peek(key)
        if entry is None:
            return -2
        if not entry[1]:
            return -1
        return max(entry[1] - self._clock.wall_ms(), 0)

    def stats(self) -> StoreStats:
        return StoreStats(
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            expirations=self.expirations,
            keys=len(self._data),
            bytes=self.used_bytes,
            tombstones=len(self.tombstones),
            max_bytes=self.max_bytes,
            max_keys=self.max_keys,
        )

    # -- local writes ----------------------------------------------------------------

    def set(self, key: bytes, value: bytes, expires_at_ms: int = 0) -> Entry:
        """Store a value written here, both registers at one new version; returns the entry."""
        return self._write(key, (value, expires_at_ms, self.hlc.now(), self.node_id))

    def set_value(self, key: bytes, value: bytes) -> Entry:
        """Write only the value register of a live key (SET KEEPTTL, APPEND...): its expiry
        stays as it is, with its own version. A key not held live is `set` with no expiry."""
        entry = self.peek(key)
        if entry is None:
            return self.set(key, value)
        return self._replace_value(key, value, entry)

    def delete(self, key: bytes) -> bool:
        """Delete a key written here; True if a live key was removed."""
        existed = self.peek(key) is not None
        if existed:
            self._remove(key)
        if self.on_change is not None:
            self.on_change(key, None, True)
        # Even a delete of a key not held here is remembered (in cluster mode): a write
        # of it may still be on its way from another node.
        self.tombstones.put(key, self.hlc.now(), self.node_id, self._clock.wall_ms())
        return existed

    def expire_at(self, key: bytes, expires_at_ms: int) -> bool:
        """Give a live key a new absolute expiry (0 removes it), writing only its expiry
        register, at a new version. A time already past deletes the key (as Redis does)."""
        entry = self.peek(key)
        if entry is None:
            return False
        if expires_at_ms and expires_at_ms <= self._clock.wall_ms():
            return self.delete(key)
        stamp = (self.hlc.now(), self.node_id)
        self._write(key, make_entry(entry[0], expires_at_ms, (entry[2], entry[3]), stamp))
        return True

    def incr_by(self, key: bytes, delta: int) -> int:
        """INCRBY: add to the integer value (missing counts as 0), keeping the key's expiry."""
        entry = self.peek(key)
        current = counters.parse_int(entry[0]) if entry is not None else 0
        result = counters.add_int(current, delta)
        if entry is None:
            self.set(key, str(result).encode())
        else:
            self._replace_value(key, str(result).encode(), entry)
        return result

    def incr_by_float(self, key: bytes, increment: bytes) -> bytes:
        """INCRBYFLOAT: add a decimal increment; returns the new value as stored."""
        entry = self.peek(key)
        result = counters.add_float(entry[0] if entry is not None else b"0", increment)
        if entry is None:
            self.set(key, result)
        else:
            self._replace_value(key, result, entry)
        return result

    def flush(self) -> None:
        """Drop every entry (FLUSHALL). Tombstones go too, raising the resurrection floor."""
        self._data.clear()
        self._wheel.clear()
        self.used_bytes = 0
        if self.on_change is not None:
            self.on_change(None, None, True)
        self.tombstones.clear()
        self.tombstones.floor = max(self.tombstones.floor, self.hlc.now())

    def swap_contents(self, other: Store) -> None:
        """SWAPDB: exchange every entry with `other` (counters and limits stay put)."""
        self._data, other._data = other._data, self._data
        self._origins, other._origins = other._origins, self._origins  # numbers their records
        self._wheel, other._wheel = other._wheel, self._wheel
        self.used_bytes, other.used_bytes = other.used_bytes, self.used_bytes

    # -- replicated writes -------------------------------------------------------------

    def apply(self, key: bytes, record: Entry | Tombstone) -> bool:
        """Merge a record from another node into what is held; True if anything changed.

        Each register keeps the larger (version, origin) (registers.py). A merged entry
        already expired is held as a tombstone (the key is gone, and older writes stay
        retired). Dropped: a value at or below the resurrection floor for a key not held
        live, and an entry too large for this store (it cannot be held here; the other
        replicas keep it).
        """
        self._admit(latest_version(record))
        self.hlc.update(latest_version(record))
        packed = self._data.get(key)
        held: Entry | Tombstone | None = None if packed is None else unpack(packed, self._origins)
        if held is None:
            held = self.tombstones.get(key)
        merged = merge(held, record, self.tombstones.floor, self._clock.wall_ms())
        if merged is None:
            return False
        if is_tombstone(merged):
            if key in self._data:
                self._remove(key)
            self.tombstones.keep(key, merged)
            if self.on_change is not None:
                self.on_change(key, None, True)
            return True
        if self.max_bytes and stored_size(key, merged) > self.max_bytes:
            return False
        self.tombstones.discard(key)
        self._put(key, merged)
        return True

    def apply_delete(self, key: bytes, version: int, origin: str) -> bool:
        """Apply a delete from another node (both registers at its version); True if it
        changed anything."""
        return self.apply(key, (version, origin, self._clock.wall_ms()))

    def version_of(self, key: bytes) -> Stamps | None:
        """The versions of what is held for `key` (live, expired or a tombstone), for repair."""
        entry = self._entry_at(key)
        if entry is not None:
            return (entry[2], entry[3], False, *expiry_stamp(entry))
        tomb = self.tombstones.get(key)
        if tomb is None:
            return None
        _expires, x_version, x_origin = tombstone_expiry(tomb)
        return tomb[0], tomb[1], True, x_version, x_origin

    def _admit(self, version: int) -> None:
        """Refuse a received version the clock does not admit (VersionRefused)."""
        hlc = self.hlc
        if not hlc.admits(version):
            self.versions_refused += 1
            raise VersionRefused(version, hlc.ahead_ms(version), hlc.max_ahead_ms)

    # -- background ------------------------------------------------------------------

    def active_expire(self, max_keys: int) -> int:
        """Reclaim expired entries and old tombstones, looking at most `max_keys` keys.

        Returns how many keys were looked at; less than `max_keys` means nothing due
        is left. The caller spreads calls over time to bound the CPU taken per tick.
        """
        now = self._clock.wall_ms()
        done = self._wheel.reap(now, max_keys, self._reap_one)
        if done < max_keys:
            done += self.tombstones.reap(now, max_keys - done)
        return done

    # -- internals -------------------------------------------------------------------

    def _write(self, key: bytes, entry: Entry) -> Entry:
        """Hold an entry written here (JournaledStore journals it)."""
        self._put(key, entry)
        # A delete's tombstone is older than this write: drop it, as `apply` does on
        # the replicas, so that every replica keeps the same tombstones.
        self.tombstones.discard(key)
        return entry

    def _replace_value(self, key: bytes, value: bytes, entry: Entry) -> Entry:
        """Write the value register of the live `entry`, keeping its expiry register."""
        stamp = (self.hlc.now(), self.node_id)
        return self._write(key, make_entry(value, entry[1], stamp, expiry_stamp(entry)))

    def _put(self, key: bytes, entry: Entry) -> None:
        size = len(key) + len(entry[0]) + ENTRY_OVERHEAD_BYTES
        if entry[1]:
            size += EXPIRY_OVERHEAD_BYTES
        if len(entry) == 6:
            size += SPLIT_OVERHEAD_BYTES
        max_bytes = self.max_bytes
        if max_bytes and size > max_bytes:
            raise TooLarge("entry", size, max_bytes)
        data = self._data
        old = data.get(key)
        data[key] = pack(entry, self._origins)
        if self.on_change is not None:
            self.on_change(key, entry[0], True)
        if old is None:
            self.used_bytes += size
            old_expires = 0
        else:
            data.move_to_end(key)
            old_expires = expiry_of(old)
            self.used_bytes += size - held_size(key, old)
        # The new entry is last in LRU order and fits alone, so eviction never takes it.
        if (max_bytes and self.used_bytes > max_bytes) or (
            self.max_keys and len(data) > self.max_keys
        ):
            self._evict()
        if entry[1]:
            self._wheel.add(key, entry[1], old_expires)
        elif old_expires:
            self._wheel.discard(key, old_expires)

    def _evict(self) -> None:
        """Evict least recently used entries until both limits hold."""
        data, max_bytes, max_keys = self._data, self.max_bytes, self.max_keys
        while (max_bytes and self.used_bytes > max_bytes) or (max_keys and len(data) > max_keys):
            old_key, old = self._pop_lru()
            self.used_bytes -= stored_size(old_key, old)
            self.evictions += 1
            if self.on_change is not None:
                self.on_change(old_key, None, False)
            if old[1]:
                self._wheel.discard(old_key, old[1])

    def _entry_at(self, key: bytes) -> Entry | None:
        """The entry held for `key`, live or expired, as a tuple."""
        held = self._data.get(key)
        return None if held is None else unpack(held, self._origins)

    def _held_entries(self) -> list[tuple[bytes, Entry]]:
        """Every (key, entry) held, live or expired, least recently used first."""
        origins = self._origins
        return [(key, unpack(held, origins)) for key, held in self._data.items()]

    def _pop_lru(self) -> tuple[bytes, Entry]:
        """Take the least recently used entry out of the table (the caller accounts)."""
        key, held = self._data.popitem(last=False)
        return key, unpack(held, self._origins)

    def _remove(self, key: bytes) -> Entry:
        entry = unpack(self._data.pop(key), self._origins)
        self.used_bytes -= stored_size(key, entry)
        if entry[1]:
            self._wheel.discard(key, entry[1])
        return entry

    def _expire(self, key: bytes) -> bool:
        """Reclaim an expired entry; always True, so lookups can chain it in a condition."""
        entry = self._remove(key)
        self.expirations += 1
        if self.on_change is not None:
            self.on_change(key, None, False)
        # In cluster mode the expired entry leaves a tombstone at its value's version,
        # with its expiry register, so an older write replayed later cannot bring the
        # key back (registers.py).
        now = self._clock.wall_ms()
        self.tombstones.keep(key, make_tombstone(entry[2:4], now, entry[1], expiry_stamp(entry)))
        return True

    def _reap_one(self, key: bytes, now_ms: int) -> None:
        held = self._data.get(key)
        if held is not None and 0 < expiry_of(held) <= now_ms:
            self._expire(key)


def held_size(key: bytes, held: Held) -> int:
    """`stored_size` of a held record, read without unpacking it."""
    value_bytes, expires_at_ms, split = sizes_of(held)
    size = len(key) + value_bytes + ENTRY_OVERHEAD_BYTES
    if expires_at_ms:
        size += EXPIRY_OVERHEAD_BYTES
    return size + SPLIT_OVERHEAD_BYTES if split else size
