"""Repair (anti-entropy) and warm-up: owners compare bucket digests and pull newer records.

Pull model: a node only ever changes its own store, from what it pulls, so each decision
(is this newer? may this missing key be copied? is there room?) is taken where all the
facts are. A round against one peer:

1. `GC.DIGEST`: the peer's 1024 bucket digests (digest.py, 8 KiB).
2. The buckets that differ and that both nodes own (placement is per bucket, so a bucket
   is either wholly shared by two owners or not at all), at most MAX_BUCKETS_PER_ROUND
   of them, chosen at random so persistent differences cannot starve the others.
3. `GC.BUCKET b` for each, BUCKETS_PER_CALL per pipeline: the peer's (key, version,
   origin, is_tombstone) records in the bucket.
4. For each record newer than what this node holds (the merge rule, entry.newer): a
   tombstone is applied at once (`apply_delete`: a lost delete repaired); an entry is
   fetched (`GC.FETCH`, FETCH_BATCH per pipeline) and applied (`apply`: a stale value
   repaired). The store's merge rule has the last word, so a record that changed
   meanwhile, a late older write or one below the resurrection floor is dropped there.
5. A key this node holds nothing for is copied only when the round copies missing keys:
   while this node is warming (startup, and for a while after its region's membership
   changed, when it may have gained buckets: this is also how a node takes over the
   keys of a dead owner), or when a peer said this node missed writes (it rejoined, or
   the peer's hints for it overflowed). Even then a missing key is taken only if it
   fits without evicting anything, so a full node never churns its LRU for repair, and
   a key it evicted is not pulled back (eviction is local).

A bucket that still differs after a round in which nothing more could be pulled (an
eviction on one side, a tombstone reaped a little earlier on one side) is remembered as
settled with both digests and skipped until either changes, so periodic rounds do not
re-list it.

Triggers: warm-up at start; a change of the region's alive members (a round against every
region peer) and, for a member that is back (new, or dead/left before), a `GC.REPAIR 1`
nudge asking it to pull from this node; a peer's hint queue overflowing
(`hints.needs_repair`: the same nudge); every PERIODIC_S (with jitter) against every
region peer. Work is bounded per round and paced between batches.

Warm-up: at start (after membership found a region peer, if seeds were given) this node
runs copying rounds against every region peer until no differing bucket is left, then
sets `ready`; `ready` is set anyway after WARMUP_MAX_S. Meanwhile the node serves, and a
miss asks an owner (router.py, while `cluster.warming()`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from geocache.cluster import digest
from geocache.cluster.peers import PeerClient, PeerError
from geocache.cluster.swim_messages import MemberState
from geocache.protocol.types import Error
from geocache.store.entry import entry_size, newer

if TYPE_CHECKING:
    from geocache.cluster.cluster import Cluster
    from geocache.cluster.journal import JournaledStore
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
# A starting node reports ready after this long even if warm-up has not finished (s).
WARMUP_MAX_S = 10.0
# During warm-up, a peer that did not answer is asked again after this long (s).
WARMUP_RETRY_S = 0.2

_GONE = (MemberState.DEAD, MemberState.LEFT)


@dataclass(slots=True)
class RepairStats:
    rounds: int = 0
    buckets_compared: int = 0
    keys_pulled: int = 0
    deletes_pulled: int = 0
    skipped_full: int = 0
    failures: int = 0
    nudges_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Repairer:
    def __init__(self, cluster: Cluster, rng: random.Random | None = None) -> None:
        self.cluster = cluster
        self.ready = False
        self.stats = RepairStats()
        self._rng = rng if rng is not None else random.Random()
        # Peers to run a round against; the flag: copy missing keys.
        self._pending: dict[str, bool] = {}
        # Peers to ask to pull from this node (GC.REPAIR); the flag: they missed writes.
        self._nudges: dict[str, bool] = {}
        # Per peer, bucket -> (my digest, theirs) when nothing more could be pulled.
        self._settled: dict[str, dict[int, tuple[int, int]]] = {}
        self._failed: set[str] = set()
        # The region's other alive members when membership last changed them.
        self._peers_seen: list[str] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready_timer: asyncio.TimerHandle | None = None

    @property
    def store(self) -> JournaledStore:
        return self.cluster.store

    # -- lifecycle and triggers ------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready_timer = loop.call_later(WARMUP_MAX_S, self._set_ready, "time bound")
        self._tasks.append(asyncio.create_task(self._run()))

    def stop(self) -> None:
        if self._ready_timer is not None:
            self._ready_timer.cancel()
        for task in self._tasks:
            task.cancel()

    def request(self, peer_id: str, copy_missing: bool = False) -> None:
        """Run a round against `peer_id` soon (GC.REPAIR and the triggers below)."""
        self._pending[peer_id] = self._pending.get(peer_id, False) or copy_missing
        self._wake.set()

    def on_changes(self, changes: list[Change]) -> None:
        """Membership changed (cluster._refresh): owners moved, so compare with every peer."""
        cluster = self.cluster
        peers = cluster.region_peers()
        if peers != self._peers_seen:
            # Owners moved: this node may have gained buckets (copied while warming).
            self._peers_seen = peers
            self._settled.clear()
            for peer in peers:
                self.request(peer)
        for old, new in changes:
            if new.region != cluster.region:
                continue
            if new.state is MemberState.ALIVE and (old is None or old.state in _GONE):
                # It was no owner of anything while away: no hints cover what it missed.
                self._nudges[new.node_id] = True

    def _set_ready(self, why: str) -> None:
        if not self.ready:
            self.ready = True
            log.info("warm-up done", extra={"why": why, "stats": str(self.stats.as_dict())})

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        await self._warm_up()
        loop = asyncio.get_running_loop()
        next_periodic = loop.time() + self._periodic_s()
        while True:
            try:
                async with asyncio.timeout(CHECK_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if loop.time() >= next_periodic:
                    next_periodic = loop.time() + self._periodic_s()
                    for peer in self.cluster.region_peers():
                        self.request(peer)
                self._collect_overflows()
                await self._send_nudges()
                await self._drain()
            except Exception:  # pragma: no cover - a bug must not stop repair
                log.exception("repair cycle failed")

    def _periodic_s(self) -> float:
        return PERIODIC_S * (1 + self._rng.uniform(-PERIODIC_JITTER, PERIODIC_JITTER))

    async def _warm_up(self) -> None:
        cluster = self.cluster
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WARMUP_MAX_S
        seeds = [s for s in cluster.node.config.seed_list if s != cluster.addr]
        while seeds and not cluster.region_peers() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for peer in cluster.region_peers():
            self.request(peer, copy_missing=True)
        while not self.ready:
            await self._drain()
            if not self._failed:
                break
            await asyncio.sleep(WARMUP_RETRY_S)
            for peer in self._failed & set(cluster.region_peers()):
                self.request(peer, copy_missing=True)
        self._set_ready("warmed")

    async def _drain(self) -> None:
        """Run the pending rounds, one peer at a time, until none is left."""
        self._failed.clear()
        while self._pending:
            peer = next(iter(self._pending))
            copy = self._pending.pop(peer) or not self.ready or self.cluster.warming()
            try:
                more = await self._round(peer, copy)
            except (PeerError, TimeoutError, OSError, ValueError) as exc:
                self.stats.failures += 1
                self._failed.add(peer)
                log.info("repair round failed", extra={"peer": peer, "error": str(exc)})
                continue
            if more:
                self.request(peer, copy)
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

    # -- one round ----------------------------------------------------------------------------

    async def _round(self, peer_id: str, copy_missing: bool) -> bool:
        """One bounded round against `peer_id`; True if differing buckets are left over."""
        cluster = self.cluster
        addr = cluster.addr_of(peer_id)
        if addr is None or peer_id not in cluster.region_peers():
            return False
        client = cluster.peers.get(addr)
        theirs = digest.decode_buckets(
            _bulk(await client.call("GC.DIGEST", timeout_ms=REPAIR_TIMEOUT_MS))
        )
        self.stats.rounds += 1
        todo = self._to_compare(peer_id, theirs, copy_missing)
        self._rng.shuffle(todo)
        now = todo[:MAX_BUCKETS_PER_ROUND]
        before = self.stats.keys_pulled + self.stats.deletes_pulled
        for i in range(0, len(now), BUCKETS_PER_CALL):
            batch = now[i : i + BUCKETS_PER_CALL]
            await self._repair_buckets(client, peer_id, batch, theirs, copy_missing)
            await asyncio.sleep(PAUSE_S)
        if now:
            pulled = self.stats.keys_pulled + self.stats.deletes_pulled - before
            log.info(
                "repair round",
                extra={
                    "peer": peer_id,
                    "buckets": len(now),
                    "pulled": pulled,
                    "copy": copy_missing,
                },
            )
        return len(todo) > len(now)

    def _to_compare(self, peer_id: str, theirs: list[int], copy_missing: bool) -> list[int]:
        """Differing buckets owned by both nodes, less those settled (unless copying)."""
        cluster, me = self.cluster, self.cluster.node_id
        mine = self.store.digest.buckets
        settled = self._settled.get(peer_id, {})
        out = []
        for b in digest.differing(mine, theirs):
            if not copy_missing and settled.get(b) == (mine[b], theirs[b]):
                continue
            owners = cluster.bucket_owners(b)
            if me in owners and peer_id in owners:
                out.append(b)
        return out

    async def _repair_buckets(
        self,
        client: PeerClient,
        peer_id: str,
        batch: list[int],
        theirs: list[int],
        copy_missing: bool,
    ) -> None:
        replies = await client.pipeline(
            [("GC.BUCKET", b) for b in batch], timeout_ms=REPAIR_TIMEOUT_MS
        )
        fetch: list[bytes] = []
        for reply in replies:
            fetch += self._plan(decode_records(reply), copy_missing)
        self.stats.buckets_compared += len(batch)
        for i in range(0, len(fetch), FETCH_BATCH):
            keys = fetch[i : i + FETCH_BATCH]
            found = await client.pipeline(
                [("GC.FETCH", k) for k in keys], timeout_ms=REPAIR_TIMEOUT_MS
            )
            for key, reply in zip(keys, found, strict=True):
                self._apply_fetched(key, reply)
        buckets = self.store.digest.buckets
        settled = self._settled.setdefault(peer_id, {})
        for b in batch:
            settled[b] = (buckets[b], theirs[b])

    def _plan(self, records: list[digest.Record], copy_missing: bool) -> list[bytes]:
        """Apply the peer's newer tombstones; return the keys whose newer entries to fetch."""
        store, fetch = self.store, []
        for key, version, origin, tombstone in records:
            held = store.version_of(key)
            if held is None:
                if not copy_missing:
                    continue
            elif not newer(version, origin, held[0], held[1]):
                continue
            if not tombstone:
                fetch.append(key)
            elif store.apply_delete(key, version, origin):
                self.stats.deletes_pulled += 1
        return fetch

    def _apply_fetched(self, key: bytes, reply: object) -> None:
        """Apply a GC.FETCH reply: an entry [value, expires, version, origin] or a tombstone."""
        store = self.store
        if not isinstance(reply, list):
            return  # gone meanwhile (nil), or an error: the next round looks again
        if len(reply) == 3:
            version, origin, _created = reply
            if store.apply_delete(key, _int(version), _text(origin)):
                self.stats.deletes_pulled += 1
            return
        if len(reply) != 4:
            raise ValueError(f"bad GC.FETCH reply for {key!r}")
        entry = (_bulk(reply[0]), _int(reply[1]), _int(reply[2]), _text(reply[3]))
        if store.version_of(key) is None and not _has_room(store, key, entry[0], entry[1]):
            self.stats.skipped_full += 1
            return
        if store.apply(key, entry):
            self.stats.keys_pulled += 1


def _has_room(store: JournaledStore, key: bytes, value: bytes, expires_at_ms: int) -> bool:
    """Whether a new key fits without evicting anything."""
    if store.max_keys and len(store) >= store.max_keys:
        return False
    size = entry_size(key, value, expires_at_ms)
    return not store.max_bytes or store.used_bytes + size <= store.max_bytes


def encode_records(records: list[digest.Record]) -> list[bytes | int]:
    """GC.BUCKET's reply: a flat array key, version, origin, is_tombstone (0/1), ..."""
    out: list[bytes | int] = []
    for key, version, origin, tombstone in records:
        out += (key, version, origin.encode("utf-8", "surrogateescape"), int(tombstone))
    return out


def decode_records(reply: object) -> list[digest.Record]:
    """GC.BUCKET's reply as records; ValueError if it is malformed."""
    if not isinstance(reply, list) or len(reply) % 4:
        raise ValueError(f"bad GC.BUCKET reply: {reply!r:.100}")
    it = iter(reply)
    return [
        (_bulk(k), _int(v), _text(o), bool(_int(t)))
        for k, v, o, t in zip(it, it, it, it, strict=True)
    ]


def _bulk(value: object) -> bytes:
    if isinstance(value, Error):
        raise PeerError(str(value))
    if not isinstance(value, bytes):
        raise ValueError(f"expected a bulk string, got {value!r:.100}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r:.100}")
    return value


def _text(value: object) -> str:
    return _bulk(value).decode("utf-8", "surrogateescape")
