"""A deterministic in-process cluster: real nodes on a simulated network, in virtual time.

Each node is a real `Node` with its real `Cluster` (membership, routing, replication,
hints, repair), built from parts passed to its constructor: its real `Peers` dialling
over a `SimNetwork` (peers.py, wire.py), its clock following the `VirtualTimeLoop`
(loop.py), a store that reports the writes it coordinates, and a seeded random source.
Nothing is patched into a node after it is built. Peers' requests are served by
the real RESP front end (`RespConnection`) on the simulated connections, and client
commands (`SimCluster.command`) reach a node the same way, over a local connection, so
a reply is what a Redis client would read.

`run(scenario, seed)` builds the loop and the cluster, runs `scenario(sim)` and tears
everything down. Every random choice (links, losses, the nodes' SWIM and repair) comes
from `seed`, so a seed replays a run exactly within one Python process (across
processes too when PYTHONHASHSEED is fixed, since the code under test iterates some
sets of strings).

Observability for checkers: `write_log` lists every write a coordinator made (the
records it replicated), `held(node)` what a node's store holds per key, `owners(key)`
the owners by the true set of nodes up, and `problems()` what the loop or the nodes'
loggers reported (an exception nobody retrieved, a deferred reply that failed...).

A crash drops a node's state (its tasks are cancelled, its connections reset); a restart
brings up a new empty node at the same address, which rejoins through its seeds.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from geocache.clock import Clock
from geocache.cluster import placement
from geocache.cluster.digest import BUCKETS
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.peers import Arg
from geocache.cluster.swim import MemberState
from geocache.config import NodeConfig
from geocache.protocol.reader import RequestReader
from geocache.protocol.replies import ReplyReader
from geocache.protocol.writer import encode_command
from geocache.server.node import EXPIRE_TICK_S, Node
from geocache.server.resp import RespConnection
from geocache.store.entry import Entry, Tombstone
from geocache.store.tombstones import Tombstones
from sim.loop import SimClock, VirtualTimeLoop, owned_context
from sim.net import Link
from sim.peers import sim_peers
from sim.wire import CutMode, SimNetwork, SimTransport

T = TypeVar("T")

# Within a region: a LAN (1 ms one way, up to 2 ms of jitter).
LAN = Link(delay_ms=1, jitter_ms=2)
# Between regions: a WAN (40 ms one way, up to 10 ms of jitter).
WAN = Link(delay_ms=40, jitter_ms=10)


@dataclass(frozen=True, slots=True)
class SimSpec:
    """The shape of a simulated cluster."""

    # (region, nodes) pairs; node i (from 1) of region r is `r-i` at `r-i.sim:7379`.
    regions: tuple[tuple[str, int], ...] = (("eu", 3),)
    replicas: int = 2
    write_acks: str = "quorum"
    link: Link = LAN
    region_link: Link = WAN
    secret: str = "sim-secret"
    # Each node's wall clock is off by up to this much either way (ms), drawn per node.
    max_skew_ms: int = 0
    # Each node's key limit (0: none): small stores evict all the time.
    max_keys: int = 0


@dataclass(frozen=True, slots=True)
class Written:
    """One write a coordinator made (and replicated): when, where, what."""

    at_ms: int  # virtual time
    node_id: str  # the coordinator
    wall_ms: int  # the coordinator's wall clock then
    key: bytes
    record: Entry | Tombstone


@dataclass(frozen=True, slots=True)
class Held:
    """What a node holds for a key; `value` None for a tombstone or an expired entry.

    (version, origin) is the value register's, (expiry_version, expiry_origin) the expiry
    register's (equal to the first for a write of both); `expires_at_ms` 0 for never, and
    for a tombstone whatever expiry register it holds apart (0 when it holds none)."""

    version: int
    origin: str
    value: bytes | None
    expiry_version: int = 0
    expiry_origin: str = ""
    expires_at_ms: int = 0


class ConnectionLost(Exception):
    """The node a client command was sent to crashed before answering."""


Observer = Callable[[str, list[Write]], None]


def observed_store(clock: Clock, observer: Observer, config: NodeConfig) -> JournaledStore:
    """A JournaledStore that reports each coordinated write (what the router replicates)
    through its tap: a seam rather than a subclass, since the store is compiled (mypyc
    classes take no interpreted subclasses)."""
    node_id = config.effective_node_id
    return JournaledStore(
        clock,
        max_bytes=config.max_bytes,
        max_keys=config.max_keys,
        node_id=node_id,
        tombstones=Tombstones(),
        tap=partial(observer, node_id),
    )


class SimNode:
    """One incarnation of a node: a real Node and Cluster wired to the simulated network."""

    def __init__(self, sim: SimCluster, config: NodeConfig, offset_ms: int, seed: int) -> None:
        self.sim = sim
        self.config = config
        self.node_id = config.effective_node_id
        self.addr = config.advertise_addr
        self.region = config.region
        self.alive = True
        self._context = owned_context(self)
        self.clock = clock = SimClock(sim.loop, offset_ms)
        store = observed_store(clock, sim.record_writes, config)
        self.peers = sim_peers(sim.net, self, self.node_id, config.cluster_secret)
        # Seeded, so runs replay exactly.
        node = Node(config, clock=clock, store=store, peers=self.peers, rng=random.Random(seed))
        assert node.cluster is not None
        self.node = node
        self.cluster = node.cluster

    def context(self) -> contextvars.Context:
        return self._context.copy()

    def start(self) -> None:
        self.sim.loop.create_task(self._run(), context=self.context())

    async def _run(self) -> None:
        await self.cluster.start()
        while True:  # the node's active expiry cycle (Node.start runs it in production)
            await asyncio.sleep(EXPIRE_TICK_S)
            self.node.expire_cycle()

    def crash(self) -> None:
        self.sim.net.crash(self.addr)
        self.alive = False
        self.sim.loop.cancel_owned(self)

    # -- Endpoint --------------------------------------------------------------------------

    def accept(self, transport: SimTransport) -> asyncio.Protocol:
        conn = RespConnection(self.node)
        conn.connection_made(transport)
        return conn

    def receive_datagram(self, protocol: asyncio.Protocol, data: bytes) -> None:
        """A membership message, run on the session of the connection it came beside."""
        if not isinstance(protocol, RespConnection) or protocol.session is None:
            return
        reader = RequestReader()
        reader.feed(data)
        argv = reader.gets()
        if argv:
            self.node.dispatch(self.node.table, protocol.session, argv)


_INCOMPLETE = object()


class _ClientProtocol(asyncio.Protocol):
    """A client command's side of its local connection: replies, each to the oldest
    request still waiting."""

    def __init__(self) -> None:
        self.pending: deque[asyncio.Future[object]] = deque()
        self._reader = ReplyReader(incomplete=_INCOMPLETE)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while self.pending:
            reply = self._reader.gets()
            if reply is _INCOMPLETE:
                return
            future = self.pending.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending:
            if not future.done():
                future.set_exception(ConnectionLost("the node closed the connection"))
        self.pending.clear()


class _ClientHost:
    """Where client commands come from: the test's own code, on the nodes' hosts."""

    addr = "client.sim:1"
    region = ""
    alive = True

    def __init__(self) -> None:
        self._context = contextvars.copy_context()

    def context(self) -> contextvars.Context:
        return self._context.copy()

    def accept(self, transport: SimTransport) -> asyncio.Protocol:
        raise ConnectionRefusedError("clients accept no connections")

    def receive_datagram(self, protocol: asyncio.Protocol, data: bytes) -> None:
        """Clients get no datagrams."""


class _LogSink(logging.Handler):
    """Warnings and errors the nodes log, kept for `problems()`."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"log {record.name}: {record.getMessage()}")


class SimCluster:
    def __init__(
        self,
        loop: VirtualTimeLoop,
        seed: int,
        spec: SimSpec = SimSpec(),
        problems: list[str] | None = None,
    ) -> None:
        """`problems`: where the nodes' loggers report (see problems())."""
        self.loop = loop
        self.spec = spec
        self.rng = random.Random(seed)
        self.net = SimNetwork(loop, random.Random(self.rng.random()), spec.link)
        self.write_log: list[Written] = []
        self.nodes: dict[str, SimNode] = {}  # the current incarnation of each node id
        self._configs: dict[str, tuple[NodeConfig, int]] = {}
        self._problems = problems if problems is not None else []
        self._client_host = _ClientHost()
        seeds = ",".join(_addr(f"{region}-1") for region, _ in spec.regions)
        for region, count in spec.regions:
            for i in range(1, count + 1):
                node_id = f"{region}-{i}"
                config = NodeConfig(
                    node_id=node_id,
                    region=region,
                    advertise_addr=_addr(node_id),
                    http_port=0,
                    cluster_secret=spec.secret,
                    seeds=seeds,
                    replicas=spec.replicas,
                    write_acks=spec.write_acks,
                    max_keys=spec.max_keys,
                )
                skew = self.rng.randint(-spec.max_skew_ms, spec.max_skew_ms)
                self._configs[node_id] = (config, skew)
        regions = [r for r, _ in spec.regions]
        for i, a in enumerate(regions):
            for b in regions[i + 1 :]:
                self.net.set_region_link(a, b, spec.region_link)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, node_id: str | None = None) -> None:
        """Start every node (or one: a restart, with an empty store, at the same address)."""
        for nid in [node_id] if node_id is not None else list(self._configs):
            config, skew = self._configs[nid]
            node = SimNode(self, config, skew, self.rng.getrandbits(64))
            self.nodes[nid] = node
            self.net.register(node)
            node.start()

    def crash(self, node_id: str) -> None:
        self.nodes[node_id].crash()

    def restart(self, node_id: str) -> None:
        if self.nodes[node_id].alive:
            self.crash(node_id)
        self.start(node_id)

    def up(self, region: str | None = None) -> list[str]:
        return [n for n, node in self.nodes.items() if node.alive and region in (None, node.region)]

    async def stop(self) -> None:
        """Cancel every node's work, so the loop closes with nothing pending."""
        for node in self.nodes.values():
            node.alive = False
            self.loop.cancel_owned(node)
        for _ in range(3):
            await asyncio.sleep(0)

    # -- time --------------------------------------------------------------------------------

    async def sleep(self, ms: int) -> None:
        """Let `ms` of virtual time pass."""
        await asyncio.sleep(ms / 1000)

    @property
    def now_ms(self) -> int:
        return self.loop.now_ms

    async def wait_for(self, check: Callable[[], bool], timeout_ms: int, step_ms: int = 50) -> int:
        """Virtual ms until `check()` holds (polled every `step_ms`); TimeoutError past timeout."""
        start = self.now_ms
        while not check():
            if self.now_ms - start >= timeout_ms:
                raise TimeoutError(f"not within {timeout_ms} virtual ms")
            await self.sleep(step_ms)
        return self.now_ms - start

    # -- faults ------------------------------------------------------------------------------

    def partition(self, *groups: list[str], mode: CutMode = "drop") -> None:
        """Split the nodes (by id) into groups that cannot reach each other."""
        self.net.partition([[_addr(n) for n in g] for g in groups], mode)

    def cut(
        self, side_a: list[str], side_b: list[str], mode: CutMode = "drop", one_way: bool = False
    ) -> None:
        self.net.cut([_addr(n) for n in side_a], [_addr(n) for n in side_b], mode, one_way)

    def heal(self) -> None:
        self.net.heal()

    def reset(self, a: str, b: str) -> None:
        """Reset the connections between two nodes (as a middlebox losing its state)."""
        self.net.reset(_addr(a), _addr(b))

    def set_loss(self, drop: float) -> None:
        """Every link (within and between regions) loses this fraction of packets."""
        self.net.set_loss(drop)

    # -- clients -----------------------------------------------------------------------------

    async def command(self, node_id: str, *args: Arg) -> object:
        """Run a client command at a node; its reply as a Redis client parses it.

        ConnectionLost if the node crashes first (the write may or may not have happened).
        """
        client = _ClientProtocol()
        transport = await self.net.open(self._client_host, _addr(node_id), client, local=True)
        future = self.loop.create_future()
        client.pending.append(future)
        transport.write(encode_command(*args))
        try:
            return await future
        finally:
            transport.close()

    # -- observing ---------------------------------------------------------------------------

    def record_writes(self, node_id: str, writes: list[Write]) -> None:
        node = self.nodes[node_id]
        wall = node.clock.wall_ms()
        for key, record in writes:
            self.write_log.append(Written(self.now_ms, node_id, wall, key, record))

    def held(self, node_id: str) -> dict[bytes, Held]:
        """What a node holds per key (without touching its store: no lazy expiry)."""
        store = self.nodes[node_id].node.store
        assert isinstance(store, JournaledStore)
        live = dict(store.items())
        out = {}
        for bucket in range(BUCKETS):
            for key, version, origin, tomb, x_version, x_origin in store.digest.keys_in_bucket(
                bucket
            ):
                entry = None if tomb else live.get(key)
                value, expires = (None, 0) if entry is None else (entry[0], entry[1])
                out[key] = Held(version, origin, value, x_version, x_origin, expires)
        return out

    def owners(self, key: bytes, region: str | None = None) -> list[str]:
        """The key's owners in `region` (default: the first) among the nodes up."""
        region = region or self.spec.regions[0][0]
        return placement.key_owners(key, sorted(self.up(region)), self.spec.replicas)

    def view(self, node_id: str) -> dict[str, MemberState]:
        """Node id -> state, as `node_id` sees the cluster."""
        return {m.node_id: m.state for m in self.nodes[node_id].cluster.members()}

    def membership_converged(self) -> bool:
        """Every node up sees exactly the nodes up as alive."""
        up = set(self.up())
        alive = (MemberState.ALIVE, MemberState.SUSPECT)
        return all({n for n, s in self.view(node).items() if s in alive} == up for node in up)

    def problems(self) -> list[str]:
        """What the loop and the nodes' loggers reported (warnings and worse)."""
        errors = [f"loop: {c.get('message')}: {c.get('exception')!r}" for c in self.loop.errors]
        return errors + self._problems


def _addr(node_id: str) -> str:
    return f"{node_id}.sim:7379"


def run(
    scenario: Callable[[SimCluster], Awaitable[T]],
    seed: int,
    spec: SimSpec = SimSpec(),
    limit_s: float = 600.0,
) -> T:
    """Start a simulated cluster, run `scenario(sim)` on it in virtual time, tear it down.

    `limit_s`: virtual seconds the run may take (loop.SimTimeLimit past that).
    """
    loop = VirtualTimeLoop(limit_s)
    logger = logging.getLogger("geocache")
    sink: list[str] = []
    handler = _LogSink(sink)
    logger.addHandler(handler)

    async def main() -> T:
        sim = SimCluster(loop, seed, spec, problems=sink)
        sim.start()
        try:
            return await scenario(sim)
        finally:
            await sim.stop()

    try:
        return loop.run_until_complete(main())
    finally:
        logger.removeHandler(handler)
        loop.close()
