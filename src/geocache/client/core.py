"""The client's sans-IO core: where each command goes, what a failure means, when to stop.

`Core` holds the topology (topology.py) and each node's health (health.py). Both clients
(sync.py, aio.py) own one and drive it; they move bytes, the core decides.

Routing: a key's candidates are the live members of the home region ranked for its
bucket (owners first, primary first; then the non-owners, which forward), followed by
every other region's ranking, nearest region first by measured latency. Reads and
writes both start at the primary: a read then sees the writes the primary acknowledged,
whatever `write_acks` the cluster uses. The home region is the one given; else, once
the map is known, the region of the nearest seed: when the seeds span regions, the
client PINGs each `RTT_SAMPLES` times and takes the region of the seed with the lowest
round trip (the least sample: queueing only ever adds to a round trip). Seeds that
do not answer, or that the map does not list by that address, do not count; seeds all
in one region need no measuring. Until a choice is made (no map yet, or no seed of it
answered: tried again after each refresh), home is the region of the seed that gave
the map.

A `Call` runs one client call, a single command or a pipeline, as a state machine in
rounds: `next_round(now)` groups the pending commands by the next candidate that is not
down and returns one `Attempt` per node (a pipelined payload with its own timeout); the
client sends them and reports `replied` or `failed`; commands whose node failed move to
their next candidate in the next round. The call ends when every command has an
outcome: its reply (error replies included, for the caller to raise), or `Timeout`
when the call's deadline passes, or `Unavailable` when no candidate is left.

Retries never repeat a write that is not idempotent (INCRBY) once it may have reached a
node: only a refused connection proves it was not sent. Error replies that mean "this
node cannot serve the key right now" (LOADING, TRYAGAIN; CLUSTERDOWN, NOREPLICAS for
idempotent commands) move the command on without counting against the node's health,
but LOADING (the node is joining or warming up: it holds only part of its keys) also
marks the node down until a probe finds it ready, so calls do not return to a node,
or a whole region restarted empty, before it has pulled its keys.

Time is passed in (`now`, monotonic seconds). Nothing here blocks, sends or locks; the
sync client calls it under its own lock, except `plan` (and so `key_item`), which only
reads snapshots and replaces whole caches, and is safe to call from any thread.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from geocache.client.errors import CacheError, Timeout, Unavailable
from geocache.client.health import Health, HealthPolicy, NodeHealth
from geocache.client.topology import Topology, merge
from geocache.cluster import digest
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command

TOPOLOGY_COMMAND = encode_command("GC.TOPOLOGY")
PING_COMMAND = encode_command("PING")
# PINGs per seed when choosing the home region: enough that one slow sample (a
# connection's first, a scheduler hiccup) does not decide, few enough to cost a few
# round trips on the first call.
RTT_SAMPLES = 3
# A probe asks for the node's INFO section rather than PING: a node still warming up
# after a restart says `cluster_ready:0` there, and stays down until it is ready, so
# reads do not reach it while it is still missing what it was away for.
PROBE_COMMAND = encode_command("INFO", "geocache")
_NOT_READY = b"cluster_ready:0"
# Region order by latency is recomputed at most this often (seconds): it changes slowly.
_REGION_ORDER_S = 1.0
# A refresh asked for by a routing error waits at least this long after the last one
# (seconds), so a burst of failures costs one GC.TOPOLOGY, not one each.
_REFRESH_GAP_S = 0.2
_ALWAYS_RETRY = ("LOADING", "TRYAGAIN")
_NOT_READY_ERROR = "LOADING"
_RETRY_IF_IDEMPOTENT = ("CLUSTERDOWN", "NOREPLICAS")


class Failure(Enum):
    REFUSED = "refused"  # no connection: nothing was sent, and nothing listens there
    TIMEOUT = "timeout"  # no answer in time
    BROKEN = "broken"  # the connection was lost


@dataclass(frozen=True, slots=True)
class Item:
    """One command of a call, with the nodes that may serve it in order."""

    payload: bytes
    candidates: tuple[str, ...]
    idempotent: bool = True


@dataclass(frozen=True, slots=True)
class Attempt:
    """Commands sent to one node in one round, pipelined."""

    addr: str
    payload: bytes
    items: tuple[int, ...]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class NodeStats:
    """What the client has seen of one node (for tests, dashboards and benchmarks)."""

    addr: str
    region: str | None
    requests: int  # commands sent to it
    errors: int  # failed attempts and probes
    down: bool
    latency_ms: float | None  # smoothed round trip of single commands and probes


class Core:
    """Routing, health and topology for one client (see the module docstring)."""

    def __init__(
        self,
        seeds: Sequence[str],
        *,
        region: str | None = None,
        policy: HealthPolicy | None = None,
        refresh_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if not seeds:
            raise ValueError("give at least one seed address (host:port)")
        self.seeds = tuple(seeds)
        self.region = region
        self.refresh_s = refresh_s
        self.health = Health(policy or HealthPolicy(), rng or random.Random())
        self.topology = Topology.from_seeds(self.seeds)
        self._home = "" if region is None else region
        self._refresh_at = 0.0
        self._last_refresh = float("-inf")
        self._plans: dict[int, tuple[str, ...]] = {}
        self._region_order: tuple[str, ...] = ()
        self._region_order_at = float("-inf")
        self._downed: list[str] = []
        self._absent_since: dict[str, float] = {}
        self._home_chosen = region is not None

    # -- routing ----------------------------------------------------------------------------

    def key_item(self, payload: bytes, key: bytes, now: float, idempotent: bool = True) -> Item:
        return Item(payload, self.plan(key, now), idempotent)

    def nodes_item(self, payload: bytes, addrs: Sequence[str]) -> Item:
        return Item(payload, tuple(addrs))

    def plan(self, key: bytes, now: float) -> tuple[str, ...]:
        """Every live node in the order to try for `key` (down nodes are skipped later)."""
        if now - self._region_order_at >= _REGION_ORDER_S:
            self._update_region_order(now)
        # Read the cache first: it is replaced (never cleared) after the topology and the
        # region order change, so a plan stored here was computed from values at least as
        # new as the cache it lands in, whichever thread changed them meanwhile.
        plans = self._plans
        bucket = digest.bucket_of(key)
        plan = plans.get(bucket)
        if plan is None:
            topology, order = self.topology, self._region_order
            plan = plans[bucket] = tuple(a for r in order for a in topology.ranking(bucket, r))
        return plan

    @property
    def home_region(self) -> str:
        return self._home

    def scan_addrs(self) -> list[str]:
        """The nodes whose keys together are every key of the home region (for `clear`):
        its live members, or every live node if none is known there."""
        topology = self.topology
        return topology.live_addrs(self._home) or topology.live_addrs()

    def region_order(self, now: float) -> tuple[str, ...]:
        self._update_region_order(now)
        return self._region_order

    def _update_region_order(self, now: float) -> None:
        self._region_order_at = now
        topology, home = self.topology, self._home
        others = [r for r in topology.regions() if r != home]
        others.sort(key=lambda r: (self._region_rtt(r), r))
        order = (home, *others) if home in topology.regions() else tuple(others)
        if order != self._region_order:
            self._region_order = order
            self._plans = {}

    def _region_rtt(self, region: str) -> float:
        rtts = [self.health.rtt_s(a) for a in self.topology.live_addrs(region)]
        return min((r for r in rtts if r is not None), default=math.inf)

    def call(self, items: Sequence[Item], now: float, timeout_s: float) -> Call:
        return Call(self, items, now + timeout_s)

    # -- health ----------------------------------------------------------------------------

    def succeeded(self, addr: str, latency_s: float | None, now: float) -> None:
        self.health.succeeded(addr, latency_s, now)

    def failed(self, addr: str, failure: Failure, now: float) -> None:
        if self.health.failed(addr, now, certain=failure is Failure.REFUSED):
            self._downed.append(addr)
        if failure is not Failure.TIMEOUT:
            self.want_refresh(now)  # a node gone may be a membership change

    def not_ready(self, addr: str, now: float) -> None:
        """The node answered LOADING: down (not dropped) until a probe finds it ready."""
        self.health.not_ready(addr, now)

    def stats(self) -> dict[str, NodeStats]:
        """Every node of the map (and any other the client talked to), by address."""
        health, region_of = self.health, self.topology.region_of
        addrs = sorted({*self.topology.by_addr, *(a for a, _ in health.items())})
        return {addr: _node_stats(addr, region_of(addr), health.node(addr)) for addr in addrs}

    def take_downed(self) -> list[str]:
        """Nodes marked down since the last call: the client drops their connections."""
        downed, self._downed = self._downed, []
        return downed

    @staticmethod
    def probe_answered(reply: object) -> bool:
        """Whether a probe's reply (to PROBE_COMMAND) restores a node: any answer but
        a warming node's. An error reply counts (the node is there; calls will say why)."""
        return not (isinstance(reply, bytes) and _NOT_READY in reply)

    def probes_due(self, now: float) -> list[str]:
        return self.health.probes_due(now, self._measured())

    def probed(self, addr: str, latency_s: float | None, now: float) -> None:
        if self.health.probed(addr, latency_s, now):
            self.want_refresh(now)  # a node back may have rejoined under a new state

    def _measured(self) -> list[str]:
        # Nodes whose latency orders the regions; a lone node or seed list needs none.
        topology = self.topology
        return [] if len(topology.regions()) < 2 else topology.live_addrs()

    # -- topology --------------------------------------------------------------------------

    def topology_sources(self) -> list[str]:
        """Where to ask for the map: up nodes of the map (home region first), then seeds."""
        topology, health = self.topology, self.health
        home = topology.live_addrs(self._home)
        rest = sorted(
            (a for a in topology.live_addrs() if a not in home),
            key=lambda a: health.rtt_s(a) or math.inf,
        )
        ordered = [a for a in [*home, *rest, *self.seeds] if not health.is_down(a)]
        return list(dict.fromkeys(ordered))

    def apply_topology(self, reply: object, via: str, now: float) -> None:
        """A GC.TOPOLOGY reply from `via`. An error reply (no such command): stay on seeds."""
        self._last_refresh = now
        self._refresh_at = now + self.refresh_s
        if isinstance(reply, Error):
            return
        fresh = Topology.from_reply(reply, via)
        if self.region is None and self.topology.is_seed_list:
            self._home = fresh.region_of(via) or fresh.nodes[0].region
        topology = merge(self.topology, fresh, self._absent_since, now)
        if not topology.same_as(self.topology):
            self.topology = topology
            self._update_region_order(now)
            self._plans = {}
            self.health.forget(set(topology.by_addr) | set(self.seeds))

    def seeds_to_measure(self) -> list[str]:
        """Seeds to PING for the home region: none once chosen, or if they share one."""
        if self._home_chosen or self.topology.is_seed_list:
            return []
        regions = {self.topology.region_of(s) for s in self.seeds}
        if len(regions - {None}) < 2:
            self._home_chosen = True
            return []
        return list(self.seeds)

    def seeds_measured(self, samples: dict[str, list[float]], now: float) -> None:
        """Round trips (seconds) of PINGs per seed: home becomes the nearest one's region.
        If no seed of the map answered, the choice waits for the next refresh."""
        for addr, rtts in samples.items():
            for rtt in rtts:
                self.health.succeeded(addr, rtt, now)
        ranked = sorted(
            (min(rtts), addr)
            for addr, rtts in samples.items()
            if rtts and self.topology.region_of(addr) is not None
        )
        self._home_chosen = bool(ranked)
        if ranked:
            self._home = self.topology.region_of(ranked[0][1]) or self._home
            self._update_region_order(now)
            self._plans = {}

    def topology_fetched(self, call: Call, now: float) -> None:
        """The outcome of a GC.TOPOLOGY call made with `nodes_item(topology_sources())`."""
        outcome, via = call.outcomes[0], call.served_by[0]
        if isinstance(outcome, CacheError) or via is None:
            self.refresh_failed(now)
            return
        try:
            self.apply_topology(outcome, via, now)
        except ValueError:
            self.refresh_failed(now)

    def refresh_failed(self, now: float) -> None:
        self._last_refresh = now
        self._refresh_at = now + min(self.refresh_s, self.health.policy.probe_max_s)

    def want_refresh(self, now: float) -> None:
        self._refresh_at = min(self._refresh_at, max(now, self._last_refresh + _REFRESH_GAP_S))

    def refresh_due(self, now: float) -> bool:
        return now >= self._refresh_at

    def next_wakeup(self) -> float:
        """When the background loop has work next (monotonic seconds)."""
        return min(self._refresh_at, self.health.next_due(self._measured()))


def _node_stats(addr: str, region: str | None, health: NodeHealth) -> NodeStats:
    latency_ms = None if health.srtt_s is None else health.srtt_s * 1000
    return NodeStats(addr, region, health.requests, health.errors, health.down, latency_ms)


class _Pending:
    __slots__ = ("failure", "item", "pos", "refusal")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.pos = 0  # index of the next candidate to try
        self.failure: Failure | None = None  # of the last attempt
        self.refusal: Error | None = None  # the last "not now" error reply


class Call:
    """One call's progress (see the module docstring). Not thread-safe; no I/O."""

    __slots__ = ("_core", "_pending", "deadline", "outcomes", "served_by")

    def __init__(self, core: Core, items: Sequence[Item], deadline: float) -> None:
        self._core = core
        self.deadline = deadline
        self.outcomes: list[object] = [_UNSET] * len(items)
        self.served_by: list[str | None] = [None] * len(items)  # the node that answered
        self._pending = {i: _Pending(item) for i, item in enumerate(items)}

    @property
    def done(self) -> bool:
        return not self._pending

    def next_round(self, now: float) -> list[Attempt]:
        """The attempts to make now; empty when every command has its outcome."""
        remaining = self.deadline - now
        if remaining <= 0:
            for index in list(self._pending):
                self._finish(index, Timeout("no answer within the call's deadline"))
            return []
        groups: dict[str, list[int]] = {}
        for index, pending in list(self._pending.items()):
            addr = self._next_candidate(pending)
            if addr is None:
                self._finish(index, _exhausted(pending))
            else:
                groups.setdefault(addr, []).append(index)
        health = self._core.health
        attempts = []
        for addr, indexes in groups.items():
            timeout_s = min(health.attempt_timeout_s(addr, len(indexes)), remaining)
            payloads = [self._pending[i].item.payload for i in indexes]
            health.node(addr).requests += len(indexes)
            payload = payloads[0] if len(payloads) == 1 else b"".join(payloads)
            attempts.append(Attempt(addr, payload, tuple(indexes), timeout_s))
        return attempts

    def replied(
        self, attempt: Attempt, replies: Sequence[object], latency_s: float, now: float
    ) -> None:
        """The node answered every command of `attempt`, in order."""
        single = len(attempt.items) == 1
        self._core.succeeded(attempt.addr, latency_s if single else None, now)
        for index, reply in zip(attempt.items, replies, strict=True):
            pending = self._pending[index]
            if isinstance(reply, Error) and _retriable(reply, pending.item.idempotent):
                if reply.startswith(_NOT_READY_ERROR):
                    self._core.not_ready(attempt.addr, now)
                pending.pos += 1
                pending.failure, pending.refusal = None, reply
            else:
                self.served_by[index] = attempt.addr
                self._finish(index, reply)

    def failed(self, attempt: Attempt, failure: Failure, now: float) -> None:
        """No (complete) answer from the node: its commands move to their next candidate."""
        self._core.failed(attempt.addr, failure, now)
        for index in attempt.items:
            pending = self._pending[index]
            pending.failure = failure
            if failure is Failure.REFUSED or pending.item.idempotent:
                pending.pos += 1
            else:  # it may have run: running it again elsewhere could count it twice
                kind = Timeout if failure is Failure.TIMEOUT else Unavailable
                self._finish(index, kind(f"{attempt.addr}: {failure.value}; not retried"))

    def _next_candidate(self, pending: _Pending) -> str | None:
        candidates, health = pending.item.candidates, self._core.health
        while pending.pos < len(candidates):
            addr = candidates[pending.pos]
            if not health.is_down(addr):
                return addr
            pending.pos += 1
        return None

    def _finish(self, index: int, outcome: object) -> None:
        self.outcomes[index] = outcome
        del self._pending[index]


_UNSET = object()


def _exhausted(pending: _Pending) -> CacheError:
    if pending.failure is Failure.TIMEOUT:
        return Timeout("the last node tried did not answer in time; none is left to try")
    tried = len(pending.item.candidates)
    last = f"; the last said: {pending.refusal}" if pending.refusal else ""
    return Unavailable(f"no node could serve the request ({tried} known, all down or failed{last})")


def _retriable(reply: Error, idempotent: bool) -> bool:
    return reply.startswith(_ALWAYS_RETRY) or (
        idempotent and reply.startswith(_RETRY_IF_IDEMPOTENT)
    )
