"""A node's part in its cluster: membership on the wire, owners, replication and hints.

`Cluster` drives the sans-IO SWIM state machine (swim.py) over peer connections
(`GC.SWIM <from addr> <message>`), computes each key's owners in this node's region
from the alive members (placement.py), ships the coordinator's writes to the other
owners (`GC.APPLYBATCH`, a batch a peer: replication.py) and counts their
acknowledgements against `write_acks`, keeps hints for owners that did not answer and
replays them when those owners are alive again.

Reads and writes of the local store happen in command handlers; this module only does
the network side, so everything here is asyncio and nothing here touches a key twice
across an await.

Trust (auth.py, clock.py): the handshakes this node answers and the ones it dials are
counted and logged (rate-limited); until it has proven the cluster secret to some peer
(or one to it), a node started with seeds is not ready once any seed refused it, and
says why (`trust_failure`). Versions received that the clock does not admit are refused
and logged (`version_refused`). Membership messages carry the sender's wall clock, so
a node whose clock is off from its peers' by more than half `max_clock_skew_ms` says so.

The cluster sits below the server: it is handed its store, its peer connections and its
random source, and sees the node that runs it only as a `ClusterHost` (the settings of
the moment and the read-through origin, both of which the node may change).
"""

from __future__ import annotations

import asyncio
import logging
import random

from geocache.clock import Clock
from geocache.cluster import digest, placement, records
from geocache.cluster.discovery import (
    DnsResolver,
    NoResolver,
    Resolver,
    SeedWatcher,
    is_named,
    parse_seeds,
)
from geocache.cluster.handoff import HandoffStats, hand_off
from geocache.cluster.hints import Hints, Pacer, hint_bytes
from geocache.cluster.host import ClusterHost
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.mdns import MdnsDiscovery
from geocache.cluster.peers import FORWARD, GEO, PeerError, Peers, encode_request
from geocache.cluster.records import apply_command
from geocache.cluster.repair import Repairer
from geocache.cluster.replication import Replicator
from geocache.cluster.router import FORWARD_TIMEOUT_MS, PEER_TIMEOUT_MS, Router
from geocache.cluster.streams import RegionStreams
from geocache.cluster.swim import Send, Swim, local_member
from geocache.cluster.swim_messages import Member, MemberState, decode, encode
from geocache.cluster.timing import swim_config
from geocache.cluster.trust import Trust
from geocache.observability.events import NO_EVENTS, ClusterEvents
from geocache.protocol.types import Error
from geocache.store.errors import VersionRefused

log = logging.getLogger("geocache.cluster")

# The membership state machine is ticked every 50 ms; its own intervals (swim.py) are
# multiples of this.
TICK_S = 0.05
# Replication gives a peer PEER_TIMEOUT_MS to answer before counting it failed; a
# forwarded write waits at its coordinator for that replication, so the node forwarding
# it waits FORWARD_TIMEOUT_MS: timeouts must not nest equal (router.py defines both).
# Hints are replayed to alive owners every second, batch after batch while they are
# delivered, each at most this many records (and the target's Pacer's bytes).
HINT_REPLAY_S = 1.0
HINT_BATCH = 1000
# After this node starts or membership changes, a miss at an owner asks the other
# members before answering (warm-up and rebalancing), for this long.
WARM_WINDOW_MS = 30_000
# After announcing a graceful leave, keep answering peers this long, so members that
# missed the announcement learn it from their next probe (about a third of an interval).
LEAVE_GRACE_S = 0.3
# How long the leave announcement waits for each member to take it (ms).
LEAVE_ACK_TIMEOUT_MS = 2000


class Cluster:
    def __init__(
        self,
        host: ClusterHost,
        store: JournaledStore,
        clock: Clock,
        peers: Peers,
        rng: random.Random,
        addr: str,
        events: ClusterEvents = NO_EVENTS,
        resolver: Resolver | None = None,
    ) -> None:
        """`peers`: the connections to other nodes; `rng` seeds membership's and repair's
        choices (a simulated run replays exactly); `addr`: where peers reach this node;
        `resolver`: DNS for `dns:` and `srv:` seeds (default: dnspython, when a seed is
        named)."""
        config = host.config
        self.host = host
        self.store = store
        self.clock = clock
        self.node_id = config.effective_node_id
        self.region = config.region
        self.replicas = config.replicas
        self.write_acks = config.write_acks
        self.secret = config.cluster_secret
        self.addr = addr
        self.swim = Swim(
            local_member(self.node_id, self.addr, self.region, clock),
            swim_config(config),
            clock,
            random.Random(rng.random()),
        )
        self.peers = peers
        self.router = Router(self)
        self.hints = Hints(max_bytes=config.max_hint_bytes)
        self.replicator = Replicator(self, PEER_TIMEOUT_MS)
        self._pacers: dict[str, Pacer] = {}
        # Membership changes, resyncs and repair passes, for the dashboard's timeline.
        self.events = events
        self.repairer = Repairer(self, random.Random(rng.random()), events)
        self.streams = RegionStreams(self, events)
        # Seeds: the resolved --seeds, and the nodes mDNS found; membership gets both.
        seeds = parse_seeds(config.seeds)
        if resolver is None:
            resolver = DnsResolver(config.dns_server) if is_named(seeds) else NoResolver()
        self.seed_watcher = SeedWatcher(seeds, resolver, self._on_seed_addrs)
        self._found: list[str] = []
        self.mdns = (
            MdnsDiscovery(
                self.node_id,
                addr,
                self.region,
                config.cluster_name,
                config.mdns_service_type,
                self._on_found,
            )
            if config.discover == "mdns"
            else None
        )
        self._region_ids: list[str] = [self.node_id]
        # Owners by digest bucket, for the region's members of the moment (cleared when
        # they change): a key's owners are its bucket's, so 1,024 entries at most.
        self._owners_of_bucket: dict[int, list[str]] = {}
        # Alive members of every region, this node included in its own.
        self._by_region: dict[str, list[str]] = {self.region: [self.node_id]}
        self._addr_of: dict[str, str] = {self.node_id: self.addr}
        self._tasks: list[asyncio.Task[None]] = []
        self.warm_until_ms = clock.mono_ms() + WARM_WINDOW_MS
        # Flushes (FLUSHALL) members have not acknowledged yet: node id -> version.
        self._unflushed: dict[str, int] = {}
        self.handoff = HandoffStats()  # the graceful leave's, once stopped
        self.stats = {
            "forwarded": 0,
            "replicated": 0,
            "replica_failures": 0,
            "hints_replayed": 0,
            "hint_batches_split": 0,
        }
        self.trust = Trust(host, clock, peers.handshakes, self.node_id)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._send(self.swim.join(await self.seed_watcher.resolve(notify=False)))
        self.seed_watcher.start()
        if self.mdns is not None:
            await self.mdns.start()
        self._tasks.append(asyncio.create_task(self._tick_loop()))
        self._tasks.append(asyncio.create_task(self._hint_loop()))
        self.repairer.start()

    async def stop(self) -> None:
        """Announce a graceful leave, hand this node's keys to the members that take
        over its buckets (handoff.py), then close peer connections."""
        announced = asyncio.ensure_future(self._announce_leave())
        self.seed_watcher.stop()
        if self.mdns is not None:
            await self.mdns.stop()
        await asyncio.sleep(LEAVE_GRACE_S)  # members that missed it learn it from a probe
        await announced
        self.handoff = await hand_off(self)
        await self.streams.stop()
        for task in self._tasks:
            task.cancel()
        self.repairer.stop()
        self.peers.close()

    async def _announce_leave(self) -> None:
        """LEFT to every live member, waiting (up to LEAVE_ACK_TIMEOUT_MS) until each has
        taken it: a member that answered no longer counts this node an owner, so it sends
        no more writes here and coordinates them itself. (Told without waiting, a member
        slow to read it, on a loaded host, forwarded writes here after this node closed:
        a client error, with one copy of each key.) Writes forwarded before are still
        served: peer connections stay open through the handoff, whose second pass
        carries them over."""
        wall_ms = self.clock.wall_ms()
        calls = [
            self.peers.get(send.to_addr).call(
                "GC.SWIM", self.addr, encode(send.msg), wall_ms, timeout_ms=LEAVE_ACK_TIMEOUT_MS
            )
            for send in self.swim.leave()
        ]
        await asyncio.gather(*calls, return_exceptions=True)

    # -- membership ------------------------------------------------------------------------

    def on_swim(self, from_addr: str, payload: bytes) -> None:
        """A membership message from a peer (GC.SWIM)."""
        try:
            message = decode(payload)
        except ValueError as exc:
            log.warning("bad membership message", extra={"peer": from_addr, "error": str(exc)})
            return
        self._send(self.swim.receive(from_addr, message))
        self._refresh()

    def _on_seed_addrs(self, addrs: list[str]) -> None:
        """The seeds resolved again: membership syncs with the new ones."""
        self._send(self.swim.update_seeds([*addrs, *self._found]))

    def _on_found(self, addr: str) -> None:
        """A node of this cluster found on the local network (mDNS)."""
        self._found.append(addr)
        self._send(self.swim.update_seeds([*self.seed_watcher.addrs, *self._found]))

    def _send(self, sends: list[Send]) -> None:
        wall_ms = self.clock.wall_ms()
        for send in sends:
            payload = encode(send.msg)
            self.peers.get(send.to_addr).send_nowait("GC.SWIM", self.addr, payload, wall_ms)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                for region, stream in self.streams.streams.items():
                    self.swim.set_region_rtt(region, stream.rtt_ms)
                self._send(self.swim.tick())
                self._refresh()
            except Exception:  # pragma: no cover - a bug must not stop membership
                log.exception("membership tick failed")

    def _refresh(self) -> None:
        changes = self.swim.drain_changes()
        if not changes:
            return
        self.events.membership(changes)
        alive = self.swim.alive()
        self._addr_of = {m.node_id: m.addr for m in alive}
        self._addr_of[self.node_id] = self.addr
        self.trust.keep_peers(self._addr_of)
        # Dials must reach the node membership knows at an address: the alive member's,
        # else the last one known there (a crashed member's port taken by someone else).
        known = {m.addr: m.node_id for m in self.swim.members() if m.node_id != self.node_id}
        self.peers.expect(known | {m.addr: m.node_id for m in alive if m.node_id != self.node_id})
        by_region: dict[str, list[str]] = {self.region: [self.node_id]}
        for m in alive:
            if m.node_id != self.node_id:
                by_region.setdefault(m.region, []).append(m.node_id)
        self._by_region = {region: sorted(ids) for region, ids in by_region.items()}
        region_ids = self._by_region[self.region]
        if region_ids != self._region_ids:
            # Owners changed for some keys: misses ask the other members for a while.
            self._region_ids = region_ids
            self._owners_of_bucket = {}
            self.warm_until_ms = self.clock.mono_ms() + WARM_WINDOW_MS
            log.info("region members changed", extra={"members": ",".join(region_ids)})
        self.repairer.on_changes(changes)
        self.streams.on_changes(changes)

    def members(self) -> list[Member]:
        return self.swim.members()

    def last_addr(self, node_id: str) -> str | None:
        """The address membership last knew for `node_id`, in whatever state."""
        return next((m.addr for m in self.swim.members() if m.node_id == node_id), None)

    def status(self) -> dict[str, int]:
        """Plain numbers for INFO and /metrics, read at scrape time."""
        states = {state: 0 for state in MemberState}
        for member in self.swim.members():
            states[member.state] += 1
        return {
            **{f"members_{state.name.lower()}": n for state, n in states.items()},
            "region_members": len(self._region_ids),
            "replicas": self.replicas,
            "hints": len(self.hints),
            "hints_dropped": self.hints.dropped,
            "hint_bytes": self.hints.bytes,
            **self.stats,
            "ready": int(self.ready),
            **{f"repair_{name}": n for name, n in self.repairer.stats.as_dict().items()},
            **{f"warmup_{name}": n for name, n in self.repairer.warmer.stats.as_dict().items()},
            **self.trust.status(),
            "versions_refused": self.store.versions_refused,
        }

    # -- trust -----------------------------------------------------------------------------

    def version_refused(self, exc: VersionRefused, peer_id: str, key: bytes, via: str) -> Error:
        """A received version the clock does not admit: logged; the sender's error reply."""
        return self.trust.version_refused(exc, peer_id, key, via)

    def peer_wall_ms(self, peer_id: str, wall_ms: int) -> None:
        """A proven peer's wall clock, from its membership message (the skew check)."""
        self.trust.peer_wall_ms(peer_id, wall_ms, self._addr_of)

    def not_ready_reason(self) -> str:
        """Why /readyz says not ready; "" when ready."""
        failure = self.trust.failure()
        joined = self.repairer.ready  # warmed up, or the join timeout passed
        if failure and not (joined and self.host.config.allow_solo):
            return failure
        return "" if joined else "joining the cluster and warming up"

    # -- placement -------------------------------------------------------------------------

    def owners(self, key: bytes) -> list[str]:
        """The alive owners of `key` in this region, primary first (a fresh list)."""
        bucket = digest.bucket_of(key)
        found = self._owners_of_bucket.get(bucket)
        if found is None:
            found = self._owners_of_bucket[bucket] = self.bucket_owners(bucket)
        return list(found)

    def bucket_owners(self, bucket: int) -> list[str]:
        """Placement is per digest bucket: two owners of a bucket hold all of it (repair.py)."""
        return placement.owners(digest.bucket_token(bucket), self._region_ids, self.replicas)

    @property
    def ready(self) -> bool:
        """Warm-up done (or its time bound passed) and, with seeds, the secret proven
        (or `allow_solo`): /readyz may say ready."""
        # On the read path (router.py): a few attribute reads once warmed up and trusted.
        return self.repairer.ready and (not self.trust.failure() or self.host.config.allow_solo)

    def addr_of(self, node_id: str) -> str | None:
        return self._addr_of.get(node_id)

    def region_members(self, region: str) -> list[str]:
        """The alive members of `region` (of this node's own region: itself included)."""
        return self._by_region.get(region, [])

    def known_regions(self) -> list[str]:
        """Every region with an alive member, this node's own included."""
        return sorted(self._by_region)

    def region_peers(self) -> list[str]:
        return [n for n in self._region_ids if n != self.node_id]

    def seeds_to_join(self) -> list[str]:
        """The seeds besides this node: the addresses they resolved to, or, while no name
        has resolved yet, the seeds as given (a node that is its name's only address,
        the first of a region, is alone and need not wait for anyone)."""
        if self.seed_watcher.addrs:
            return [a for a in self.seed_watcher.addrs if a != self.addr]
        return [s for s in self.host.config.seed_list if s != self.addr]

    def joined(self) -> bool:
        """Whether this node knows any other member (of any region)."""
        return len(self._addr_of) > 1

    def warming(self) -> bool:
        """Owners may have moved lately (start, membership change): misses ask around.

        For the whole window, not only while repair passes run: a pass that failed and
        was dropped, or a record that arrived between passes, would otherwise be a miss.
        """
        return self.clock.mono_ms() < self.warm_until_ms

    def required_acks(self, owners: int) -> int:
        if self.write_acks == "one":
            return 1
        if self.write_acks == "all":
            return owners
        return owners // 2 + 1

    # -- replication -----------------------------------------------------------------------

    def replicate(self, writes: list[Write], reply: object) -> object:
        """Ship writes to their other owners, a batch a peer (replication.py): `reply` at
        once when no other owner needs to acknowledge them (a lone owner,
        write_acks=one), else a `Deferred` answering `reply` once enough have applied
        them (NOREPLICAS if too few could)."""
        return self.replicator.replicate(writes, reply)

    def known_down(self, node_id: str) -> bool:
        """A peer whose connection just failed or that stopped answering (hung), before
        membership has caught up: writes neither wait for it nor count it in quorums."""
        if node_id == self.node_id:
            return False
        addr = self.addr_of(node_id)
        peers = self.peers
        return (
            addr is None
            or peers.get(addr).failed_recently()
            or peers.get(addr, FORWARD).failed_recently()
            or peers.get(addr, GEO).failed_recently()
        )

    async def ship_to(self, target: str, writes: list[Write]) -> tuple[str, bool]:
        """Apply `writes` at region member `target`; a hint keeps them if it does not answer."""
        addr = self.addr_of(target)
        try:
            if addr is None:
                raise PeerError(f"{target}: no address")
            replies = await self.peers.get(addr).pipeline(
                [apply_command(key, record) for key, record in writes], timeout_ms=PEER_TIMEOUT_MS
            )
            if any(isinstance(r, Error) for r in replies):
                raise PeerError(f"{target}: {next(r for r in replies if isinstance(r, Error))}")
        except PeerError as exc:
            self.stats["replica_failures"] += 1
            self.hints.add(target, writes, self.clock.wall_ms())
            log.debug("replica missed a write", extra={"peer": target, "error": str(exc)})
            return target, False
        self.stats["replicated"] += len(writes)
        return target, True

    async def _hint_loop(self) -> None:
        while True:
            await asyncio.sleep(HINT_REPLAY_S)
            for target in self.hints.targets():
                if target in self._region_ids:
                    await self._replay(target)
            for target, version in list(self._unflushed.items()):
                if self.addr_of(target) is not None:
                    await self._send_flush(target, version)

    # -- flushes ---------------------------------------------------------------------------

    async def flush_everywhere(self, version: int, reply: object) -> object:
        """After a local FLUSHALL at `version`: every other member of every region drops
        what is not newer (GC.FLUSH). `reply` once this region's members have it;
        members that do not answer get it when they are back (the hint loop). Members
        thought dead are sent it too, when they are back: one cut off by a partition
        still holds what was written before the flush, and would serve it after the
        heal (its peers' floors keep it from spreading, so nothing else removes it)."""
        targets = [
            m.node_id
            for m in self.swim.members()
            if m.node_id != self.node_id and m.state != MemberState.LEFT
        ]
        for target in targets:
            self._unflushed[target] = max(version, self._unflushed.get(target, 0))
        sent = await asyncio.gather(*(self._send_flush(t, version) for t in targets))
        missed = [t for t, ok in zip(targets, sent, strict=True) if not ok]
        if any(t in self._region_ids for t in missed):
            log.warning("flush not acknowledged yet", extra={"members": ",".join(missed)})
        return reply

    async def _send_flush(self, target: str, version: int) -> bool:
        addr = self.addr_of(target)
        if addr is None:
            return False
        try:
            answer = await self.peers.get(addr).call(
                "GC.FLUSH", version, timeout_ms=PEER_TIMEOUT_MS
            )
        except PeerError:
            return False
        if isinstance(answer, Error):
            return False
        if self._unflushed.get(target, 0) <= version:
            self._unflushed.pop(target, None)
        return True

    def apply_flush(self, version: int) -> int:
        """GC.FLUSH from the member that ran FLUSHALL: drop what is not newer."""
        dropped = self.store.flush_at(version)
        log.info("flushed at another member's request", extra={"dropped": dropped})
        return dropped

    async def _replay(self, target: str) -> None:
        """Deliver `target`'s hints, batch after batch, until none are left or one fails;
        a batch that fails makes the next one half its size (hints.Pacer)."""
        pacer = self._pacers.setdefault(target, Pacer())
        loop = asyncio.get_running_loop()
        while True:
            now_ms = self.clock.wall_ms()
            batch = self.hints.batch(target, HINT_BATCH, now_ms, pacer.batch_bytes)
            addr = self.addr_of(target)
            if not batch or addr is None:
                return
            size = sum(hint_bytes(key, record) for key, record in batch)
            started = loop.time()
            try:
                await self.peers.get(addr).pipeline(
                    [apply_command(key, record) for key, record in batch],
                    timeout_ms=pacer.timeout_ms(size),
                )
            except PeerError:
                pacer.timed_out()
                self.stats["hint_batches_split"] += 1
                return
            pacer.delivered(size, loop.time() - started)
            self.hints.done(target, batch)
            self.stats["hints_replayed"] += len(batch)

    # -- forwarding and fetching -------------------------------------------------------------

    async def forward(
        self,
        argv: list[bytes],
        owners: list[str],
        proto: int,
        timeout_ms: int = FORWARD_TIMEOUT_MS,
        version: int = 0,
    ) -> object:
        """Run a command at the first owner that answers; its reply comes back pre-encoded.

        `timeout_ms` per owner: writes (the default) wait for their replication there;
        reads pass PEER_TIMEOUT_MS. `version`: a write's version, minted here (GC.FWD)."""
        return await self._at_owner(
            owners, encode_request(("GC.FWD", proto, version), argv), timeout_ms
        )

    async def forward_exec(
        self, commands: list[list[bytes]], owners: list[str], proto: int
    ) -> object:
        """Run a transaction's queued commands at their slot's primary (GC.EXEC)."""
        flat: list[bytes] = []
        for argv in commands:
            flat += [b"%d" % len(argv), *argv]
        request = encode_request(("GC.EXEC", proto), flat)
        return await self._at_owner(owners, request, FORWARD_TIMEOUT_MS)

    async def _at_owner(self, owners: list[str], request: list[bytes], timeout_ms: int) -> object:
        """`request` (encoded once: `encode_request`) at the first owner that answers."""
        last: Exception | None = None
        # Owners whose connection just failed go last: a crashed primary costs nothing.
        for owner in sorted(owners, key=self.known_down):
            addr = self.addr_of(owner)
            if addr is None:
                continue
            try:
                peer = self.peers.get(addr, FORWARD)
                reply = await peer.call_encoded(request, timeout_ms=timeout_ms)
            except PeerError as exc:
                last = exc
                continue
            self.stats["forwarded"] += 1
            return reply
        return Error(f"CLUSTERDOWN no owner of the key answered ({last})")

    async def fetch_newest(self, key: bytes) -> bool:
        """Ask the region's other members for `key` and apply what they hold; True if found."""
        peers = [a for n in self.region_peers() if (a := self.addr_of(n)) is not None]
        calls = [self.peers.get(a).call("GC.FETCH", key, timeout_ms=PEER_TIMEOUT_MS) for a in peers]
        found = False
        for result in await asyncio.gather(*calls, return_exceptions=True):
            found = self.apply_fetched(key, result) or found
        return found

    def apply_fetched(self, key: bytes, reply: object) -> bool:
        """Apply a GC.FETCH reply (an entry or a tombstone); True if the key is now held."""
        try:
            record = records.from_fetch_reply(reply)
        except ValueError:
            record = None  # an error reply, or junk: as if nothing were held there
        if record is not None:
            try:
                self.store.apply(key, record)
            except VersionRefused as exc:
                self.trust.version_refused(exc, "", key, "GC.FETCH reply")
        return self.store.peek(key) is not None
