"""The cluster's store: it journals the writes made through it and keeps bucket digests.

In cluster mode the command handlers run unchanged against a `JournaledStore`: every
local write (set, delete, and what is built on them: EXPIRE, INCR, APPEND...) is
appended to `journal` as (key, entry) or (key, tombstone): the key's whole state after
the write, both registers with their versions (store/entry.py), so a replica merges it
register by register and an EXPIRE shipped with the value it saw never undoes a newer
value there. After a command, the router
takes the journal and ships it to the key's other owners. Writes that arrive from peers
go through `apply`/`apply_delete`, which are not journaled: only the coordinator
replicates.

The store also keeps `digest` (digest.py) in step with what it holds, for repair. The
hooks sit on the few internals through which every change passes: `_put` (an entry
added or replaced), `_remove` (deleted, expired or replaced by a tombstone), `_evict`,
`flush`, and the tombstone space's `put`, `discard` and `_drop_oldest` (reaped, dropped
for room, cleared), in `DigestedTombstones`. They live in these subclasses only, so a
standalone `Store` pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable

from geocache.clock import HLC, Clock
from geocache.cluster.digest import BUCKETS, Digest, bucket_of, entry_hash, tombstone_hash
from geocache.store.entry import Entry, Tombstone, latest_version, stored_size, tombstone_expiry
from geocache.store.entry import is_tombstone as is_tombstone
from geocache.store.keyspace import Store
from geocache.store.tombstones import DEFAULT_MAX_TOMBSTONES, DEFAULT_TOMBSTONE_TTL_MS, Tombstones

Write = tuple[bytes, Entry | Tombstone]
# Sees each batch of journaled writes as it is taken (what the router replicates): the
# simulator's record of what was coordinated. Nothing in production listens.
JournalTap = Callable[[list[Write]], None]


def no_tap(writes: list[Write]) -> None:
    """The tap of a store nothing observes."""


class DigestedTombstones(Tombstones):
    """Tombstones that report every one added or dropped to a digest."""

    __slots__ = ("digest",)

    def __init__(
        self,
        digest: Digest,
        max_tombstones: int = DEFAULT_MAX_TOMBSTONES,
        ttl_ms: int = DEFAULT_TOMBSTONE_TTL_MS,
    ) -> None:
        super().__init__(max_tombstones, ttl_ms)
        self.digest = digest

    def keep(self, key: bytes, tomb: Tombstone) -> None:
        old = self._tombs.get(key)
        if old is None:
            self.digest.add(key, tombstone_hash(key, tomb))
        else:
            self.digest.replace(key, tombstone_hash(key, old), tombstone_hash(key, tomb))
        super().keep(key, tomb)  # may drop the oldest: _drop_oldest

    def discard(self, key: bytes) -> None:
        old = self._tombs.pop(key, None)
        if old is not None:
            self.digest.remove(key, tombstone_hash(key, old))

    def _drop_oldest(self) -> None:
        key, tomb = next(iter(self._tombs.items()))
        self.digest.remove(key, tombstone_hash(key, tomb))
        super()._drop_oldest()


class JournaledStore(Store):
    __slots__ = ("_tap", "digest", "evicted_floor", "journal")

    def __init__(
        self,
        clock: Clock,
        *,
        max_bytes: int = 0,
        max_keys: int = 0,
        node_id: str = "local",
        tombstones: Tombstones | None = None,
        hlc: HLC | None = None,
        tap: JournalTap = no_tap,
    ) -> None:
        """`tombstones` gives the tombstone space's limits; the store keeps its own copy.
        `tap` sees each non-empty batch `take_journal` hands out."""
        digest = Digest(self.version_of)
        limits = tombstones if tombstones is not None else Tombstones()
        if len(limits):
            raise ValueError("a JournaledStore starts with an empty tombstone space")
        tombs = DigestedTombstones(digest, limits.max_tombstones, limits.ttl_ms)
        super().__init__(
            clock,
            max_bytes=max_bytes,
            max_keys=max_keys,
            node_id=node_id,
            tombstones=tombs,
            hlc=hlc,
        )
        self.digest = digest
        self.journal: list[Write] = []
        self._tap = tap
        # Per bucket, the newest version evicted from it. Eviction forgets a key, and
        # with it the version that kept older writes out: an older record of it arriving
        # later (a hint, repair from a former owner, another region's stream) would come
        # back as new. So a key not held at all takes a replicated write only if it is
        # newer than everything evicted from its bucket (a write of another key that
        # old is refused too: under memory pressure, as if evicted on arrival).
        self.evicted_floor = [0] * BUCKETS

    # -- replicated writes -----------------------------------------------------------------

    def apply(self, key: bytes, record: Entry | Tombstone) -> bool:
        """Store.apply; a record at or below its bucket's eviction floor is taken only for
        a key held in some form.

        A delete that old too: it would retire nothing the floor does not already keep
        out, and holding it would make this owner differ from one that holds the newer
        value this one evicted (another region's, say) for good; holding nothing, this
        owner only lacks the key, as eviction leaves it."""
        newest = latest_version(record)
        if (
            newest <= self.evicted_floor[bucket_of(key)]
            and key not in self._data
            and self.tombstones.get(key) is None
        ):
            self.hlc.update(newest)
            return False
        return super().apply(key, record)

    def forgot_value(self, key: bytes) -> bool:
        """Whether the key's tombstone stands for a value this store forgot rather than
        one gone: a six-field tombstone (an entry that expired and was reclaimed) whose
        expiry register no longer expires it. A newer expiry write made where the value
        was still live (a SET without TTL that lost the value to a newer INCR, a PERSIST)
        arrived after the older expiry ran out here. Merged by registers the key lives,
        so an entry at the tombstone's version re-supplies the value (repair fetches it)."""
        tomb = self.tombstones.get(key)
        if tomb is None or len(tomb) != 6:
            return False
        expires_at_ms = tombstone_expiry(tomb)[0]
        return not expires_at_ms or expires_at_ms > self._clock.wall_ms()

    # -- journal -------------------------------------------------------------------------

    def _write(self, key: bytes, entry: Entry) -> Entry:
        """Every local write of an entry (set, set_value, expire_at...) passes here."""
        super()._write(key, entry)
        self.journal.append((key, entry))
        return entry

    def delete(self, key: bytes) -> bool:
        existed = super().delete(key)
        tomb = self.tombstones.get(key)
        if tomb is not None:
            self.journal.append((key, tomb))
        return existed

    def take_journal(self) -> list[Write]:
        journal, self.journal = self.journal, []
        if journal:
            self._tap(journal)
        return journal

    def drop_bucket(self, bucket: int) -> int:
        """Forget every record of `bucket`, locally and without tombstones (as eviction
        does): for a bucket this node no longer owns, once its owners hold the same."""
        records = self.digest.keys_in_bucket(bucket)
        for key, _version, _origin, tombstone, _x_version, _x_origin in records:
            if tombstone:
                self.tombstones.discard(key)
            else:
                self._remove(key)
        return len(records)

    def flush_at(self, version: int) -> int:
        """A cluster-wide flush minted at `version` elsewhere: drop every record not newer
        than it (a write made after the flush survives wherever it arrived first) and
        raise the resurrection floor to it, so no older write can come back. Returns the
        records dropped."""
        self.hlc.update(version)
        old = [key for key, entry in self._held_entries() if latest_version(entry) <= version]
        for key in old:
            self._remove(key)
        space = self.tombstones
        assert isinstance(space, Tombstones)  # a JournaledStore always keeps tombstones
        tombs = [key for key, tomb in space.items() if latest_version(tomb) <= version]
        for key in tombs:
            self.tombstones.discard(key)
        self.tombstones.floor = max(self.tombstones.floor, version)
        if self.on_change is not None:
            self.on_change(None, None, True)
        return len(old) + len(tombs)

    # -- digest hooks ----------------------------------------------------------------------

    def flush(self) -> None:
        super().flush()
        self.digest.clear()

    def _put(self, key: bytes, entry: Entry) -> None:
        old = self._entry_at(key)
        super()._put(key, entry)  # raises TooLarge before changing anything
        if old is None:
            self.digest.add(key, entry_hash(key, entry))
        else:
            self.digest.replace(key, entry_hash(key, old), entry_hash(key, entry))

    def _remove(self, key: bytes) -> Entry:
        entry = super()._remove(key)
        self.digest.remove(key, entry_hash(key, entry))
        return entry

    def _evict(self) -> None:
        """Store._evict, reporting each evicted entry to the digest (keep the two in step).

        Evicted keys leave the digest: it describes what is held (see digest.py).
        """
        data, max_bytes, max_keys = self._data, self.max_bytes, self.max_keys
        while (max_bytes and self.used_bytes > max_bytes) or (max_keys and len(data) > max_keys):
            old_key, old = self._pop_lru()
            self._evicted(old_key, old)

    def evict(self, key: bytes) -> bool:
        """Evict `key`'s live entry as memory pressure would (counted, the bucket's floor
        raised): repair does, for an entry another owner evicted a newer version of."""
        entry = self._entry_at(key)
        if entry is None:
            return False
        del self._data[key]
        self._evicted(key, entry)
        return True

    def _evicted(self, key: bytes, entry: Entry) -> None:
        """The bookkeeping of an entry taken out of the table by eviction."""
        self.used_bytes -= stored_size(key, entry)
        self.evictions += 1
        if self.on_change is not None:
            self.on_change(key, None, False)
        if entry[1]:
            self._wheel.discard(key, entry[1])
        self.digest.remove(key, entry_hash(key, entry))
        bucket = bucket_of(key)
        newest = latest_version(entry)
        if newest > self.evicted_floor[bucket]:
            self.evicted_floor[bucket] = newest
