"""Cross-region replication: one outbound stream per remote region (DESIGN.md section 6).

Every region holds the whole data set. The node that coordinated a write (the key's
primary, or the next owner when the primary is down) puts it on one `Stream` per other
region. A stream is a queue that keeps only the newest record per key (a cache needs
the last value, not every value), flushed in batches FLUSH_MS after the first record
arrives or at once when BATCH_MAX are waiting, up to MAX_IN_FLIGHT batches at a time
(a window that covers the round trip: the stream never waits for an acknowledgement).

A batch goes to a gateway: an alive member of the remote region, the same one for as
long as it answers (chosen by rendezvous on this node's id, so a region's senders
spread over the remote nodes). The gateway applies each record to the key's owners in
its region, exactly as a replica applies an in-region write (the merge rule decides,
so order, retries and duplicates are harmless), and answers with its wall clock. The
lag of a record is that time less the time its version was issued.

A batch that fails goes back on the queue (unless a newer record for the key is already
there) and the stream backs off, doubling from BACKOFF_MIN_S to BACKOFF_MAX_S. The queue
is bounded (`geo_queue_max` keys, and `max_hint_bytes` of keys and values: a queued
record keeps its value alive after the store has replaced or evicted it), and a batch
holds at most BATCH_MAX_BYTES: on overflow, or when the region stays unreachable
for `geo_resync_after_s`, the queue is dropped and the stream marked for resync: once
the region answers again, this node asks each of its members to pull from it
(`GC.REPAIR 1`, the digest repair of repair.py, copying keys they lack) and pulls from
each of them in turn. The same resync runs when a member of this node's own region dies:
writes it had queued and not yet sent are gone with it, but its region's other owners
hold them.

Reads stay in the region. With `read_remote_on_miss`, a miss asks the owners of the key
in the nearest other region (by the RTT each stream measures with a PING every
RTT_PROBE_S) within `remote_read_budget_ms`, and keeps what they hold.

The streams see their cluster as a `StreamsView`: membership (the members of each
region, their addresses, who is down, the owners of a key here), the peer connections,
the store, and the few calls they make back (ship to an owner, apply a fetched record,
ask repair to pull); `Cluster` satisfies it, and a unit test passes a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from itertools import islice
from typing import TYPE_CHECKING, Protocol

from geocache.clock import Clock, version_ms
from geocache.cluster import placement
from geocache.cluster.hints import hint_bytes
from geocache.cluster.host import ClusterHost
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.peers import GEO, PeerError, Peers
from geocache.cluster.records import GEO_FIELDS, from_geo_fields, geo_fields
from geocache.cluster.swim_messages import MemberState
from geocache.observability.events import NO_EVENTS, ClusterEvents
from geocache.observability.histogram import REGION_LAG_BOUNDS_MS, Histogram
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command
from geocache.store.entry import Entry, Tombstone, latest_version
from geocache.store.errors import VersionRefused

if TYPE_CHECKING:
    from geocache.cluster.swim import Change

log = logging.getLogger("geocache.geo")

FLUSH_MS = 5
BATCH_MAX = 512
# ... and at most this many bytes of keys and values (one record at least): 64 batches
# in flight then hold at most 256 MiB of big values, not 64 x 512 of them.
BATCH_MAX_BYTES = 4 << 20
# Batches sent and not yet acknowledged: enough to keep a flush interval's batch
# leaving while earlier ones cross a long link (a 200 ms round trip / FLUSH_MS = 40).
MAX_IN_FLIGHT = 64
# A batch crosses a WAN link and is applied at the remote owners before it is answered.
GEO_TIMEOUT_MS = 3000
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
RTT_PROBE_S = 1.0
RTT_ALPHA = 0.3
# Lags kept per stream for the percentiles INFO and /metrics report.
LAG_SAMPLES = 4096
FIELDS_PER_RECORD = GEO_FIELDS
# On stop, queued writes get this long to leave (s).
DRAIN_S = 1.0


class RepairRequests(Protocol):
    """Repair, as a stream asks it to pull from a region's members (repair.Repairer)."""

    def request(self, peer_id: str, copy_missing: bool = False) -> None: ...


class StreamsView(Protocol):
    """What the region streams see of their cluster (cluster.Cluster satisfies it)."""

    @property
    def node_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def replicas(self) -> int: ...

    @property
    def host(self) -> ClusterHost: ...

    @property
    def store(self) -> JournaledStore: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def peers(self) -> Peers: ...

    @property
    def repairer(self) -> RepairRequests: ...

    def owners(self, key: bytes) -> list[str]: ...

    def addr_of(self, node_id: str) -> str | None: ...

    def known_down(self, node_id: str) -> bool: ...

    def region_members(self, region: str) -> list[str]: ...

    def known_regions(self) -> list[str]: ...

    async def ship_to(self, target: str, writes: list[Write]) -> tuple[str, bool]: ...

    def apply_fetched(self, key: bytes, reply: object) -> bool: ...

    def version_refused(self, exc: VersionRefused, peer_id: str, key: bytes, via: str) -> Error:
        """A received record whose version the clock does not admit: logged."""
        ...


class Stream:
    """The outbound stream to one remote region."""

    def __init__(self, parent: RegionStreams, region: str) -> None:
        self.parent = parent
        self.region = region
        # Coalescing: key -> newest write. Without it (benchmarks), a counter -> write.
        self._queue: dict[object, Write] = {}
        self._bytes = 0  # what the queued records take (hints.hint_bytes)
        self._seq = 0
        self._in_flight = 0
        self._flush_at: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN_S
        self._unreachable_since: float | None = None
        self._gateway: str | None = None
        self.resync = False
        self.rtt_ms: float | None = None
        self.lags: deque[int] = deque(maxlen=LAG_SAMPLES)
        self.lag_histogram = Histogram(REGION_LAG_BOUNDS_MS)  # every write, for /metrics
        self.last_lag_ms = 0
        self.stats = {
            "sent": 0,
            "acked": 0,
            "coalesced": 0,
            "failures": 0,
            "resyncs": 0,
            "bytes": 0,
        }
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the queue -------------------------------------------------------------------------

    def put(self, write: Write) -> None:
        key = write[0]
        queue = self._queue
        size = hint_bytes(key, write[1])
        if self.parent.coalesce:
            if key in queue:
                self.stats["coalesced"] += 1
                self._bytes += size - hint_bytes(key, queue[key][1])
                queue[key] = write
                self._check_bytes()
                return
            slot: object = key
        else:
            self._seq += 1
            slot = self._seq
        if len(queue) >= self.parent.queue_max:
            self.mark_resync("queue overflow")
            return
        queue[slot] = write
        self._bytes += size
        if self._check_bytes():
            return
        if len(queue) >= BATCH_MAX:
            self._wake.set()
        elif self._flush_at is None:
            loop = asyncio.get_running_loop()
            self._flush_at = loop.call_later(FLUSH_MS / 1000, self._wake.set)

    def _check_bytes(self) -> bool:
        """Past the byte bound the queue goes, as on overflow: True if it went."""
        if self._bytes > self.parent.queue_max_bytes > 0:
            self.mark_resync("queue over max_hint_bytes")
            return True
        return False

    def _requeue(self, writes: list[Write]) -> None:
        """A failed batch goes back on the queue, unless a newer write of a key is there."""
        queue = self._queue
        for write in writes:
            key = write[0]
            queued = queue.get(key) if self.parent.coalesce else None
            if queued is not None:
                if _newer(write[1], queued[1]):
                    # Batches failing together: keep the newest.
                    self._bytes += hint_bytes(key, write[1]) - hint_bytes(key, queued[1])
                    queue[key] = write
                continue
            if len(queue) >= self.parent.queue_max:
                self.mark_resync("queue overflow on retry")
                return
            if self.parent.coalesce:
                queue[key] = write
            else:
                self._seq += 1
                queue[self._seq] = write
            self._bytes += hint_bytes(key, write[1])
        self._check_bytes()

    def mark_resync(self, why: str) -> None:
        if not self.resync:
            log.warning("region stream needs a resync", extra={"region": self.region, "why": why})
            self.parent.events.record("resync_needed", self.region, self.region, why)
        self.resync = True
        self._queue.clear()
        self._bytes = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- sending ---------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_probe = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RTT_PROBE_S / 4):
                    await self._wake.wait()
            self._wake.clear()
            self._flush_at = None
            now = loop.time()
            if now >= next_probe:
                next_probe = now + RTT_PROBE_S
                self._spawn(self._probe())
            if now < self._retry_at:
                continue
            if self.resync and self.parent.members(self.region):
                await self._resync()
            while self._queue and self._in_flight < MAX_IN_FLIGHT:
                batch = self._take_batch()
                self._in_flight += 1
                self._spawn(self._send(batch))

    def _take_batch(self) -> list[Write]:
        """The oldest queued records, up to BATCH_MAX and BATCH_MAX_BYTES (one at least)."""
        queue = self._queue
        batch: list[Write] = []
        size = 0
        for slot in list(islice(queue, BATCH_MAX)):
            write = queue[slot]
            cost = hint_bytes(write[0], write[1])
            if batch and size + cost > BATCH_MAX_BYTES:
                break
            del queue[slot]
            batch.append(write)
            size += cost
        self._bytes -= size
        return batch

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def gateways(self) -> list[str]:
        """The remote region's alive members, the current gateway first, any known to be
        down last."""
        members = self.parent.members(self.region)
        me = self.parent.cluster.node_id
        ranked = sorted(members, key=lambda m: placement.weight(me.encode(), m), reverse=True)
        if self._gateway in ranked:
            ranked.remove(self._gateway)
            ranked.insert(0, self._gateway)
        # A member whose connection just failed or hung goes last: no batch waits on it.
        ranked.sort(key=self.parent.cluster.known_down)
        return ranked

    async def _send(self, batch: list[Write]) -> None:
        loop = asyncio.get_running_loop()
        try:
            applied_ms = await self._deliver(batch)
        except PeerError as exc:
            self.stats["failures"] += 1
            self._requeue(batch)
            now = loop.time()
            if self._unreachable_since is None:
                self._unreachable_since = now
            elif now - self._unreachable_since >= self.parent.resync_after_s:
                self.mark_resync(f"unreachable for {self.parent.resync_after_s:g} s")
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            log.debug("region batch failed", extra={"region": self.region, "error": str(exc)})
        else:
            self._unreachable_since = None
            self._backoff = BACKOFF_MIN_S
            self.stats["acked"] += len(batch)
            worst = 0
            for _key, record in batch:
                lag = max(0, applied_ms - version_ms(latest_version(record)))
                self.lags.append(lag)
                self.lag_histogram.observe(lag)
                worst = max(worst, lag)
            self.last_lag_ms = worst
        finally:
            self._in_flight -= 1
            self._wake.set()

    async def _deliver(self, batch: list[Write]) -> int:
        args: list[bytes | str | int] = ["GC.GEO", self.parent.cluster.region]
        for key, record in batch:
            args += geo_fields(key, record)
        self.stats["sent"] += len(batch)
        self.stats["bytes"] += len(encode_command(*args))
        last: Exception | None = None
        for gateway in self.gateways()[:2]:
            addr = self.parent.cluster.addr_of(gateway)
            if addr is None:
                continue
            try:
                reply = await self.parent.cluster.peers.get(addr, GEO).call(
                    *args, timeout_ms=GEO_TIMEOUT_MS
                )
            except PeerError as exc:
                last = exc
                continue
            if isinstance(reply, int):
                self._gateway = gateway
                return reply
            last = PeerError(f"{gateway}: {reply!r}")
        raise PeerError(f"region {self.region}: no gateway answered ({last})")

    async def _probe(self) -> None:
        gateways = self.gateways()
        addr = self.parent.cluster.addr_of(gateways[0]) if gateways else None
        if addr is None:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self.parent.cluster.peers.get(addr, GEO).call("PING", timeout_ms=GEO_TIMEOUT_MS)
        except PeerError:
            return
        rtt = (loop.time() - started) * 1000
        self.rtt_ms = (
            rtt if self.rtt_ms is None else RTT_ALPHA * rtt + (1 - RTT_ALPHA) * self.rtt_ms
        )

    async def _resync(self) -> None:
        """Ask every member of the region to pull from this node, and pull from each."""
        cluster = self.parent.cluster
        members = self.parent.members(self.region)
        calls = []
        for member in members:
            addr = cluster.addr_of(member)
            if addr is not None:
                calls.append(cluster.peers.get(addr).call("GC.REPAIR", 1, timeout_ms=1000))
        results = await asyncio.gather(*calls, return_exceptions=True)
        if len(results) < len(members) or any(
            isinstance(r, BaseException | Error) for r in results
        ):
            self._retry_at = asyncio.get_running_loop().time() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            return
        for member in members:
            cluster.repairer.request(member, copy_missing=True)
        self.resync = False
        self.stats["resyncs"] += 1
        log.info("region resync started", extra={"region": self.region, "members": len(members)})
        self.parent.events.resync_started(self.region, members)

    # -- reporting ---------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT: counters and lag samples start again."""
        self.lags.clear()
        self.lag_histogram.reset()
        self.last_lag_ms = 0
        for name in self.stats:
            self.stats[name] = 0

    def lag_percentile(self, q: float) -> int:
        if not self.lags:
            return 0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def status(self) -> dict[str, float | int]:
        return {
            "rtt_ms": round(self.rtt_ms, 1) if self.rtt_ms is not None else -1,
            "lag_ms": self.last_lag_ms,
            "lag_p50_ms": self.lag_percentile(0.5),
            "lag_p99_ms": self.lag_percentile(0.99),
            "queued": self.queued,
            "queued_bytes": self._bytes,
            "resync": int(self.resync),
            **self.stats,
        }


class RegionStreams:
    """A node's outbound streams, its gateway side, and reads from other regions."""

    def __init__(self, cluster: StreamsView, events: ClusterEvents = NO_EVENTS) -> None:
        config = cluster.host.config
        self.cluster = cluster
        self.events = events  # resyncs needed and started, for the dashboard's timeline
        self.queue_max = config.geo_queue_max
        self.queue_max_bytes = config.max_hint_bytes
        self.resync_after_s = config.geo_resync_after_s
        self.coalesce = config.geo_coalesce
        self.streams: dict[str, Stream] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Set at the first write this node coordinated (see on_changes).
        self.shipped = False
        self.stats = {"received": 0, "applied": 0, "remote_reads": 0, "remote_hits": 0}

    def members(self, region: str) -> list[str]:
        return self.cluster.region_members(region)

    def on_changes(self, changes: list[Change]) -> None:
        """Membership changed: streams for newly seen regions; a resync after a local death."""
        for old, new in changes:
            if new.region != self.cluster.region and new.region not in self.streams:
                stream = self.streams[new.region] = Stream(self, new.region)
                # Writes this node coordinated before it knew the region never went there.
                stream.resync = self.shipped
                self._tasks[new.region] = asyncio.ensure_future(stream.run())
            elif (
                new.region == self.cluster.region
                and new.state is MemberState.DEAD
                and old is not None
                and old.state is not MemberState.DEAD
            ):
                for stream in self.streams.values():
                    stream.resync = True  # its unsent writes: the queue itself is fine
                    stream._wake.set()

    def warm_up_source(self) -> list[str]:
        """The members of the nearest other region (by RTT once measured, else by name)."""
        regions = [r for r in self.cluster.known_regions() if r != self.cluster.region]
        if not regions:
            return []

        def distance(region: str) -> tuple[float, str]:
            stream = self.streams.get(region)
            rtt = stream.rtt_ms if stream is not None else None
            return (rtt if rtt is not None else float("inf"), region)

        return self.members(min(regions, key=distance))

    def ship(self, writes: list[Write]) -> None:
        """Writes this node coordinated: on their way to every other region."""
        self.shipped = True
        for stream in self.streams.values():
            for write in writes:
                stream.put(write)

    async def stop(self) -> None:
        """Give queued writes a moment to leave, then stop."""
        deadline = asyncio.get_running_loop().time() + DRAIN_S
        while any(s.queued for s in self.streams.values()):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(FLUSH_MS / 1000)
        for task in self._tasks.values():
            task.cancel()

    # -- the gateway side ---------------------------------------------------------------------

    async def receive(self, writes: list[Write], sender: str = "") -> int:
        """Apply a batch from another region at this region's owners; answer the time.
        A record whose version the clock does not admit goes nowhere (logged)."""
        cluster = self.cluster
        me = cluster.node_id
        store = cluster.store
        hlc = store.hlc
        by_target: dict[str, list[Write]] = {}
        self.stats["received"] += len(writes)
        for write in writes:
            key, record = write
            version = record[0] if len(record) == 3 else record[2]
            if not hlc.admits(version):
                store.versions_refused += 1
                exc = VersionRefused(version, hlc.ahead_ms(version), hlc.max_ahead_ms)
                cluster.version_refused(exc, sender, key, "GC.GEO")
                continue
            for owner in cluster.owners(key):
                if owner != me:
                    by_target.setdefault(owner, []).append(write)
                else:
                    self.stats["applied"] += store.apply(key, record)
        if by_target:
            await asyncio.gather(*(cluster.ship_to(t, w) for t, w in by_target.items()))
        return cluster.clock.wall_ms()

    # -- reads from another region --------------------------------------------------------------

    async def read_remote(self, key: bytes) -> bool:
        """Ask the nearest other region for `key` within the budget; True if now held."""
        cluster = self.cluster
        reachable = [s for s in self.streams.values() if s.rtt_ms is not None and s.gateways()]
        if not reachable:
            return False
        nearest = min(reachable, key=lambda s: s.rtt_ms or 0.0)
        owners = placement.key_owners(key, self.members(nearest.region), cluster.replicas)
        self.stats["remote_reads"] += 1
        budget_ms = cluster.host.config.remote_read_budget_ms
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_ms / 1000
        for owner in owners:
            addr = cluster.addr_of(owner)
            left_ms = int((deadline - loop.time()) * 1000)
            if addr is None or left_ms <= 0:
                continue
            try:
                reply = await cluster.peers.get(addr).call("GC.FETCH", key, timeout_ms=left_ms)
            except PeerError:
                continue
            if cluster.apply_fetched(key, reply):
                self.stats["remote_hits"] += 1
                return True
            if reply is None or isinstance(reply, list):
                return False  # the owner answered: the key is not there either
        return False

    def reset_stats(self) -> None:
        for stream in self.streams.values():
            stream.reset_stats()

    def status(self) -> dict[str, dict[str, float | int]]:
        return {region: s.status() for region, s in sorted(self.streams.items())}


def decode_batch(argv: list[bytes]) -> list[Write]:
    """GC.GEO's records (records.py: key, version, origin, expires_at_ms (-1: a delete),
    value, expiry)."""
    if len(argv) % FIELDS_PER_RECORD:
        raise ValueError(f"GC.GEO records come in {FIELDS_PER_RECORD}s")
    return [
        from_geo_fields(argv[i : i + FIELDS_PER_RECORD])
        for i in range(0, len(argv), FIELDS_PER_RECORD)
    ]


def _newer(a: Entry | Tombstone, b: Entry | Tombstone) -> bool:
    """Whether record `a` holds a newer write than `b`: a coordinator's records of one key
    only grow, register by register, so the later one has the larger latest version."""
    return latest_version(a) > latest_version(b)
