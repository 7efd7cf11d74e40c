"""A simulated network for in-process clusters: datagrams, TCP-like connections, faults.

Hosts are addresses, each with at most one `Endpoint` up (a node incarnation). Every
delivery runs in the receiving endpoint's context (loop.OWNER), so what it starts
belongs to it. Delays, jitter and losses come from per-link `Link`s (a link of its own
for an address pair, else one per pair of regions, else the default) and one seeded
`random.Random`, so a seed replays a run exactly.

What the peers see (the loss model is what loss looks like to an application):

- Datagrams (membership: GC.SWIM, sent fire-and-forget) are each lost with the link's
  `drop`, delayed by `delay_ms` plus up to `jitter_ms` (which reorders them), and a
  `reorder` fraction gets up to ten times the delay more. A cut direction drops them.
- Connections (replication, forwarding, repair) deliver bytes in order, as TCP does. A
  lost segment costs retransmission timeouts (200 ms, doubling, as Linux's minimum RTO)
  and holds back everything after it. A cut direction in "drop" mode (a firewall DROP, a
  dead link) stalls the connection: nothing fails, and when the cut heals the stalled
  bytes arrive at the next retransmission, which backs off as TCP's does. A cut in
  "reject" mode (a firewall REJECT, a middlebox that lost its state) resets the
  connections crossing it at once.
- Connecting takes a round trip. It is refused (ConnectionRefusedError) by an address
  with no endpoint up or across a rejecting cut, and hangs (until the caller's own
  timeout) across a dropping cut or when the SYN or its answer is lost.
- A crash resets the endpoint's connections: the reset reaches each peer like any other
  segment (at once, or when a cut between them heals). Nothing the crashed endpoint
  sent afterwards, or had queued, leaves it.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from sim.net import Link

CutMode = Literal["drop", "reject"]
# TCP's retransmission timeout: Linux's minimum (200 ms), doubling up to its maximum.
RTO_MIN_S = 0.2
RTO_MAX_S = 120.0
# A link that only takes time: 1 ms, no jitter, no loss.
DIRECT = Link()
# Segment kinds on a connection: bytes, an orderly close, a reset.
_DATA, _FIN, _RST = 0, 1, 2


class Endpoint(Protocol):
    """One incarnation of a host: what the network delivers to."""

    @property
    def addr(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def alive(self) -> bool: ...

    def context(self) -> contextvars.Context: ...
    def accept(self, transport: SimTransport) -> asyncio.Protocol: ...
    def receive_datagram(self, protocol: asyncio.Protocol, data: bytes) -> None: ...


class SimNetwork:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        default_link: Link = DIRECT,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.default_link = default_link
        self.hosts: dict[str, Endpoint] = {}
        self.links: dict[tuple[str, str], Link] = {}  # per address pair, one way
        self.region_links: dict[tuple[str, str], Link] = {}  # per region pair, one way
        self.cuts: dict[tuple[str, str], CutMode] = {}  # (from addr, to addr) -> mode
        self.stats: Counter[str] = Counter()
        self._connections: dict[SimConnection, None] = {}
        self._stalled: dict[_Pipe, None] = {}

    # -- topology and faults -----------------------------------------------------------

    def register(self, endpoint: Endpoint) -> None:
        """`endpoint` is up at its address (a start, or a restart replacing a crashed one)."""
        self.hosts[endpoint.addr] = endpoint

    def link(self, src: str, dst: str) -> Link:
        link = self.links.get((src, dst))
        if link is not None:
            return link
        a, b = self.hosts.get(src), self.hosts.get(dst)
        if a is not None and b is not None:
            return self.region_links.get((a.region, b.region), self.default_link)
        return self.default_link

    def set_region_link(self, a: str, b: str, link: Link) -> None:
        """Links between regions `a` and `b` (both ways)."""
        self.region_links[a, b] = self.region_links[b, a] = link

    def set_loss(self, drop: float) -> None:
        """Every link (the default and those between regions) loses this fraction."""
        self.default_link = dataclasses.replace(self.default_link, drop=drop)
        for pair, link in list(self.region_links.items()):
            self.region_links[pair] = dataclasses.replace(link, drop=drop)

    def cut(
        self,
        side_a: Iterable[str],
        side_b: Iterable[str],
        mode: CutMode = "drop",
        one_way: bool = False,
    ) -> None:
        """Cut every link from side_a to side_b (and back, unless `one_way`), on top of
        the cuts already made (a later mode replaces an earlier one); heal() lifts all."""
        a, b = list(side_a), list(side_b)
        pairs = [(x, y) for x in a for y in b]
        if not one_way:
            pairs += [(y, x) for x, y in pairs]
        for pair in pairs:
            self.cuts[pair] = mode
        if mode == "reject":
            for conn in list(self._connections):
                if conn.crosses(self.cuts, "reject"):
                    conn.reset_both()

    def partition(self, groups: Iterable[Iterable[str]], mode: CutMode = "drop") -> None:
        """Split the addresses into groups that cannot reach each other (adding to the
        cuts already made)."""
        sides = [list(g) for g in groups]
        for i, side in enumerate(sides):
            for other in sides[i + 1 :]:
                self.cut(side, other, mode)

    def heal(self) -> None:
        """Remove every cut; stalled connections resume at their next retransmission."""
        self.cuts.clear()
        now = self.loop.time()
        for pipe in list(self._stalled):
            pipe.resume(now)
        self._stalled.clear()

    def crash(self, addr: str) -> None:
        """The endpoint at `addr` is gone: its connections reset, new ones are refused."""
        endpoint = self.hosts.get(addr)
        for conn in list(self._connections):
            if endpoint is not None and conn.has(endpoint):
                conn.crash(endpoint)

    def reset(self, a: str, b: str) -> None:
        """Reset every connection between `a` and `b` (as a middlebox dropping state)."""
        for conn in list(self._connections):
            if {conn.ends[0].endpoint.addr, conn.ends[1].endpoint.addr} == {a, b}:
                conn.reset_both()

    def blocked(self, src: str, dst: str) -> CutMode | None:
        return self.cuts.get((src, dst))

    # -- datagrams ---------------------------------------------------------------------

    def datagram(self, conn: SimConnection, index: int, data: bytes) -> None:
        """A datagram from end `index` of `conn` to the other end (see the docstring).

        It travels beside the connection, not in its byte stream, and reaches the other
        end's protocol (its session: the one the connection authenticated).
        """
        self.stats["datagrams_sent"] += 1
        src, dst = conn.ends[index].endpoint, conn.ends[1 - index]
        if not src.alive or dst.closed or not dst.endpoint.alive:
            self.stats["datagrams_dropped_down"] += 1
            return
        if not conn.local and self.blocked(src.addr, dst.endpoint.addr):
            self.stats["datagrams_dropped_cut"] += 1
            return
        link = self.link(src.addr, dst.endpoint.addr)
        if not conn.local and link.drop and self.rng.random() < link.drop:
            self.stats["datagrams_dropped_loss"] += 1
            return
        delay_s = 0.0 if conn.local else self.one_way_s(link)
        if not conn.local and link.reorder and self.rng.random() < link.reorder:
            delay_s += self.rng.randint(1, 10 * max(1, link.delay_ms)) / 1000
        context = dst.endpoint.context()
        self.loop.call_later(delay_s, self._arrive, conn, 1 - index, data, context=context)

    def _arrive(self, conn: SimConnection, index: int, data: bytes) -> None:
        end = conn.ends[index]
        if end.closed or not end.endpoint.alive or end.protocol is None:
            self.stats["datagrams_dropped_down"] += 1
            return
        self.stats["datagrams_delivered"] += 1
        end.endpoint.receive_datagram(end.protocol, data)

    def one_way_s(self, link: Link) -> float:
        jitter = self.rng.randint(0, link.jitter_ms) if link.jitter_ms else 0
        return (link.delay_ms + jitter) / 1000

    # -- connections -------------------------------------------------------------------

    async def open(
        self, src: Endpoint, dst_addr: str, protocol: asyncio.Protocol, local: bool = False
    ) -> SimTransport:
        """Connect `src` to the endpoint at `dst_addr`; the client side's transport.

        `local`: a client on the same host (no delay, loss or cuts).
        """
        self.stats["connects"] += 1
        there = 0.0 if local else self.one_way_s(self.link(src.addr, dst_addr))
        back = 0.0 if local else self.one_way_s(self.link(dst_addr, src.addr))
        if not local and self._connect_hangs(src.addr, dst_addr):
            self.stats["connects_hung"] += 1
            await self.loop.create_future()  # the caller's timeout ends this
        await asyncio.sleep(there)
        dst = self.hosts.get(dst_addr)
        rejected = not local and "reject" in (
            self.blocked(src.addr, dst_addr),
            self.blocked(dst_addr, src.addr),
        )
        if dst is None or not dst.alive or rejected:
            await asyncio.sleep(back)
            self.stats["connects_refused"] += 1
            raise ConnectionRefusedError(f"{dst_addr}: connection refused")
        conn = SimConnection(self, src, dst, protocol, local)
        self._connections[conn] = None
        try:
            await asyncio.sleep(back)
        except asyncio.CancelledError:
            conn.ends[0].transport.abort()
            raise
        if conn.ends[0].closed:
            raise ConnectionResetError(f"{dst_addr}: connection reset while connecting")
        protocol.connection_made(conn.ends[0].transport)
        return conn.ends[0].transport

    def _connect_hangs(self, src: str, dst: str) -> bool:
        if "drop" in (self.blocked(src, dst), self.blocked(dst, src)):
            return True
        link_there, link_back = self.link(src, dst), self.link(dst, src)
        return self.rng.random() < link_there.drop or self.rng.random() < link_back.drop

    def forget(self, conn: SimConnection) -> None:
        self._connections.pop(conn, None)

    def stalled(self, pipe: _Pipe) -> None:
        self._stalled[pipe] = None


class _End:
    """One end of a connection: who holds it, its protocol and transport, its inbox."""

    __slots__ = ("closed", "endpoint", "held", "paused", "protocol", "transport")

    def __init__(self, endpoint: Endpoint, conn: SimConnection, index: int) -> None:
        self.endpoint = endpoint
        self.transport = SimTransport(conn, index)
        self.protocol: asyncio.Protocol | None = None
        self.closed = False
        self.paused = False
        self.held: list[bytes] = []  # data that arrived while reading was paused


class SimConnection:
    """A TCP-like connection: two ends and a pipe each way."""

    def __init__(
        self,
        net: SimNetwork,
        client: Endpoint,
        server: Endpoint,
        client_protocol: asyncio.Protocol,
        local: bool,
    ) -> None:
        self.net = net
        self.local = local
        self.ends = (_End(client, self, 0), _End(server, self, 1))
        self.ends[0].protocol = client_protocol
        self.pipes = (_Pipe(self, 0, 1), _Pipe(self, 1, 0))
        self.ends[1].protocol = server.context().run(server.accept, self.ends[1].transport)

    def has(self, endpoint: Endpoint) -> bool:
        return any(end.endpoint is endpoint for end in self.ends)

    def crosses(self, cuts: dict[tuple[str, str], CutMode], mode: CutMode) -> bool:
        a, b = self.ends[0].endpoint.addr, self.ends[1].endpoint.addr
        return not self.local and mode in (cuts.get((a, b)), cuts.get((b, a)))

    def send(self, index: int, kind: int, data: bytes = b"") -> None:
        if self.ends[index].endpoint.alive:
            self.pipes[index].send(kind, data)

    def close_end(self, index: int, exc: Exception | None) -> None:
        """This end is closed: its protocol hears it once (soon, in its owner's context)."""
        end = self.ends[index]
        if end.closed:
            return
        end.closed = True
        protocol = end.protocol
        if protocol is not None and end.endpoint.alive:
            loop = self.net.loop
            loop.call_soon(protocol.connection_lost, exc, context=end.endpoint.context())
        if all(e.closed for e in self.ends):
            self.net.forget(self)

    def reset_both(self) -> None:
        for index in (0, 1):
            self.pipes[index].clear()
            self.close_end(index, ConnectionResetError("connection reset"))

    def crash(self, endpoint: Endpoint) -> None:
        """`endpoint` died: the peer gets a reset; the dead end hears nothing more."""
        for index, end in enumerate(self.ends):
            if end.endpoint is endpoint:
                end.closed = True
                self.pipes[index].clear()
                self.pipes[index].send(_RST)
        if all(e.closed for e in self.ends):
            self.net.forget(self)

    def deliver(self, index: int, kind: int, data: bytes) -> None:
        """A segment reached end `index`."""
        end = self.ends[index]
        if end.closed or not end.endpoint.alive or end.protocol is None:
            return
        if kind == _DATA:
            if end.paused:
                end.held.append(data)
            else:
                end.protocol.data_received(data)
            return
        error = ConnectionResetError("connection reset by peer") if kind == _RST else None
        if kind == _RST:
            self.pipes[index].clear()  # a reset discards what this end had not sent
        self.close_end(index, error)
        if kind == _FIN:
            self.ends[index].transport.close()  # answer an orderly close with one

    def resume_reading(self, index: int) -> None:
        end = self.ends[index]
        end.paused = False
        if end.held:
            held, end.held = b"".join(end.held), []
            self.net.loop.call_soon(
                self.deliver, index, _DATA, held, context=end.endpoint.context()
            )


class _Pipe:
    """One direction of a connection: segments in order, each with its arrival time."""

    __slots__ = ("_last_due", "_queue", "_src", "_stall_s", "_timer", "conn", "dst")

    def __init__(self, conn: SimConnection, src: int, dst: int) -> None:
        self.conn = conn
        self._src = src
        self.dst = dst
        self._queue: deque[tuple[float, int, bytes]] = deque()
        self._last_due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stall_s: float | None = None  # when the head found its link cut

    def _addrs(self) -> tuple[str, str]:
        ends = self.conn.ends
        return ends[self._src].endpoint.addr, ends[self.dst].endpoint.addr

    def send(self, kind: int, data: bytes = b"") -> None:
        net = self.conn.net
        now = net.loop.time()
        due = now
        if not self.conn.local:
            link = net.link(*self._addrs())
            due += net.one_way_s(link) + self._retransmissions(link, net.rng)
        self._last_due = due = max(due, self._last_due)
        self._queue.append((due, kind, data))
        if self._stall_s is None:
            self._schedule()

    @staticmethod
    def _retransmissions(link: Link, rng: random.Random) -> float:
        """The delay a segment's losses cost: one retransmission timeout each, doubling."""
        delay, rto = 0.0, RTO_MIN_S
        while link.drop and rng.random() < link.drop:
            delay, rto = delay + rto, min(2 * rto, RTO_MAX_S)
        return delay

    def _schedule(self) -> None:
        if self._timer is None and self._queue:
            loop = self.conn.net.loop
            context = self.conn.ends[self.dst].endpoint.context()
            self._timer = loop.call_at(self._queue[0][0], self._pump, context=context)

    def _pump(self) -> None:
        self._timer = None
        net = self.conn.net
        now = net.loop.time()
        while self._queue and self._queue[0][0] <= now:
            if not self.conn.local and net.blocked(*self._addrs()):
                self._stall_s = now
                net.stalled(self)
                return
            _due, kind, data = self._queue.popleft()
            self.conn.deliver(self.dst, kind, data)
        self._schedule()

    def resume(self, now: float) -> None:
        """The cut healed: what waited arrives at the next retransmission after `now`."""
        if self._stall_s is None:
            return
        retry, rto = self._stall_s + RTO_MIN_S, RTO_MIN_S
        while retry < now:
            rto = min(2 * rto, RTO_MAX_S)
            retry += rto
        self._stall_s = None
        net = self.conn.net
        link = net.link(*self._addrs())
        arrive = retry + net.one_way_s(link)
        self._queue = deque((max(due, arrive), kind, data) for due, kind, data in self._queue)
        self._last_due = max(self._last_due, arrive)
        self._schedule()

    def clear(self) -> None:
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class SimTransport(asyncio.Transport):
    """One end's transport: what the protocol on that end writes to and controls."""

    def __init__(self, conn: SimConnection, index: int) -> None:
        super().__init__()
        self._conn = conn
        self._index = index
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing and data:
            self._conn.send(self._index, _DATA, bytes(data))

    def send_datagram(self, data: bytes) -> None:
        """Send `data` beside the byte stream, lossy and unordered (SimNetwork.datagram)."""
        if not self._closing:
            self._conn.net.datagram(self._conn, self._index, data)

    def close(self) -> None:
        """Orderly close: what was written still arrives, then the peer sees the close."""
        if not self._closing:
            self._closing = True
            self._conn.send(self._index, _FIN)
            self._conn.close_end(self._index, None)

    def abort(self) -> None:
        if not self._closing:
            self._closing = True
            self._conn.pipes[self._index].clear()
            self._conn.send(self._index, _RST)
            self._conn.close_end(self._index, None)

    def is_closing(self) -> bool:
        return self._closing or self._conn.ends[self._index].closed

    def pause_reading(self) -> None:
        self._conn.ends[self._index].paused = True

    def resume_reading(self) -> None:
        self._conn.resume_reading(self._index)

    def is_reading(self) -> bool:
        return not self._conn.ends[self._index].paused

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Nothing is buffered here (writes are delivered whole), so no mark is reached."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        ends = self._conn.ends
        mine, theirs = ends[self._index].endpoint.addr, ends[1 - self._index].endpoint.addr
        info: dict[str, Callable[[], Any]] = {
            "peername": lambda: _host_port(theirs),
            "sockname": lambda: _host_port(mine),
        }
        getter = info.get(name)
        return getter() if getter is not None else default


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port) if port.isdigit() else 0
