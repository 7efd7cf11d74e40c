"""A deterministic in-memory network for cluster tests, driven by a ManualClock.

Nodes are sans-IO endpoints registered by address: `tick()` and `receive(from, msg)`
return sends (anything with `to_addr` and `msg`), and `next_deadline_ms()` says when
`tick()` next has work. `run_for(ms, step_ms)` is a discrete-event loop: it jumps the
clock to the next delivery or the next tick that has work, where ticks happen on a grid
of `step_ms` as a driver polling every `step_ms` would call them (an endpoint's tick
before its deadline must be a no-op, which makes skipping idle ticks exact). Ten
simulated minutes of a 20-node cluster thus take a second or two of real time.

Every send passes, in order: crashed or unknown destination (dropped), partitions
(dropped), the link's drop probability (dropped), then delivery after the link's delay
plus uniform jitter; jitter larger than the gap between two sends reorders them, and
`reorder` adds an extra delay of up to ten times the base delay to that fraction of
messages. With `codec`, each message is encoded and decoded on the way, so the wire
format is exercised too. All randomness comes from one seeded `random.Random`, so a
seed replays a run exactly.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from geocache.clock import ManualClock


class Outgoing(Protocol):
    @property
    def to_addr(self) -> str: ...

    @property
    def msg(self) -> Any: ...


class Endpoint(Protocol):
    def tick(self) -> Iterable[Outgoing]: ...

    def receive(self, from_addr: str, msg: Any) -> Iterable[Outgoing]: ...

    def next_deadline_ms(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Link:
    """Delivery from one address to another: delay and jitter in ms, drop a fraction."""

    delay_ms: int = 1
    jitter_ms: int = 0
    drop: float = 0.0
    reorder: float = 0.0


@dataclass(frozen=True, slots=True)
class Codec:
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


class SimNet:
    """The network, the clock and the nodes of one simulated cluster."""

    def __init__(
        self,
        clock: ManualClock,
        rng: random.Random,
        default_link: Link = Link(),
        codec: Codec | None = None,
    ) -> None:
        self.clock = clock
        self.rng = rng
        self.default_link = default_link
        self.codec = codec
        self.nodes: dict[str, Endpoint] = {}
        self.crashed: set[str] = set()
        self.links: dict[tuple[str, str], Link] = {}
        self.blocked: set[tuple[str, str]] = set()  # (from, to) pairs cut by partitions
        self.stats: Counter[str] = Counter()  # sent, delivered, dropped_*, by message type
        self.on_deliver: Callable[[str, str, Any], None] | None = None
        self._queue: list[tuple[int, int, str, str, Any]] = []  # (due, order, from, to, msg)
        self._order = 0
        self._last_tick_ms = -(1 << 62)
        # Each up node's next_deadline_ms(), refreshed whenever the net calls into it.
        self._deadlines: dict[str, int | None] = {}

    # --- topology ---------------------------------------------------------------------

    def add(self, addr: str, node: Endpoint) -> None:
        """Register (or replace, as on restart) the node at `addr`; it is up."""
        self.nodes[addr] = node
        self.crashed.discard(addr)
        self._deadlines[addr] = node.next_deadline_ms()

    def crash(self, addr: str) -> None:
        """Stop the node: it neither ticks nor receives; messages to it are lost."""
        self.crashed.add(addr)
        self._deadlines.pop(addr, None)

    def set_link(self, src: str, dst: str, link: Link, both_ways: bool = True) -> None:
        self.links[src, dst] = link
        if both_ways:
            self.links[dst, src] = link

    def partition(
        self, side_a: Iterable[str], side_b: Iterable[str], one_way: bool = False
    ) -> None:
        """Cut every link from side_a to side_b (and back, unless `one_way`)."""
        a, b = set(side_a), set(side_b)
        self.blocked |= {(x, y) for x in a for y in b}
        if not one_way:
            self.blocked |= {(y, x) for x in a for y in b}

    def isolate(self, addr: str) -> None:
        self.partition([addr], set(self.nodes) - {addr})

    def heal(self) -> None:
        """Remove every partition; link delays and losses stay."""
        self.blocked.clear()

    # --- running ----------------------------------------------------------------------

    def send_all(self, src: str, sends: Iterable[Outgoing]) -> None:
        """Put sends made outside the net (join, leave) on the wire. Call it (even with
        no sends) after changing a node's state directly, so its deadline is re-read."""
        for send in sends:
            self._send(src, send)
        if src in self._deadlines:
            self._deadlines[src] = self.nodes[src].next_deadline_ms()

    def run_for(self, ms: int, step_ms: int = 10) -> None:
        """Advance the clock by `ms`, delivering messages and ticking nodes as due."""
        end = self.clock.mono_ms() + ms
        while True:
            now = self.clock.mono_ms()
            # Never behind `now`: a test may have moved the clock itself.
            due = max(now, min(self._next_delivery(), self._next_tick(step_ms), end))
            self.clock.advance(due - now)
            self._deliver_due(due)
            if due % step_ms == 0 and due > self._last_tick_ms:
                self._last_tick_ms = due
                self._tick_due(due)
            if due >= end:
                return

    def _next_delivery(self) -> int:
        return self._queue[0][0] if self._queue else 1 << 62

    def _next_tick(self, step_ms: int) -> int:
        nearest = min((d for d in self._deadlines.values() if d is not None), default=1 << 62)
        # Ticks fall on the step grid, as a driver polling every step_ms calls them, and
        # at most once per grid point, so an endpoint cannot stall the loop.
        at = max(nearest, self._last_tick_ms + step_ms)
        return -(-at // step_ms) * step_ms

    def _deliver_due(self, now: int) -> None:
        while self._queue and self._queue[0][0] <= now:
            _, _, src, dst, msg = heapq.heappop(self._queue)
            node = self.nodes.get(dst)
            if node is None or dst in self.crashed:
                self.stats["dropped_down"] += 1
                continue
            if self.codec is not None:
                msg = self.codec.decode(self.codec.encode(msg))
            self.stats["delivered"] += 1
            if self.on_deliver is not None:
                self.on_deliver(src, dst, msg)
            for send in node.receive(src, msg):
                self._send(dst, send)
            self._deadlines[dst] = node.next_deadline_ms()

    def _tick_due(self, now: int) -> None:
        for addr, deadline in list(self._deadlines.items()):
            if deadline is None or deadline > now:
                continue
            node = self.nodes[addr]
            for send in node.tick():
                self._send(addr, send)
            self._deadlines[addr] = node.next_deadline_ms()

    def _send(self, src: str, send: Outgoing) -> None:
        dst = send.to_addr
        self.stats["sent"] += 1
        self.stats["sent_" + type(send.msg).__name__] += 1
        if (src, dst) in self.blocked:
            self.stats["dropped_partition"] += 1
            return
        link = self.links.get((src, dst), self.default_link)
        if link.drop and self.rng.random() < link.drop:
            self.stats["dropped_loss"] += 1
            return
        delay = link.delay_ms
        if link.jitter_ms:
            delay += self.rng.randint(0, link.jitter_ms)
        if link.reorder and self.rng.random() < link.reorder:
            self.stats["reordered"] += 1
            delay += self.rng.randint(1, 10 * max(1, link.delay_ms))
        self._order += 1
        heapq.heappush(self._queue, (self.clock.mono_ms() + delay, self._order, src, dst, send.msg))
