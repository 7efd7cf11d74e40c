"""Repair (anti-entropy) and readiness: owners compare bucket digests and pull newer records.

Pull model: a node only ever changes its own store, from what it pulls, so each decision
(is this newer? may this missing key be copied? is there room?) is taken where all the
facts are. A round against one peer:

1. `GC.DIGEST`: the peer's 1024 bucket digests (digest.py, 8 KiB), and `GC.EVICTED`:
   per bucket, the newest version the peer evicted from it (journal.py).
2. The buckets that differ, that this node owns and in which the peer holds something
   (placement is per bucket, so two owners of a bucket should hold all of it alike).
   The peer need not be an owner: a former owner's leftovers may hold the newest write
   or delete of a key (before owners moved), which makes this also a handoff by pull.
   A pass goes through them in random order, at most MAX_BUCKETS_PER_ROUND per round.
3. `GC.BUCKET b` for each, BUCKETS_PER_CALL per pipeline: the peer's (key, version,
   origin, is_tombstone, expiry_version, expiry_origin) records in the bucket.
4. For each record with a register newer than this node's (the merge rule, per register:
   store/registers.py): a plain tombstone is applied at once (`apply_delete`: a lost
   delete repaired); an entry, or a tombstone with an expiry register of its own, is
   fetched (`GC.FETCH`, FETCH_BATCH per pipeline) and applied (`apply`: a stale value or
   expiry repaired). The store's merge rule has the last word, so a record that changed
   meanwhile, a late older write or one below the resurrection floor is dropped there.
5. A key this node holds nothing for is copied only when the round copies missing keys:
   while this node is warming (startup, and for a while after its region's membership
   changed, when it may have gained buckets: this is also how a node takes over the
   keys of a dead owner), or when a peer said this node missed writes (it rejoined, or
   the peer's hints for it overflowed). Even then a missing key is taken only if it
   fits without evicting anything, so a full node never churns its LRU for repair, and
   a key it evicted is not pulled back (eviction is local).

6. Evictions followed: in a bucket both own, a live entry here that the peer does not
   hold and whose value is no newer than the peer's eviction floor there is evicted
   here too (`_drop_evicted`). The peer may have evicted a newer value of it; an owner
   cut off when that value was written would otherwise keep its older one for good.

A bucket that still differs after a round in which nothing more could be pulled (an
eviction on one side, a tombstone reaped a little earlier on one side) is remembered as
settled with both digests and skipped until either changes, so periodic rounds do not
re-list it.

Handoff: every HANDOFF_CHECK_S, a node with no pass under way looks at the buckets it
holds but no longer owns (owners moved when members joined or came back). Where every
owner's digest equals its own, the owners hold all of it, and the bucket is dropped
locally (no tombstones: nothing was deleted); elsewhere it asks the owners to pull from
it (`GC.REPAIR 1`) and looks again next time. So memory follows ownership without a
record ever existing nowhere.

Triggers: warm-up at start; a change of the region's alive members (a round against every
region peer, and a `GC.REPAIR 0` nudge asking every region peer to pull from this node:
views change at different moments, and a write coordinated under the older view missed
the owner that gained its bucket) and, for a member that is back (new, or dead/left
before), a `GC.REPAIR 1` nudge asking it to pull from this node; a peer's hint queue overflowing
(`hints.needs_repair`: the same nudge); every PERIODIC_S (with jitter) against every
region peer. Work is bounded per round and paced between batches.

A round that fails (no answer, or the peer's connection still in its reconnect backoff
just after it came back) is tried again RETRY_S later, up to MAX_ATTEMPTS times in a row.

Warm-up: at start (after membership found a peer, within JOIN_MAX_S, if seeds were
given) this node pulls the buckets it owns, whole, from its region's peers and then from
the nearest other region (warmup.py); then it sets `ready`. `ready` is set anyway after
`warmup_max_s` (the pull goes on), and the log line says what the node holds. Until
then key commands answer LOADING (router.py). Repair's rounds start after the pull.

The repairer sees its cluster as a `RepairView`: this region's members and their
addresses, the owners of a bucket, the peer connections, the store, the hints that
overflowed and where warm-up looks beyond the region; `Cluster` satisfies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol

from geocache.cluster import digest, records
from geocache.cluster.hints import Hints
from geocache.cluster.host import ClusterHost
from geocache.cluster.journal import JournaledStore
from geocache.cluster.peers import PeerClient, PeerError, Peers
from geocache.cluster.swim_messages import MemberState
from geocache.cluster.warmup import WarmSources, WarmUp, has_room
from geocache.observability.events import NO_EVENTS, ClusterEvents
from geocache.protocol.types import Error
from geocache.store.entry import is_tombstone
from geocache.store.errors import VersionRefused
from geocache.store.keyspace import Stamps

if TYPE_CHECKING:
    from geocache.cluster.swim import Change

log = logging.getLogger("geocache.repair")

# A slow background pace: membership changes and hint overflows trigger rounds at once;
# the periodic round only catches what they missed. +-20% jitter keeps nodes apart.
PERIODIC_S = 60.0
PERIODIC_JITTER = 0.2
# Hint overflows and unsent nudges are looked at every second.
CHECK_S = 1.0
# Differing buckets handled per peer per round (about 64,000 records at a million keys);
# the rest wait for the next round, which follows after PAUSE_S.
MAX_BUCKETS_PER_ROUND = 64
BUCKETS_PER_CALL = 16
FETCH_BATCH = 256
# Between batches and rounds: yields the event loop to client commands.
PAUSE_S = 0.01
# A bucket list or a fetch batch may be large: more time than one replicated write.
REPAIR_TIMEOUT_MS = 5000
NUDGE_TIMEOUT_MS = 500
# A node started with seeds waits this long to hear from one (the join timeout, s):
# past it, it warms up from whatever it knows, and a node no seed trusts stops.
JOIN_MAX_S = 10.0
# After joining, a node that knows no member of its own region yet waits this long for
# one before it counts itself alone in its region (the first region, or a new one).
JOIN_GRACE_S = 1.0
# A round that failed (the peer did not answer, or its connection is in its reconnect
# backoff just after it came back) is tried again after this long (s), up to
# MAX_ATTEMPTS times in a row; past that the pass is dropped until the next trigger.
RETRY_S = 0.5
MAX_ATTEMPTS = 5
# Buckets this node holds but no longer owns (owners moved) are looked at this often,
# and dropped once every owner holds the same (their digests agree).
HANDOFF_CHECK_S = 5.0

_GONE = (MemberState.DEAD, MemberState.LEFT)


@dataclass(slots=True)
class RepairStats:
    rounds: int = 0
    buckets_compared: int = 0
    keys_pulled: int = 0
    deletes_pulled: int = 0
    skipped_full: int = 0
    evictions_followed: int = 0
    handed_off: int = 0
    failures: int = 0
    nudges_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Pass:
    """One pass over the buckets to compare with one peer, a round (a batch) at a time."""

    copy_missing: bool
    # Buckets left to compare; None until the pass's first round fetched the digest.
    todo: list[int] | None = None
    # Asked again while under way: another pass follows this one.
    again: bool = False
    # Failed rounds in a row, and when (loop time) to try again.
    attempts: int = 0
    retry_at: float = 0.0


class RepairView(Protocol):
    """What the repairer sees of its cluster (cluster.Cluster satisfies it)."""

    @property
    def node_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def addr(self) -> str: ...

    @property
    def host(self) -> ClusterHost: ...

    @property
    def store(self) -> JournaledStore: ...

    @property
    def peers(self) -> Peers: ...

    @property
    def hints(self) -> Hints: ...

    @property
    def streams(self) -> WarmSources: ...

    def region_peers(self) -> list[str]: ...

    def addr_of(self, node_id: str) -> str | None: ...

    def last_addr(self, node_id: str) -> str | None: ...

    def bucket_owners(self, bucket: int) -> list[str]: ...

    def joined(self) -> bool: ...

    def warming(self) -> bool: ...

    def seeds_to_join(self) -> list[str]: ...

    def version_refused(self, exc: VersionRefused, peer_id: str, key: bytes, via: str) -> Error:
        """A pulled record whose version the clock does not admit: logged."""
        ...


class Repairer:
    def __init__(
        self,
        cluster: RepairView,
        rng: random.Random | None = None,
        events: ClusterEvents = NO_EVENTS,
    ) -> None:
        self.cluster = cluster
        self._events = events  # a finished pass may complete a region resync
        self.ready = False
        self.stats = RepairStats()
        self._rng = rng if rng is not None else random.Random()
        # Passes under way or due, by peer, in the order they were asked for.
        self._passes: dict[str, _Pass] = {}
        # Peers to ask to pull from this node (GC.REPAIR); the flag: they missed writes.
        self._nudges: dict[str, bool] = {}
        self._nudge_after = 0.0
        # Per peer, bucket -> (my digest, theirs) when nothing more could be pulled.
        self._settled: dict[str, dict[int, tuple[int, int]]] = {}
        # The region's other alive members when membership last changed them.
        self._peers_seen: list[str] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready_timer: asyncio.TimerHandle | None = None
        self.warmer = WarmUp(cluster)

    @property
    def store(self) -> JournaledStore:
        return self.cluster.store

    # -- lifecycle and triggers ------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        bound_s = self.cluster.host.config.warmup_max_s
        self._ready_timer = loop.call_later(bound_s, self._set_ready, "time bound")
        self._tasks.append(asyncio.create_task(self._run()))

    def stop(self) -> None:
        if self._ready_timer is not None:
            self._ready_timer.cancel()
        for task in self._tasks:
            task.cancel()

    def request(self, peer_id: str, copy_missing: bool = False) -> None:
        """Compare with `peer_id` soon (GC.REPAIR and the triggers below)."""
        current = self._passes.get(peer_id)
        if current is None:
            self._passes[peer_id] = _Pass(copy_missing)
        elif current.todo is not None:
            current.again = True
            current.copy_missing |= copy_missing
        else:
            current.copy_missing |= copy_missing
        self._wake.set()

    def on_changes(self, changes: list[Change]) -> None:
        """Membership changed (cluster._refresh): owners moved, so compare with every peer."""
        cluster = self.cluster
        peers = cluster.region_peers()
        if peers != self._peers_seen:
            # Owners moved: this node may have gained buckets (copied while warming), and
            # so may its peers. A peer's view can change before this one's: a write this
            # node coordinated in between went to the owners of its older view and not to
            # the peer that gained the bucket, whose own pull ran before the write. So
            # this node also asks every peer to pull from it, once its view has moved too.
            self._peers_seen = peers
            self._settled.clear()
            for peer in peers:
                self.request(peer)
                self._nudges.setdefault(peer, False)
            self._nudge_after = 0.0
        for old, new in changes:
            if new.region != cluster.region:
                continue
            if new.state is MemberState.ALIVE and (old is None or old.state in _GONE):
                # It was no owner of anything while away: no hints cover what it missed.
                self._nudges[new.node_id] = True
                self._nudge_after = 0.0
                self._wake.set()

    def _set_ready(self, why: str) -> None:
        if not self.ready:
            self.ready = True
            log.info("warm-up done", extra={"why": why, "stats": self.warmer.status()})

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        await self._warm_up()
        loop = asyncio.get_running_loop()
        next_periodic = loop.time() + self._periodic_s()
        next_handoff = loop.time() + HANDOFF_CHECK_S
        while True:
            await self._wait()
            self._wake.clear()
            try:
                if loop.time() >= next_handoff and not self._passes:
                    next_handoff = loop.time() + HANDOFF_CHECK_S
                    await self._drop_handed_off()
                if loop.time() >= next_periodic:
                    next_periodic = loop.time() + self._periodic_s()
                    for peer in self.cluster.region_peers():
                        self.request(peer)
                self._collect_overflows()
                if self._nudges and loop.time() >= self._nudge_after:
                    await self._send_nudges()
                    self._nudge_after = loop.time() + CHECK_S
                await self._rounds()
            except Exception:  # pragma: no cover - a bug must not stop repair
                log.exception("repair cycle failed")
                await asyncio.sleep(CHECK_S)

    def _periodic_s(self) -> float:
        return PERIODIC_S * (1 + self._rng.uniform(-PERIODIC_JITTER, PERIODIC_JITTER))

    async def _warm_up(self) -> None:
        cluster = self.cluster
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_MAX_S
        seeds = cluster.seeds_to_join()
        while seeds and not cluster.joined() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        # The first answer from a seed lists the members it knows: this node's region
        # peers among them. A node alone in its region waits briefly for late news.
        alone_until = min(deadline, loop.time() + JOIN_GRACE_S)
        while seeds and not cluster.region_peers() and loop.time() < alone_until:
            await asyncio.sleep(0.05)
        # The region's peers, then the nearest other region (every region holds the data
        # set): the region's own peers may have been warming too (a whole region
        # restarted), and a node alone in its region has no other source.
        if seeds:
            await self.warmer.run()
        self._set_ready("warmed")

    async def _wait(self) -> None:
        """Until a pass is due (at once if one is), a trigger, or CHECK_S without passes."""
        loop = asyncio.get_running_loop()
        due = min((p.retry_at for p in self._passes.values()), default=None)
        timeout = CHECK_S if due is None else due - loop.time()
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _rounds(self) -> None:
        """One round for each peer with a pass due: bounded work, then back to the loop."""
        loop = asyncio.get_running_loop()
        for peer in list(self._passes):
            p = self._passes.get(peer)
            if p is None or p.retry_at > loop.time():
                continue
            try:
                await self._round(peer, p)
            except (PeerError, TimeoutError, OSError, ValueError) as exc:
                self.stats.failures += 1
                p.attempts += 1
                p.retry_at = loop.time() + RETRY_S
                p.todo = None  # buckets taken off mid-round: compare afresh next time
                if p.attempts >= MAX_ATTEMPTS and self._passes.get(peer) is p:
                    del self._passes[peer]
                log.info("repair round failed", extra={"peer": peer, "error": str(exc)})
                continue
            p.attempts = 0
            if not p.todo and self._passes.get(peer) is p:
                if p.again:
                    p.todo, p.again = None, False
                else:
                    del self._passes[peer]
                    self._events.repair_done(peer)
            await asyncio.sleep(PAUSE_S)

    def _collect_overflows(self) -> None:
        needs = self.cluster.hints.needs_repair
        for target in needs & set(self.cluster.region_peers()):
            needs.discard(target)
            self._nudges[target] = True

    async def _send_nudges(self) -> None:
        peers = set(self.cluster.region_peers())
        targets = [t for t in self._nudges if t in peers]
        results = await asyncio.gather(*(self._nudge(t) for t in targets))
        for target, sent in zip(targets, results, strict=True):
            if sent:
                self._nudges.pop(target, None)

    async def _nudge(self, target: str) -> bool:
        addr = self.cluster.addr_of(target)
        if addr is None:
            return False
        flag = 1 if self._nudges.get(target) else 0
        try:
            reply = await self.cluster.peers.get(addr).call(
                "GC.REPAIR", flag, timeout_ms=NUDGE_TIMEOUT_MS
            )
        except (PeerError, TimeoutError, OSError):
            return False
        self.stats.nudges_sent += 1
        return not isinstance(reply, Error)

    async def _drop_handed_off(self) -> None:
        """Drop the buckets this node holds but no longer owns, where every owner's digest
        equals this node's (they hold the same records); ask the others to pull first."""
        cluster, store = self.cluster, self.store
        mine, me = store.digest.buckets, cluster.node_id
        leftovers = [
            b for b in range(digest.BUCKETS) if mine[b] and me not in cluster.bucket_owners(b)
        ]
        theirs: dict[str, list[int] | None] = {}
        for b in leftovers:
            owners = cluster.bucket_owners(b)
            for owner in owners:
                if owner not in theirs:
                    theirs[owner] = await self._digest_of(owner)
            if all((t := theirs[o]) is not None and t[b] == mine[b] for o in owners):
                self.stats.handed_off += store.drop_bucket(b)
            else:
                for owner in owners:
                    self._nudges[owner] = True  # pull what this node holds, then compare again
        if leftovers:
            log.info("handoff check", extra={"leftover_buckets": len(leftovers)})

    async def _digest_of(self, peer_id: str) -> list[int] | None:
        addr = self.cluster.addr_of(peer_id)
        if addr is None:
            return None
        try:
            reply = await self.cluster.peers.get(addr).call(
                "GC.DIGEST", timeout_ms=REPAIR_TIMEOUT_MS
            )
            return digest.decode_buckets(digest.as_bytes(reply))
        except (PeerError, TimeoutError, OSError, ValueError):
            return None

    # -- one round ----------------------------------------------------------------------------

    async def _round(self, peer_id: str, p: _Pass) -> None:
        """Up to MAX_BUCKETS_PER_ROUND of the pass's buckets against `peer_id`."""
        cluster = self.cluster
        # A peer this node's membership does not (yet) count alive may still answer:
        # one that just asked it to pull (GC.REPAIR) after a partition healed is, while
        # this side's view lags. If it is really gone, the round fails and is retried.
        addr = cluster.addr_of(peer_id) or cluster.last_addr(peer_id)
        if addr is None:
            p.todo = []  # never known: nothing to compare
            return
        client = cluster.peers.get(addr)
        digest_reply, evicted_reply = await client.pipeline(
            [("GC.DIGEST",), ("GC.EVICTED",)], timeout_ms=REPAIR_TIMEOUT_MS
        )
        theirs = digest.decode_buckets(digest.as_bytes(digest_reply))
        floors = digest.decode_buckets(digest.as_bytes(evicted_reply))
        self.stats.rounds += 1
        self._follow_evictions(peer_id, theirs, floors)
        copy = p.copy_missing or not self.ready or cluster.warming()
        if p.todo is None:
            p.todo = self._to_compare(peer_id, theirs, copy)
            self._rng.shuffle(p.todo)
        mine = self.store.digest.buckets
        now: list[int] = []
        while p.todo and len(now) < MAX_BUCKETS_PER_ROUND:
            b = p.todo.pop()
            if mine[b] != theirs[b]:  # may have converged since the pass began
                now.append(b)
        before = self.stats.keys_pulled + self.stats.deletes_pulled
        for i in range(0, len(now), BUCKETS_PER_CALL):
            batch = now[i : i + BUCKETS_PER_CALL]
            await self._repair_buckets(client, peer_id, batch, theirs, floors, copy)
            await asyncio.sleep(PAUSE_S)
        if now:
            pulled = self.stats.keys_pulled + self.stats.deletes_pulled - before
            log.info(
                "repair round",
                extra={"peer": peer_id, "buckets": len(now), "pulled": pulled, "copy": copy},
            )

    def _to_compare(self, peer_id: str, theirs: list[int], copy_missing: bool) -> list[int]:
        """Buckets this node owns where the peer holds something else, less settled ones.

        The peer need not own the bucket: a former owner's leftovers may hold the newest
        record (a write or a delete it took before owners moved), and the merge rule
        keeps the newest whoever sends it. A peer holding nothing there (digest 0) has
        nothing to give. Settled buckets are skipped unless copying missing keys.
        """
        cluster, me = self.cluster, self.cluster.node_id
        mine = self.store.digest.buckets
        settled = self._settled.get(peer_id, {})
        out = []
        for b in digest.differing(mine, theirs):
            if theirs[b] == 0 or (not copy_missing and settled.get(b) == (mine[b], theirs[b])):
                continue
            if me in cluster.bucket_owners(b):
                out.append(b)
        return out

    async def _repair_buckets(
        self,
        client: PeerClient,
        peer_id: str,
        batch: list[int],
        theirs: list[int],
        floors: list[int],
        copy_missing: bool,
    ) -> None:
        replies = await client.pipeline(
            [("GC.BUCKET", b) for b in batch], timeout_ms=REPAIR_TIMEOUT_MS
        )
        fetch: list[bytes] = []
        for b, reply in zip(batch, replies, strict=True):
            listed = digest.decode_records(reply)
            self._drop_evicted(peer_id, b, floors[b], {record[0] for record in listed})
            fetch += self._plan(peer_id, listed, copy_missing)
        self.stats.buckets_compared += len(batch)
        for i in range(0, len(fetch), FETCH_BATCH):
            keys = fetch[i : i + FETCH_BATCH]
            found = await client.pipeline(
                [("GC.FETCH", k) for k in keys], timeout_ms=REPAIR_TIMEOUT_MS
            )
            for key, reply in zip(keys, found, strict=True):
                try:
                    self._apply_fetched(key, reply)
                except VersionRefused as exc:
                    self.cluster.version_refused(exc, peer_id, key, "repair (GC.FETCH)")
        buckets = self.store.digest.buckets
        settled = self._settled.setdefault(peer_id, {})
        for b in batch:
            settled[b] = (buckets[b], theirs[b])

    def _follow_evictions(self, peer_id: str, theirs: list[int], floors: list[int]) -> None:
        """`_drop_evicted` for the buckets in which the peer holds nothing at all (repair
        lists no records there: `_to_compare`)."""
        mine = self.store.digest.buckets
        for b in range(digest.BUCKETS):
            if floors[b] and mine[b] and not theirs[b]:
                self._drop_evicted(peer_id, b, floors[b], set())

    def _drop_evicted(self, peer_id: str, bucket: int, floor: int, listed: set[bytes]) -> None:
        """Evict here the live entries of `bucket` that `peer_id`, a fellow owner of it,
        does not hold (`listed`) and whose value is no newer than the newest version the
        peer evicted from the bucket (`floor`, GC.EVICTED).

        The peer may have evicted a newer value of such a key, and eviction is local: an
        owner that missed the newer write (cut off) would keep its older value, which would
        then stand, undoing an acknowledged write. The floor is per bucket, so this may
        also drop a key the peer never had; dropping is what a cache may always do, and it
        counts as an eviction here (INFO `evicted_keys`).
        """
        if not floor:
            return
        owners = self.cluster.bucket_owners(bucket)
        if peer_id not in owners or self.cluster.node_id not in owners:
            return
        store = self.store
        for key, version, _origin, tombstone, _xv, _xo in store.digest.keys_in_bucket(bucket):
            if not tombstone and version <= floor and key not in listed and store.evict(key):
                self.stats.evictions_followed += 1

    def _plan(self, peer_id: str, listed: list[digest.Record], copy_missing: bool) -> list[bytes]:
        """Apply the peer's newer plain tombstones; return the keys whose records to fetch.
        A record whose version the clock does not admit is neither applied nor fetched."""
        store, fetch = self.store, []
        for key, version, origin, tombstone, x_version, x_origin in listed:
            newest = max(version, x_version)
            if not store.hlc.admits(newest):
                store.versions_refused += 1
                exc = VersionRefused(newest, store.hlc.ahead_ms(newest), store.hlc.max_ahead_ms)
                self.cluster.version_refused(exc, peer_id, key, "repair (GC.BUCKET)")
                continue
            held = store.version_of(key)
            if held is None:
                if not copy_missing:
                    continue
            elif not _has_newer(held, (version, origin, tombstone, x_version, x_origin)) and not (
                not tombstone
                and held[2]
                and held[:2] == (version, origin)
                and store.forgot_value(key)
            ):
                continue
            if not tombstone or (x_version, x_origin) != (version, origin):
                fetch.append(key)
            elif store.apply_delete(key, version, origin):
                self.stats.deletes_pulled += 1
        return fetch

    def _apply_fetched(self, key: bytes, reply: object) -> None:
        """Apply a GC.FETCH reply: an entry (value first) or a tombstone (version first)."""
        store = self.store
        if not isinstance(reply, list):
            return  # gone meanwhile (nil), or an error: the next round looks again
        record = records.from_fetch_reply(reply)
        if record is None:
            return
        try:
            if is_tombstone(record):
                if store.apply(key, record):
                    self.stats.deletes_pulled += 1
                return
            if store.version_of(key) is None and not has_room(store, key, record[0], record[1]):
                self.stats.skipped_full += 1
                return
            if store.apply(key, record):
                self.stats.keys_pulled += 1
        except VersionRefused as exc:
            self.cluster.version_refused(exc, "", key, "repair (GC.FETCH)")


def _has_newer(held: Stamps, theirs: Stamps) -> bool:
    """Whether the peer's record has a register newer than this node's. (An entry at the
    version of this node's tombstone, with the same expiry, has expired here already,
    unless this node forgot a value that lives: JournaledStore.forgot_value.)"""
    return theirs[:2] > held[:2] or theirs[3:] > held[3:]
