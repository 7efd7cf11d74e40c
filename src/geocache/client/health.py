"""Per-node health: latency estimates, attempt timeouts, down marking and probe backoff.

Latency follows RFC 6298's retransmission timer: a smoothed mean `srtt` and a smoothed
mean deviation `rttvar` of the samples (gains 1/8 and 1/4). `srtt + 4 * rttvar` sits near
the tail of the latency distribution (about its p99 for the usual shapes), and an
attempt's timeout is `k` times that, clamped to [min_attempt_s, max_attempt_s]: a few
milliseconds on loopback become the 50 ms floor, a 150 ms link gets a few hundred.

A node is marked down after `down_after` consecutive failures, or at once when a
connection is refused (nothing listens there: the process is gone). Routing skips a down
node without trying it. It is probed in the background, after `probe_first_s` and then
with doubling gaps (jittered, at most `probe_max_s`), and restored by its first answer.
Nodes that carry no traffic (other regions) are probed every `remeasure_s` so their
latency stays known: it orders the failover between regions.

Sans-IO: time is passed in as `now` (seconds, monotonic); nothing here sleeps or sends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    # Attempt timeouts (seconds). The floor absorbs a node's GC pause and scheduling noise
    # on loopback (a healthy Python node answers in well under 1 ms); the ceiling leaves
    # room for a second attempt within the default 1 s call deadline.
    min_attempt_s: float = 0.05
    max_attempt_s: float = 0.5
    # Before a node has answered once: its first connect and reply (seconds).
    first_attempt_s: float = 0.25
    # Multiplier on the tail estimate: a timeout cuts only answers much later than usual.
    k: float = 2.0
    # Added per command of a pipeline (seconds): a node runs tens of thousands a second.
    per_command_s: float = 50e-6
    # Consecutive failures that mark a node down: one failure may be a blip, two in a
    # row cost at most two attempt timeouts before requests stop waiting on the node.
    down_after: int = 2
    # Probe gaps for a down node (seconds): a restarted node is back in use within about
    # probe_max_s, while a dead one costs a failed connect every probe_max_s.
    probe_first_s: float = 0.05
    probe_max_s: float = 2.0
    probe_timeout_s: float = 0.25
    # Ping nodes that carry no traffic this often (seconds), to keep their latency known.
    remeasure_s: float = 5.0


# RFC 6298 gains.
_ALPHA, _BETA = 1 / 8, 1 / 4
# Probe gaps vary by +-20% so clients that lost a node together do not probe in step.
_JITTER = 0.2


class NodeHealth:
    """One node's numbers. Counters are cumulative and for observation only."""

    __slots__ = (
        "down",
        "errors",
        "failures",
        "probe_at",
        "probe_gap_s",
        "probing",
        "requests",
        "rttvar_s",
        "sampled_at",
        "srtt_s",
    )

    def __init__(self) -> None:
        self.srtt_s: float | None = None
        self.rttvar_s = 0.0
        self.sampled_at = float("-inf")
        self.failures = 0  # consecutive
        self.down = False
        self.probe_at = 0.0
        self.probe_gap_s = 0.0
        self.probing = False
        self.requests = 0  # commands sent (each command of a pipeline counts)
        self.errors = 0  # failed attempts and probes

    def sample(self, latency_s: float, now: float) -> None:
        self.sampled_at = now
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = latency_s, latency_s / 2
            return
        self.rttvar_s += _BETA * (abs(self.srtt_s - latency_s) - self.rttvar_s)
        self.srtt_s += _ALPHA * (latency_s - self.srtt_s)


class Health:
    """Every node's health, keyed by address."""

    def __init__(self, policy: HealthPolicy, rng: random.Random) -> None:
        self.policy = policy
        self._rng = rng
        self._nodes: dict[str, NodeHealth] = {}

    def node(self, addr: str) -> NodeHealth:
        health = self._nodes.get(addr)
        if health is None:
            health = self._nodes[addr] = NodeHealth()
        return health

    def items(self) -> list[tuple[str, NodeHealth]]:
        return sorted(self._nodes.items())

    def is_down(self, addr: str) -> bool:
        health = self._nodes.get(addr)
        return health is not None and health.down

    def rtt_s(self, addr: str) -> float | None:
        health = self._nodes.get(addr)
        return None if health is None else health.srtt_s

    def attempt_timeout_s(self, addr: str, commands: int = 1) -> float:
        policy, health = self.policy, self._nodes.get(addr)
        if health is None or health.srtt_s is None:
            base = policy.first_attempt_s
        else:
            tail = health.srtt_s + 4 * health.rttvar_s
            base = min(max(policy.k * tail, policy.min_attempt_s), policy.max_attempt_s)
        return base + policy.per_command_s * commands

    def succeeded(self, addr: str, latency_s: float | None, now: float) -> None:
        health = self.node(addr)
        health.failures = 0
        if latency_s is not None:
            health.sample(latency_s, now)

    def failed(self, addr: str, now: float, certain: bool = False) -> bool:
        """Count a failed attempt; True if this marked the node down."""
        health = self.node(addr)
        health.errors += 1
        health.failures += 1
        if health.down or not (certain or health.failures >= self.policy.down_after):
            return False
        health.down = True
        health.probe_gap_s = self.policy.probe_first_s
        health.probe_at = now + self._jittered(health.probe_gap_s)
        return True

    def not_ready(self, addr: str, now: float) -> None:
        """The node said it is not ready (LOADING): down, probed until its probe says ready.
        Not a failure: it answered, so its latency and failure count stand."""
        health = self.node(addr)
        if not health.down:
            health.down = True
            health.probe_gap_s = self.policy.probe_first_s
            health.probe_at = now + self._jittered(health.probe_gap_s)

    # -- probes ---------------------------------------------------------------------------

    def probes_due(self, now: float, addrs: list[str]) -> list[str]:
        """Down nodes whose probe time has come, and idle nodes of `addrs` to re-measure.

        Each is handed out once until `probed` reports on it.
        """
        due = []
        for addr in addrs:
            health = self.node(addr)
            if not health.probing and now >= self._probe_time(health):
                health.probing = True
                due.append(addr)
        for addr, health in self._nodes.items():
            if health.down and not health.probing and now >= health.probe_at:
                health.probing = True
                due.append(addr)
        return due

    def probed(self, addr: str, latency_s: float | None, now: float) -> bool:
        """A probe's result (None: no answer); True if it restored a down node."""
        health = self.node(addr)
        health.probing = False
        if latency_s is not None:
            restored = health.down
            health.down = False
            self.succeeded(addr, latency_s, now)
            return restored
        if health.down:
            health.errors += 1
            health.probe_gap_s = min(2 * health.probe_gap_s, self.policy.probe_max_s)
            health.probe_at = now + self._jittered(health.probe_gap_s)
            return False
        self.failed(addr, now)
        return False

    def next_due(self, addrs: list[str]) -> float:
        """The earliest time a probe may be due (inf if none can be)."""
        times = [self._probe_time(self.node(a)) for a in addrs]
        times += [h.probe_at for h in self._nodes.values() if h.down and not h.probing]
        return min(times, default=float("inf"))

    def forget(self, keep: set[str]) -> None:
        for addr in [a for a in self._nodes if a not in keep]:
            del self._nodes[addr]

    def _probe_time(self, health: NodeHealth) -> float:
        if health.down:
            return health.probe_at
        return health.sampled_at + self.policy.remeasure_s

    def _jittered(self, gap_s: float) -> float:
        return gap_s * (1 + self._rng.uniform(-_JITTER, _JITTER))
