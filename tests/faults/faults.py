"""Faults: each one applied to a running cluster, and healed.

| kind | apply | heal |
|---|---|---|
| partition | cut a <-> b (iptables, both ways) | restore the links |
| one-way | cut src -> dst only | restore the link |
| isolate | cut a node from every other node, both ways | restore its links |
| split | cut every link between two groups (a region split: group = region) | restore |
| kill | SIGKILL | restart at the same address (it rejoins and warms up) |
| pause | SIGSTOP | SIGCONT |
| skew | SIGKILL, restart with `--clock-offset-ms` | none: the clock stays skewed |
| join | start a node that starts late (its spec says so), seeded with every other | none |
| leave | SIGTERM: the node announces LEFT, hands off and exits; it stays gone | none |
| flush | FLUSHALL through a node, recorded in the history as a `flush` | none |

Join, leave and flush are membership churn and an operation rather than faults, but
they are steps of a schedule like any fault: a join right after a heal meets views
that still differ. A leave that does not end by itself within `LEAVE_TIMEOUT_S` (the
node is then SIGKILLed) is reported as a finding (`unclean-leave`).

Faults that crash a node (kill, skew) are `crash` faults: the runner first waits
until the cluster is quiet (every node sees every other alive and has warmed up), so
that the crash takes no acknowledged write with it that only the crashed node held:
with every owner alive a quorum write is on both owners. Without that wait, losing
an acknowledged write to two overlapping crashes would be the expected behaviour of
an in-memory cache, not a finding.

Nodes are named by id; `Env` gives the faults the cluster and the links.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .links import Links
from .nodes import Cluster, NodeSpec

# Kinds of fault that cut links (the others crash, stop or skew a node).
LINK_FAULTS = frozenset({"partition", "one-way", "isolate", "split", "region-split"})


@dataclass
class Env:
    cluster: Cluster
    links: Links
    # A node's eviction counter, read just before it is killed (its process's count
    # dies with it); see observe.Snapshot.evicted_before.
    count_evictions: Callable[[str], None]
    # FLUSHALL through a node, recorded in the history (Workload.flush).
    flush: Callable[[str], None]
    # A finding of the harness itself, (kind, detail): reported with the checker's.
    report: Callable[[str, str], None]


class Fault(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def crash(self) -> bool: ...

    def apply(self, env: Env) -> None: ...

    def heal(self, env: Env) -> None: ...


def describe(fault: Fault) -> str:
    """`kill(n2)`, `partition(n1, n3)`, `split(n1,n2 | n3)`."""
    if isinstance(fault, Split):
        return f"{fault.kind}({','.join(fault.side_a)} | {','.join(fault.side_b)})"
    assert dataclasses.is_dataclass(fault)
    names = [f.name for f in dataclasses.fields(fault) if f.name not in ("kind", "crash")]
    return f"{fault.kind}({', '.join(str(getattr(fault, n)) for n in names)})"


@dataclass(frozen=True, slots=True)
class Partition:
    a: str
    b: str
    kind: str = "partition"
    crash: bool = False

    def apply(self, env: Env) -> None:
        c = env.cluster
        env.links.cut_both(c.node(self.a).host, c.node(self.b).host)

    def heal(self, env: Env) -> None:
        c = env.cluster
        env.links.heal(c.node(self.a).host, c.node(self.b).host)
        env.links.heal(c.node(self.b).host, c.node(self.a).host)


@dataclass(frozen=True, slots=True)
class OneWay:
    src: str
    dst: str
    kind: str = "one-way"
    crash: bool = False

    def apply(self, env: Env) -> None:
        c = env.cluster
        env.links.cut(c.node(self.src).host, c.node(self.dst).host)

    def heal(self, env: Env) -> None:
        c = env.cluster
        env.links.heal(c.node(self.src).host, c.node(self.dst).host)


@dataclass(frozen=True, slots=True)
class Split:
    """Every link between two groups cut both ways; a region split when groups are regions."""

    side_a: tuple[str, ...]
    side_b: tuple[str, ...]
    kind: str = "split"
    crash: bool = False

    def apply(self, env: Env) -> None:
        c = env.cluster
        for a in self.side_a:
            for b in self.side_b:
                env.links.cut_both(c.node(a).host, c.node(b).host)

    def heal(self, env: Env) -> None:
        for a in self.side_a:
            for b in self.side_b:
                Partition(a, b).heal(env)


def isolate(specs: Sequence[NodeSpec], node_id: str) -> Split:
    others = tuple(s.node_id for s in specs if s.node_id != node_id)
    return Split((node_id,), others, kind="isolate")


def region_split(specs: Sequence[NodeSpec], region_a: str, region_b: str) -> Split:
    a = tuple(s.node_id for s in specs if s.region == region_a)
    b = tuple(s.node_id for s in specs if s.region == region_b)
    return Split(a, b, kind="region-split")


@dataclass(frozen=True, slots=True)
class Kill:
    node: str
    kind: str = "kill"
    crash: bool = True

    def apply(self, env: Env) -> None:
        env.count_evictions(self.node)
        env.cluster.kill(env.cluster.node(self.node))

    def heal(self, env: Env) -> None:
        env.cluster.restart(env.cluster.node(self.node))


@dataclass(frozen=True, slots=True)
class Pause:
    node: str
    kind: str = "pause"
    crash: bool = False

    def apply(self, env: Env) -> None:
        env.cluster.pause(env.cluster.node(self.node))

    def heal(self, env: Env) -> None:
        env.cluster.resume(env.cluster.node(self.node))


@dataclass(frozen=True, slots=True)
class Skew:
    node: str
    offset_ms: int
    kind: str = "skew"
    crash: bool = True

    def apply(self, env: Env) -> None:
        node = env.cluster.node(self.node)
        env.count_evictions(self.node)
        env.cluster.kill(node)
        env.cluster.restart(node, clock_offset_ms=self.offset_ms)

    def heal(self, env: Env) -> None:
        """A skewed clock stays skewed: there is nothing to heal."""


@dataclass(frozen=True, slots=True)
class Join:
    """A node whose spec starts late joins the running cluster."""

    node: str
    kind: str = "join"
    crash: bool = False

    def apply(self, env: Env) -> None:
        env.cluster.restart(env.cluster.node(self.node))

    def heal(self, env: Env) -> None:
        """A node that joined stays."""


@dataclass(frozen=True, slots=True)
class Leave:
    """A graceful leave (SIGTERM): the node hands its buckets off and exits for good."""

    node: str
    kind: str = "leave"
    crash: bool = False

    def apply(self, env: Env) -> None:
        if not env.cluster.leave(env.cluster.node(self.node)):
            env.report("unclean-leave", f"{self.node} did not exit by itself after SIGTERM")

    def heal(self, env: Env) -> None:
        """A node that left stays gone."""


@dataclass(frozen=True, slots=True)
class Flush:
    """FLUSHALL through a node: cluster-wide, a delete of every key at one version."""

    node: str
    kind: str = "flush"
    crash: bool = False

    def apply(self, env: Env) -> None:
        env.flush(self.node)

    def heal(self, env: Env) -> None:
        """A flush is done once made."""
