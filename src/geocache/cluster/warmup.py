"""Warm-up: a node that starts empty pulls the buckets it owns, whole, from nodes holding them.

A node restarted empty, alone or with its whole region, owns buckets (placement.py) of
which it holds nothing. Repair's rounds (repair.py) would find every one of them
different and list, then fetch, them key by key: three round trips and one command a
key, 64 buckets a round, about 4,000 keys a second. Warm-up instead asks a holder for
whole buckets: `GC.WARM <max bytes> <bucket>...` answers every record of as many of
the buckets, in the order asked, as fit in max bytes (always at least one), preceded by
how many buckets it sent whole. A record is its GC.GEO fields (records.py: key,
version, origin, expires_at_ms, value, expiry), so an entry, a tombstone and an expiry
with a version of its own all travel, and the store's merge rule (store/registers.py)
takes each register only if it is newer than what is held: a warm-up can never undo a
write this node received meanwhile.

Sources, in order: this region's other members (a node restarted into a region that
kept running), then the nearest other region's members (the whole region restarted,
or this node is its region's only member). For each bucket this node owns, the
candidates are the bucket's owners there, then the other members; a bucket is asked
only of a candidate whose digest (GC.DIGEST, one per source) is not empty and differs
from this node's. A request that fails moves its buckets to their next candidate,
ATTEMPTS times at most; a bucket left over is counted (`buckets_failed`) and left to
repair's rounds, which follow membership changes and run every minute.

Bounds: at most MAX_IN_FLIGHT requests at once (over all sources), each answering at
most BUCKETS_PER_REQUEST buckets and REPLY_MAX_BYTES (plus the one bucket a reply
always holds), so warm-up holds a few MiB whatever the data set's size, and the sources
spend a few milliseconds per request. `warmup_keys_per_s` paces the pull for an
operator who must spare the source region (0: as fast as the sources answer). A key
this node holds nothing of is taken only if it fits without evicting anything.

Readiness is the repairer's (repair.py): the node is ready once `run` returns, or when
`warmup_max_s` has passed, whichever is first; until then key commands answer LOADING
and /readyz says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from geocache.cluster import digest, placement
from geocache.cluster.host import ClusterHost
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.peers import PeerError, Peers
from geocache.cluster.records import GEO_FIELDS, from_geo_fields, geo_fields
from geocache.protocol.types import Error
from geocache.store.entry import Entry, Tombstone, entry_size, is_tombstone
from geocache.store.errors import VersionRefused

log = logging.getLogger("geocache.warmup")

# Requests at once, over all sources: enough to keep a source and this node busy on a
# two-core machine (one reply in flight while the last is applied), few enough that
# warm-up does not crowd out client commands at the sources.
MAX_IN_FLIGHT = 4
# Buckets asked for in one request: at 100,000 keys about 3,000 records (a few ms to
# serve and apply); at millions of keys REPLY_MAX_BYTES cuts the reply shorter.
BUCKETS_PER_REQUEST = 32
# A reply's size (bytes of keys and values, plus RECORD_OVERHEAD_BYTES a record) beyond
# which the source sends no further bucket: with MAX_IN_FLIGHT, the memory warm-up holds.
REPLY_MAX_BYTES = 512 << 10
RECORD_OVERHEAD_BYTES = 64
# A request answers within this long, or its buckets go to the next candidate (ms).
WARM_TIMEOUT_MS = 5000
# Failed requests a bucket may see, over all its candidates, before it is left to repair;
# a failed request waits RETRY_S first (a peer's connection in its reconnect backoff).
ATTEMPTS = 3
RETRY_S = 0.2


@dataclass(slots=True)
class WarmStats:
    buckets_wanted: int = 0  # buckets this node owns that a source held differently
    buckets_pulled: int = 0
    buckets_failed: int = 0  # left to repair: no candidate answered
    records: int = 0  # records received
    applied: int = 0  # records that changed the store
    skipped_full: int = 0  # new keys that did not fit without evicting
    requests: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class WarmSources(Protocol):
    """Where warm-up looks beyond this region (streams.RegionStreams)."""

    def warm_up_source(self) -> list[str]: ...


class WarmView(Protocol):
    """What warm-up sees of its cluster (cluster.Cluster satisfies it)."""

    @property
    def node_id(self) -> str: ...

    @property
    def host(self) -> ClusterHost: ...

    @property
    def store(self) -> JournaledStore: ...

    @property
    def peers(self) -> Peers: ...

    @property
    def streams(self) -> WarmSources: ...

    def region_peers(self) -> list[str]: ...

    def addr_of(self, node_id: str) -> str | None: ...

    def bucket_owners(self, bucket: int) -> list[str]: ...

    def version_refused(self, exc: VersionRefused, peer_id: str, key: bytes, via: str) -> Error:
        """A pulled record whose version the clock does not admit: logged."""
        ...


# Per bucket, the nodes to ask for it, in order (the first is asked next).
Plan = dict[int, list[str]]
Owners = Callable[[int], list[str]]


class WarmUp:
    """One node's warm-up pull (see the module docstring)."""

    def __init__(self, view: WarmView) -> None:
        self.view = view
        self.stats = WarmStats()
        self._plan: Plan = {}
        self._queues: dict[str, deque[int]] = {}  # per source, buckets to ask it for
        self._in_flight: dict[str, int] = {}
        self._attempts: dict[int, int] = {}
        self._paced = 0  # records received since `_started`, for warmup_keys_per_s
        self._started = 0.0

    async def run(self) -> None:
        """Pull from this region's peers, then from the nearest other region."""
        view = self.view
        self._started = asyncio.get_running_loop().time()
        await self._pull(view.region_peers(), view.bucket_owners)
        remote = view.streams.warm_up_source()
        if remote:
            replicas = view.host.config.replicas

            def owners(bucket: int) -> list[str]:
                return placement.owners(digest.bucket_token(bucket), remote, replicas)

            await self._pull(remote, owners)

    def status(self) -> dict[str, int]:
        """The stats, and what the store holds (for the log line that says ready)."""
        return {**self.stats.as_dict(), "keys_held": len(self.view.store)}

    # -- planning ---------------------------------------------------------------------------

    async def _pull(self, members: Sequence[str], owners_of: Owners) -> None:
        plan = await self._planned(members, owners_of)
        if not plan:
            return
        self.stats.buckets_wanted += len(plan)
        self._plan, self._queues, self._attempts = plan, {}, {}
        for bucket, sources in plan.items():
            self._queues.setdefault(sources[0], deque()).append(bucket)
        await asyncio.gather(*(self._worker() for _ in range(MAX_IN_FLIGHT)))

    async def _planned(self, members: Sequence[str], owners_of: Owners) -> Plan:
        """Per bucket this node owns, the members holding it otherwise, owners first."""
        view, me = self.view, self.view.node_id
        held = await asyncio.gather(*(self._digest_of(m) for m in members))
        digests = {m: d for m, d in zip(members, held, strict=True) if d is not None}
        mine = view.store.digest.buckets
        plan: Plan = {}
        for b in range(digest.BUCKETS):
            if me not in view.bucket_owners(b):
                continue
            owners = [o for o in owners_of(b) if o != me]
            ranked = owners + [m for m in members if m not in owners and m != me]
            sources = [m for m in ranked if (d := digests.get(m)) and d[b] not in (0, mine[b])]
            if sources:
                plan[b] = sources
        return plan

    async def _digest_of(self, node_id: str) -> list[int] | None:
        addr = self.view.addr_of(node_id)
        if addr is None:
            return None
        try:
            reply = await self.view.peers.get(addr).call("GC.DIGEST", timeout_ms=WARM_TIMEOUT_MS)
            return digest.decode_buckets(digest.as_bytes(reply))
        except (PeerError, TimeoutError, OSError, ValueError) as exc:
            log.info("warm-up source did not answer", extra={"peer": node_id, "error": str(exc)})
            return None

    # -- pulling ----------------------------------------------------------------------------

    async def _worker(self) -> None:
        """Requests, one at a time, until no bucket is left to ask for."""
        while (job := self._next_job()) is not None:
            source, buckets = job
            self._in_flight[source] = self._in_flight.get(source, 0) + 1
            try:
                done = await self._request(source, buckets)
            except (PeerError, TimeoutError, OSError, ValueError) as exc:
                self.stats.failures += 1
                log.info("warm-up request failed", extra={"peer": source, "error": str(exc)})
                self._reassign(buckets)
                await asyncio.sleep(RETRY_S)
                continue
            finally:
                self._in_flight[source] -= 1
            self.stats.buckets_pulled += done
            self._queues.setdefault(source, deque()).extendleft(reversed(buckets[done:]))
            await self._pace()

    def _next_job(self) -> tuple[str, list[int]] | None:
        """The source with buckets waiting and the fewest requests in flight, and its next
        buckets."""
        waiting = [s for s, q in self._queues.items() if q]
        if not waiting:
            return None
        source = min(waiting, key=lambda s: self._in_flight.get(s, 0))
        queue = self._queues[source]
        return source, [queue.popleft() for _ in range(min(BUCKETS_PER_REQUEST, len(queue)))]

    def _reassign(self, buckets: list[int]) -> None:
        """A request failed: each bucket goes to its next candidate (the failed one last)."""
        for b in buckets:
            self._attempts[b] = self._attempts.get(b, 0) + 1
            sources = self._plan[b]
            sources.append(sources.pop(0))
            if self._attempts[b] >= ATTEMPTS:
                self.stats.buckets_failed += 1
            else:
                self._queues.setdefault(sources[0], deque()).append(b)

    async def _request(self, source: str, buckets: list[int]) -> int:
        """Ask `source` for `buckets` and apply its records; how many buckets came whole."""
        view = self.view
        addr = view.addr_of(source)
        if addr is None:
            raise PeerError(f"{source}: no address")
        self.stats.requests += 1
        reply = await view.peers.get(addr).call(
            "GC.WARM", REPLY_MAX_BYTES, *buckets, timeout_ms=WARM_TIMEOUT_MS
        )
        done, writes = decode_reply(reply)
        if not 1 <= done <= len(buckets):
            raise ValueError(f"GC.WARM sent {done} of {len(buckets)} buckets")
        self.stats.records += len(writes)
        self._paced += len(writes)
        for key, record in writes:
            self._apply(source, key, record)
        return done

    def _apply(self, source: str, key: bytes, record: Entry | Tombstone) -> None:
        store = self.view.store
        try:
            if (
                not is_tombstone(record)
                and store.version_of(key) is None
                and not has_room(store, key, record[0], record[1])
            ):
                self.stats.skipped_full += 1
                return
            if store.apply(key, record):
                self.stats.applied += 1
        except VersionRefused as exc:
            self.view.version_refused(exc, source, key, "warm-up (GC.WARM)")

    async def _pace(self) -> None:
        """Sleep until the records received so far are within warmup_keys_per_s."""
        rate = self.view.host.config.warmup_keys_per_s
        if rate > 0:
            ahead_s = self._paced / rate - (asyncio.get_running_loop().time() - self._started)
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)


def has_room(store: JournaledStore, key: bytes, value: bytes, expires_at_ms: int) -> bool:
    """Whether a new key fits without evicting anything."""
    if store.max_keys and len(store) >= store.max_keys:
        return False
    size = entry_size(key, value, expires_at_ms)
    return not store.max_bytes or store.used_bytes + size <= store.max_bytes


# -- GC.WARM on the wire (the serving side is sans-IO) ---------------------------------------


def serve(store: JournaledStore, buckets: Sequence[int], max_bytes: int) -> list[bytes]:
    """GC.WARM's reply: how many of `buckets` follow whole (a decimal), then every record
    held in each as GC.GEO fields, adding buckets while the reply is under `max_bytes`
    (the first always)."""
    out: list[bytes] = [b""]
    size = done = 0
    for bucket in buckets:
        if done and size >= max_bytes:
            break
        for key, *_stamps in store.digest.keys_in_bucket(bucket):
            record = store.peek(key) or store.tombstones.get(key)  # peek: expired -> tombstone
            if record is None:
                continue
            wire = [_as_bytes(f) for f in geo_fields(key, record)]
            size += len(key) + len(wire[4]) + RECORD_OVERHEAD_BYTES
            out += wire
        done += 1
    out[0] = b"%d" % done
    return out


def decode_reply(reply: object) -> tuple[int, list[Write]]:
    """GC.WARM's reply as (buckets sent whole, records); ValueError if it is malformed."""
    if not isinstance(reply, list) or not reply or (len(reply) - 1) % GEO_FIELDS:
        raise ValueError(f"bad GC.WARM reply: {reply!r:.100}")
    flat = [f for f in reply if isinstance(f, bytes)]
    if len(flat) != len(reply):
        raise ValueError("GC.WARM's reply holds bulk strings only")
    return int(flat[0]), [
        from_geo_fields(flat[i : i + GEO_FIELDS]) for i in range(1, len(flat), GEO_FIELDS)
    ]


def _as_bytes(field: bytes | str | int) -> bytes:
    if isinstance(field, bytes):
        return field
    if isinstance(field, str):
        return field.encode("utf-8", "surrogateescape")
    return b"%d" % field
