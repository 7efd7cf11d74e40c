"""What happened to the cluster, as this node saw it: a bounded ring of recent events.

The dashboard's timeline and `/v1/events` read it. It is fed by one-line hooks where
things happen: membership changes (cluster.py hands over SWIM's (old, new) records),
region streams (geo.py: a resync needed, started; repair.py: each finished repair pass,
which completes a resync once every member it asked has been pulled from) and the
origin's circuit breaker (readthrough.py). Nothing here does I/O; every call is O(1)
but `membership` (O(changes)) and `repair_done` (O(regions resyncing)).

Events carry a sequence number, so a reader asks for those after the last it saw;
the ring keeps the newest CAPACITY, so memory stays bounded whatever happens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

from geocache.clock import Clock

# Events kept: a few hours of a busy cluster's membership churn, a few kB each way.
CAPACITY = 500

# Member states as SWIM encodes them (swim_messages.MemberState values).
_ALIVE, _SUSPECT, _DEAD, _LEFT = "a", "s", "d", "l"


class _State(Protocol):
    @property
    def value(self) -> str: ...


class MemberRecord(Protocol):
    """What a membership change carries about a member (swim_messages.Member)."""

    @property
    def node_id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def state(self) -> _State: ...
    @property
    def incarnation(self) -> int: ...


class EventSink(Protocol):
    """The seam a component records events through (the node's EventLog, or NO_EVENTS)."""

    def record(self, kind: str, subject: str, region: str = "", detail: str = "") -> None: ...


class ClusterEvents(EventSink, Protocol):
    """The seam the cluster's parts record through (membership, streams, repair)."""

    def membership(self, changes: Iterable[tuple[MemberRecord | None, MemberRecord]]) -> None: ...

    def resync_started(self, region: str, members: Iterable[str]) -> None: ...

    def repair_done(self, peer: str) -> None: ...


class _NoEvents:
    """The null sink: for parts built without a node (unit tests, tools)."""

    def record(self, kind: str, subject: str, region: str = "", detail: str = "") -> None:
        pass

    def membership(self, changes: Iterable[tuple[MemberRecord | None, MemberRecord]]) -> None:
        pass

    def resync_started(self, region: str, members: Iterable[str]) -> None:
        pass

    def repair_done(self, peer: str) -> None:
        pass


NO_EVENTS: ClusterEvents = _NoEvents()


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    at_ms: int  # wall clock
    kind: str  # suspected, dead, rejoined, joined, left, recovered, resync_*, breaker_*
    subject: str  # a node id, a region, or "origin"
    region: str  # the subject's region (a node's, or a stream's remote region)
    detail: str
    reporter: str  # the node that saw it

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _membership_kind(old: MemberRecord | None, new: MemberRecord) -> str | None:
    """The event a change of a member's record is, or None (no news for a person)."""
    state = new.state.value
    before = old.state.value if old is not None else None
    if state == _ALIVE:
        if before is None:
            return "joined"
        if before in (_DEAD, _LEFT):
            return "rejoined"
        if before == _SUSPECT:
            return "recovered"  # refuted its suspicion, or came back before declared dead
        return "rejoined" if old is not None and new.incarnation > old.incarnation else None
    kinds = {_SUSPECT: "suspected", _DEAD: "dead", _LEFT: "left"}
    return kinds[state] if state != before else None


class EventLog:
    """The node's ring of events (an EventSink), and resyncs awaiting their repair passes."""

    def __init__(self, clock: Clock, node_id: str, capacity: int = CAPACITY) -> None:
        self._clock = clock
        self._node_id = node_id
        self._events: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        # Remote region -> its members this node still has to pull from to finish a resync.
        self._resyncing: dict[str, set[str]] = {}

    def record(self, kind: str, subject: str, region: str = "", detail: str = "") -> None:
        self._seq += 1
        at_ms = self._clock.wall_ms()
        self._events.append(Event(self._seq, at_ms, kind, subject, region, detail, self._node_id))

    def membership(self, changes: Iterable[tuple[MemberRecord | None, MemberRecord]]) -> None:
        for old, new in changes:
            kind = _membership_kind(old, new)
            if kind is not None:
                self.record(kind, new.node_id, new.region)

    def resync_started(self, region: str, members: Iterable[str]) -> None:
        pending = set(members)
        self._resyncing[region] = pending
        self.record("resync_started", region, region, f"pulling from {len(pending)} members")

    def repair_done(self, peer: str) -> None:
        """A repair pass with `peer` finished; a resync whose last member it was is done."""
        for region, pending in list(self._resyncing.items()):
            pending.discard(peer)
            if not pending:
                del self._resyncing[region]
                self.record("resync_done", region, region)

    def since(self, seq: int = 0, limit: int = CAPACITY) -> list[Event]:
        """Events after `seq`, oldest first, at most the newest `limit` of them."""
        newer = [e for e in self._events if e.seq > seq]
        return newer[-limit:] if limit else []

    @property
    def last_seq(self) -> int:
        return self._seq
