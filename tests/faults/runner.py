"""One schedule, start to finish: network, nodes, workload, faults, heal, settle, check.

1. A fresh network (netns.py) and the schedule's nodes in it (but those that start
   late: a `join` step starts them); wait until every node sees every other alive and
   has warmed up.
2. The workload starts; the steps run one after another, each not before its `at_s`:
   apply, make the steps `during` it (each at its `at_s` after the apply), hold until
   `duration_s` after the apply, heal. A crash fault first waits for a quiet cluster
   (faults.py says why); if the cluster does not get quiet in time, the fault is
   skipped and noted, never applied on a cluster where a crash may lose writes.
3. After the tail, the workload stops; every link is healed, every node thawed (and
   restarted if down), but a node that left: it stays gone, and the checker is told
   (`Rules.departed`).
4. Settle: wait until membership has healed (every node sees all alive) and at least
   `settle_min_s(schedule)` has passed since the heal, then take a snapshot and check
   it, again and again until the check passes or the settle time is up; the last
   check's violations are the run's. A membership that never heals is a violation too.
   The minimum matters: what a cut link held back is still in TCP's retransmission
   queue when the link heals, and TCP retries with exponential backoff, so it lands up
   to about the outage's length later. A check that passed before it lands would miss
   whatever it does.
5. Always, even on failure: stop the nodes by PID, remove the network, write the
   history (history.jsonl) next to the nodes' logs and the last snapshot
   (snapshot.json).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import observe
from .checker import Rules, Violation, check
from .faults import LINK_FAULTS, Env, Skew, describe
from .history import ALL_KEYS, History
from .links import Links, iptables_works
from .netns import Network
from .nodes import PORT, Cluster, Node
from .schedules import Schedule, Step
from .workload import Workload, is_ttl_key

# A fresh cluster of Python nodes agrees on membership in a few seconds.
FORM_S = 30.0
# Before a crash: every node alive everywhere and warmed up (warm-up is bounded at 10 s).
QUIET_S = 20.0
# A healed partition re-merges through SWIM's periodic sync with dead members (10 s),
# then a suspicion (4 s) at most; 40 s leaves room for a loaded machine.
MEMBERSHIP_SETTLE_S = 40.0
# After membership healed: hints are replayed every second and repair runs at once on
# membership changes; 20 s is ample for the few dozen keys of a run.
CONVERGE_S = 20.0
POLL_S = 0.5
# A snapshot normally takes a tenth of a second; a slower one is worth a note (s).
SLOW_SNAPSHOT_S = 1.0
# Added to the longest link outage for the minimum settle time (s): TCP's first
# retransmission timeout (0.2 to 1 s) and a check's own duration.
SETTLE_MARGIN_S = 3.0


class HarnessError(RuntimeError):
    """The harness could not run the schedule (not a finding about the product)."""


@dataclass
class RunResult:
    schedule: str
    seed: int
    nodes: int
    outcomes: Counter[str] = field(default_factory=Counter)
    # Acknowledged operations by kind (set, del, get, flush).
    acked: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    excerpts: dict[str, list[str]] = field(default_factory=dict)
    # Keys each node lacked for want of room, over its processes (last snapshot).
    room_losses: dict[str, int] = field(default_factory=dict)
    # Checks made while settling, and the violation kinds of those that did not pass.
    checks: int = 0
    transient: Counter[str] = field(default_factory=Counter)
    workload_s: float = 0.0
    settle_s: float = 0.0
    total_s: float = 0.0
    workdir: str = ""

    @property
    def operations(self) -> int:
        return sum(self.outcomes.values())


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def skew_span_ms(schedule: Schedule) -> int:
    """The spread of clock offsets the nodes ran with, first or after a skew fault."""
    offsets = [n.clock_offset_ms for n in schedule.nodes]
    offsets += [s.fault.offset_ms for s in schedule.all_steps if isinstance(s.fault, Skew)]
    return max(offsets) - min(offsets)


def settle_min_s(schedule: Schedule) -> float:
    """The longest link outage of the schedule, plus a margin (see the module docstring)."""
    outages = [s.duration_s for s in schedule.all_steps if s.fault.kind in LINK_FAULTS]
    return max(outages, default=0.0) + SETTLE_MARGIN_S


class Run:
    def __init__(self, schedule: Schedule, workdir: Path) -> None:
        self.schedule = schedule
        self.workdir = workdir
        self.network = Network()
        self.links = Links()
        self.history = History()
        self.result = RunResult(schedule.name, schedule.seed, len(schedule.nodes))
        self.result.workdir = str(workdir)
        self.evicted_before: Counter[str] = Counter()
        self._t0 = time.monotonic()
        self.cluster: Cluster | None = None
        self._blip_rng = random.Random(schedule.seed ^ 0xB11F)
        # Findings of the harness itself (a leave that did not end by itself).
        self.findings: list[Violation] = []

    def clock(self) -> float:
        return time.monotonic() - self._t0

    def note(self, what: str) -> None:
        self.history.note(self.clock(), what)

    def execute(self) -> RunResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        hogs = start_hogs(self.schedule.cpu_hogs, self.schedule.length_s + HOG_SLACK_S)
        try:
            self.network.create()
            self.cluster = cluster = Cluster(self.network, list(self.schedule.nodes), self.workdir)
            self._form(cluster)
            self._workload(cluster)
            self._settle(cluster)
        finally:
            stop_hogs(hogs)
            left = self._teardown()
        if left:
            raise HarnessError(f"could not remove namespaces {left}")
        self.result.total_s = self.clock()
        return self.result

    def _form(self, cluster: Cluster) -> None:
        why = iptables_works(next(iter(cluster.nodes.values())).host)
        if why:
            raise HarnessError(f"iptables does not work in a namespace: {why}")
        cluster.start_all()
        nodes = cluster.running()  # a node that starts late joins in a step
        if not wait_until(lambda: observe.membership_settled(nodes), FORM_S):
            raise HarnessError(f"the cluster did not form in {FORM_S}s (logs: {self.workdir})")
        if not wait_until(lambda: observe.all_ready(nodes), FORM_S):
            raise HarnessError(f"the nodes did not warm up in {FORM_S}s (logs: {self.workdir})")
        self.note("cluster formed")

    def _workload(self, cluster: Cluster) -> None:
        s = self.schedule
        on = s.clients_on or tuple(cluster.nodes)
        targets = {i: cluster.node(i).addr for i in on}
        workload = Workload(s.workload, targets, PORT, self.history, self.clock, s.seed)
        env = Env(
            cluster,
            self.links,
            self._count_evictions,
            flush=lambda node_id: workload.flush(node_id, cluster.node(node_id).addr),
            report=lambda kind, detail: self.findings.append(Violation(kind, "", detail)),
        )
        start = self.clock()
        workload.start()
        try:
            for step in s.steps:
                self._step(env, step, start)
            self._wait(env, self.clock() + s.tail_s)
        finally:
            workload.stop()
        self.result.workload_s = self.clock() - start
        if workload.errors:
            raise HarnessError(f"a workload thread failed: {workload.errors[0]!r}")

    def _step(self, env: Env, step: Step, start: float) -> None:
        self._wait(env, start + step.at_s)
        name = describe(step.fault)
        if step.fault.crash:
            running = env.cluster.running()
            quiet = wait_until(
                lambda: observe.membership_settled(running) and observe.all_ready(running),
                QUIET_S,
            )
            if not quiet:
                self.note(f"skipped {name}: the cluster was not quiet in {QUIET_S}s")
                self.result.skipped.append(name)
                return
        self.note(f"apply {name}")
        step.fault.apply(env)
        self.result.faults[step.fault.kind] += 1
        applied = self.clock()
        for inner in step.during:
            self._step(env, inner, applied)
        self._wait(env, applied + step.duration_s)
        step.fault.heal(env)
        self.note(f"heal {name}")

    def _wait(self, env: Env, until: float) -> None:
        """Sleep until `until` (run clock); with `blips`, pause a random running node for
        200 to 600 ms now and then meanwhile (one at a time, healed before returning;
        never a node a fault paused or stopped)."""
        rng = self._blip_rng
        while self.clock() < until:
            if not self.schedule.blips:
                time.sleep(until - self.clock())
                return
            time.sleep(min(rng.uniform(0.5, 2.0), max(0.0, until - self.clock())))
            pause_s = rng.uniform(0.2, 0.6)
            candidates = [n for n in env.cluster.nodes.values() if n.running and not n.paused]
            if not candidates or self.clock() + pause_s > until:
                continue
            node = rng.choice(candidates)
            env.cluster.pause(node)
            self.result.faults["blip"] += 1
            time.sleep(pause_s)
            env.cluster.resume(node)

    def _count_evictions(self, node_id: str) -> None:
        assert self.cluster is not None
        try:
            stats = observe.info(self.cluster.node(node_id))
        except (OSError, ValueError):
            return  # paused or gone: nothing more to learn
        self.evicted_before[node_id] += int(stats.get("evicted_keys", "0"))
        self.evicted_before[node_id] += observe.skipped_full(stats)

    def _heal_everything(self, cluster: Cluster) -> None:
        self.links.heal_all()
        for node in cluster.members():
            if node.paused:
                cluster.resume(node)
            if not node.running:
                cluster.restart(node)
        self.note("all healed")

    def _settle(self, cluster: Cluster) -> None:
        self._heal_everything(cluster)
        start = self.clock()
        nodes = cluster.members()
        violations: list[Violation] = list(self.findings)
        if not wait_until(lambda: observe.membership_settled(nodes), MEMBERSHIP_SETTLE_S):
            seen = {n.node_id: _states_or_error(n) for n in nodes}
            violations.append(
                Violation("membership", "", f"not all alive after {MEMBERSHIP_SETTLE_S}s: {seen}")
            )
        settled = not any(v.kind == "membership" for v in violations)
        self.note("membership settled" if settled else "membership did not settle")
        time.sleep(max(0.0, start + settle_min_s(self.schedule) - self.clock()))
        found: list[Violation] = []

        def passes() -> bool:
            nonlocal found
            found = self._check(nodes)
            self.result.checks += 1
            if found:
                self.result.transient.update(v.kind for v in found)
                examples = "; ".join(str(v) for v in found[:3])
                self.note(f"check {self.result.checks}: {_kinds(found)}: {examples}")
            return not found

        wait_until(passes, CONVERGE_S)
        self.note(f"checked: {len(found)} violation(s)")
        self.result.settle_s = self.clock() - start
        self.result.violations = violations + found
        implicated: dict[str, list[int]] = {}
        for v in self.result.violations:
            if v.key:
                implicated.setdefault(v.key, []).extend(v.ops)
        self.result.excerpts = {
            key: self.history.excerpt(key, min(ids, default=None))
            for key, ids in implicated.items()
        }

    def _check(self, nodes: list[Node]) -> list[Violation]:
        ops = self.history.ops
        keys = {op.key for op in ops if op.key != ALL_KEYS}
        started = self.clock()
        try:
            snap = observe.snapshot(nodes, keys, dict(self.evicted_before))
        except (OSError, ValueError) as exc:
            return [Violation("unreadable", "", f"a node did not answer the checker: {exc!r}")]
        if self.clock() - started > SLOW_SNAPSHOT_S:
            self.note(f"snapshot took {self.clock() - started:.1f}s")
        self.result.room_losses = {n: snap.room_losses(n) for n in snap.views}
        (self.workdir / "snapshot.json").write_text(json.dumps(asdict(snap), indent=1))
        assert self.cluster is not None
        departed = frozenset(n.node_id for n in self.cluster.nodes.values() if n.left)
        rules = Rules(is_ttl_key, skew_span_ms(self.schedule), departed=departed)
        return check(ops, snap, rules)

    def _teardown(self) -> list[str]:
        """Stop the nodes, remove the network, keep the history; what could not be removed."""
        try:
            if self.cluster is not None:
                self.cluster.stop_all()
        finally:
            left = self.network.close()
            self.result.outcomes = Counter(op.outcome for op in self.history.ops)
            self.result.acked = Counter(op.kind for op in self.history.ops if op.acked)
            self.history.dump(self.workdir / "history.jsonl")
        return left


# Hogs outlive the schedule by this much at most (s): settling and checking take a while,
# and a hog must end by itself even if the run is killed.
HOG_SLACK_S = 120.0
_HOG = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


def start_hogs(count: int, limit_s: float) -> list[subprocess.Popen[bytes]]:
    """`count` busy processes, each ending by itself after `limit_s`."""
    return [subprocess.Popen([sys.executable, "-c", _HOG, str(limit_s)]) for _ in range(count)]


def stop_hogs(hogs: list[subprocess.Popen[bytes]]) -> None:
    for hog in hogs:
        hog.kill()
        hog.wait()


def _kinds(violations: list[Violation]) -> str:
    counts = Counter(v.kind for v in violations)
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))


def _states_or_error(node: Node) -> dict[str, str] | str:
    try:
        return observe.states(node)
    except (OSError, ValueError) as exc:
        return repr(exc)


def run_schedule(schedule: Schedule, workdir: Path) -> RunResult:
    """Run one schedule in a fresh network; see the module docstring."""
    return Run(schedule, workdir).execute()
