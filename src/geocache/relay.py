"""A TCP relay that adds delay: the wide-area link between regions on one machine.

This machine has no netem, so tests, the demo and benchmarks put a `Relay` between a
node and the peers (or clients) of other regions. Every accepted connection is piped
both ways to the target; each chunk read is delivered `delay_ms +- jitter_ms` after it
arrived (one way: a round trip through the relay costs about twice `delay_ms`).

Invariants:

- Order within a direction is kept, as TCP keeps it: a chunk's delivery time is the
  later of its own due time and the previous chunk's, so jitter delays, never reorders.
- Buffering is bounded: a direction holding more than `max_queued_bytes` undelivered
  (or whose receiver's transport asked to pause) stops reading its sender until it
  drains to half that, and TCP flow control pushes back to the sender.
- End of stream is delivered in order too (after the data before it), as a half-close.
- `cut()` is a link down: existing connections are reset (RST, via SO_LINGER 0) and new
  ones are accepted and reset at once, until `heal()`. `cut_one_way(direction)` holds
  that direction's data (it is not delivered, and back-pressure stops its sender) until
  `heal()`: over TCP a one-way loss looks like a stall.
- `close()` leaves no task, timer or socket behind.

Only loopback addresses (127.0.0.0/8) may be used, on either side: this is a test tool.
A test that made a private network of namespaces (tests/faults/netns.py) may name that
network as `allow`, so its relays join hosts of it; the command line never can.
`RelaySet` runs many relays on one event loop in a background thread for synchronous
code (the demo, process tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar, cast

T = TypeVar("T")

FORWARD = "forward"  # from the accepted connection to the target
BACKWARD = "backward"  # from the target back to the accepted connection
# Undelivered bytes per direction before its sender is paused (bytes). Enough for
# ~10 MB/s through a 100 ms link (the bandwidth-delay product), far more than a Python
# node pushes through one connection, yet a stalled receiver costs at most this.
MAX_QUEUED_BYTES = 1 << 20
# Connections piped at once; beyond this new ones are reset (a leak in a test shows up
# as refused connections instead of an exhausted machine).
MAX_CONNECTIONS = 1024
# Time to connect to the target before the accepted connection is reset (seconds).
CONNECT_TIMEOUT_S = 5.0
# Times are time.monotonic(), not loop.time(): uvloop's clock and timers have 1 ms
# steps, which would deliver up to a millisecond early. A timer that still fires a
# hair early delivers chunks due within this (seconds) rather than going round again;
# one due later is rescheduled, so a chunk is at most about a millisecond late.
_EARLY_S = 1e-4
# Time for RelaySet's thread to start, stop or run a control call (seconds).
CONTROL_TIMEOUT_S = 10.0
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def check_loopback(host: str, allow: str | None = None) -> None:
    """Refuse anything but 127.0.0.0/8 (and `localhost`), or the test network `allow`."""
    if host == "localhost":
        return
    networks = [ipaddress.ip_network("127.0.0.0/8")]
    if allow is not None:
        networks.append(ipaddress.ip_network(allow))
    try:
        ip = ipaddress.ip_address(host)
        loopback = any(ip in network for network in networks)
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the relay only uses 127.0.0.0/8, not {host!r}")


def split_hostport(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not a host:port address: {addr!r}")
    return host, int(port)


def _reset(transport: asyncio.Transport) -> None:
    """Abort with RST, as a dropped link or a dead host's kernel would answer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing left to reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    transport.abort()


class _Flow:
    """One direction of one connection: chunks waiting for their time to go out."""

    def __init__(self, pipe: _Pipe, direction: str) -> None:
        self.pipe = pipe
        self.direction = direction
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.chunks: deque[tuple[float, bytes]] = deque()  # (due, data); b"" is EOF
        self.queued_bytes = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.dst_paused = False  # the receiving transport's buffer is full
        self.reading = True
        self.eof_sent = False

    def push(self, data: bytes) -> None:
        """A chunk (or b"": end of stream) read from `src` now; no I/O happens here."""
        relay = self.pipe.relay
        due = max(time.monotonic() + relay.one_way_s(), self.last_due)
        self.last_due = due
        self.chunks.append((due, data))
        self.queued_bytes += len(data)
        self.throttle()
        self.schedule()

    def schedule(self) -> None:
        """A timer for the head chunk, unless one is set or the flow cannot deliver."""
        if self.timer is not None or not self.chunks or self.dst is None or self.dst_paused:
            return
        if self.direction not in self.pipe.relay.held:
            wait_s = max(self.chunks[0][0] - time.monotonic(), 0.0)
            self.timer = self.pipe.relay.loop.call_later(wait_s, self.deliver)

    def deliver(self) -> None:
        self.timer = None
        dst, now = self.dst, time.monotonic()
        if dst is None or self.direction in self.pipe.relay.held:
            return
        # A receiver that asked to pause gets nothing more until resume_writing: its
        # transport's buffer stays near its high-water mark, not the whole queue.
        while self.chunks and self.chunks[0][0] <= now + _EARLY_S and not self.dst_paused:
            _, data = self.chunks.popleft()
            self.queued_bytes -= len(data)
            if data:
                dst.write(data)
            else:
                self._deliver_eof(dst)
                return
        self.throttle()
        self.schedule()

    def _deliver_eof(self, dst: asyncio.Transport) -> None:
        self.eof_sent = True
        try:
            dst.write_eof()  # TCP transports can half-close
        except OSError:  # the receiver is gone already (its reset not yet reported)
            self.pipe.abort()
            return
        self.pipe.maybe_done()

    def throttle(self) -> None:
        """Pause the sender above the limit; resume it once half drained."""
        src, limit = self.src, self.pipe.relay.max_queued_bytes
        if src is None or src.is_closing():
            return
        if self.reading and (self.queued_bytes > limit or self.dst_paused):
            self.reading = False
            src.pause_reading()
        elif not self.reading and self.queued_bytes <= limit // 2 and not self.dst_paused:
            self.reading = True
            src.resume_reading()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.chunks.clear()
        self.queued_bytes = 0


class _End(asyncio.Protocol):
    """One socket of a pipe; what it reads feeds `out`, what `into` holds goes to it."""

    def __init__(self, pipe: _Pipe, out: _Flow, into: _Flow) -> None:
        self.pipe, self.out, self.into = pipe, out, into

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio's classes.
        transport = cast(asyncio.Transport, base)
        self.out.src = self.into.dst = transport
        if self.pipe.closed:  # the pipe ended while this end was connecting
            _reset(transport)

    def data_received(self, data: bytes) -> None:
        self.out.push(data)

    def eof_received(self) -> bool:
        self.out.push(b"")
        return True  # keep the socket open: the other direction may still deliver

    def pause_writing(self) -> None:
        self.into.dst_paused = True
        self.into.throttle()

    def resume_writing(self) -> None:
        self.into.dst_paused = False
        self.into.throttle()
        self.into.schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        # Closed under us (reset, or a write after the peer left): the link is gone both
        # ways. A close we made ourselves finds the pipe closed already.
        self.pipe.abort()


class _Pipe:
    """One relayed connection: the accepted end, the end dialed to the target."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.forward = _Flow(self, FORWARD)
        self.backward = _Flow(self, BACKWARD)
        self.accepted = _Accepted(self, self.forward, self.backward)
        self.dialing: asyncio.Task[None] | None = None
        self.closed = False

    def flows(self) -> tuple[_Flow, _Flow]:
        return self.forward, self.backward

    def transports(self) -> list[asyncio.Transport]:
        return [t for t in (self.forward.src, self.backward.src) if t is not None]

    async def dial(self, host: str, port: int) -> None:
        """Connect to the target, then let the accepted end's bytes flow."""
        loop = self.relay.loop
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await loop.create_connection(
                    lambda: _End(self, self.backward, self.forward), host, port
                )
        except (OSError, TimeoutError):
            self.abort()  # as a refused connect: the client sees a reset
            return
        finally:
            self.dialing = None
        if self.closed:
            return
        self.forward.throttle()  # resumes reading unless already over the limit
        self.forward.schedule()

    def maybe_done(self) -> None:
        if self.forward.eof_sent and self.backward.eof_sent:
            self.close(reset=False)

    def abort(self) -> None:
        self.close(reset=True)

    def close(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.pipes.discard(self)
        if self.dialing is not None:
            self.dialing.cancel()
        for flow in self.flows():
            flow.stop()
        for transport in self.transports():
            if reset:
                _reset(transport)
            else:
                transport.close()


class Relay:
    """A delaying TCP relay from `listen` to `target` (see the module docstring)."""

    def __init__(
        self,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        target_host: str = "127.0.0.1",
        target_port: int = 7379,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        seed: int | None = None,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        allow: str | None = None,
    ) -> None:
        check_loopback(listen_host, allow)
        check_loopback(target_host, allow)
        if max_queued_bytes < 1 or max_connections < 1:
            raise ValueError("max_queued_bytes and max_connections must be at least 1")
        self.listen_host, self.listen_port = listen_host, listen_port
        self.target_host, self.target_port = target_host, target_port
        self.max_queued_bytes = max_queued_bytes
        self.max_connections = max_connections
        self._rng = random.Random(seed)
        self.delay_ms, self.jitter_ms = 0.0, 0.0
        self.set_delay(delay_ms, jitter_ms)
        self.pipes: set[_Pipe] = set()
        self.held: set[str] = set()  # directions cut one way
        self.is_cut = False
        self.accepted = 0  # connections piped since start (for tests and stats)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the relay is not started"
        return self._loop

    @property
    def address(self) -> str:
        """Where to connect: "host:port" (the real port once started with port 0)."""
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def target(self) -> str:
        return f"{self.target_host}:{self.target_port}"

    @property
    def buffered_bytes(self) -> int:
        """Bytes the relay holds: undelivered chunks and transports' write buffers."""
        queued = sum(f.queued_bytes for p in self.pipes for f in p.flows())
        return queued + sum(t.get_write_buffer_size() for p in self.pipes for t in p.transports())

    def one_way_s(self) -> float:
        jitter = self._rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(self.delay_ms + jitter, 0.0) / 1000

    # -- controls (call them on the relay's event loop) -------------------------------------

    def set_delay(self, delay_ms: float, jitter_ms: float = 0.0) -> None:
        """New one-way delay for chunks read from now on (queued ones keep their time)."""
        if delay_ms < 0 or jitter_ms < 0:
            raise ValueError("delay_ms and jitter_ms must be 0 or more")
        self.delay_ms, self.jitter_ms = float(delay_ms), float(jitter_ms)

    def cut(self) -> None:
        """Link down: reset every connection, and reset new ones at once until heal()."""
        self.is_cut = True
        for pipe in list(self.pipes):
            pipe.abort()

    def cut_one_way(self, direction: str) -> None:
        """Hold `direction` (FORWARD or BACKWARD): its data waits, undelivered, for heal()."""
        if direction not in (FORWARD, BACKWARD):
            raise ValueError(f"direction is {FORWARD!r} or {BACKWARD!r}, not {direction!r}")
        self.held.add(direction)
        for pipe in self.pipes:
            flow = pipe.forward if direction == FORWARD else pipe.backward
            if flow.timer is not None:
                flow.timer.cancel()
                flow.timer = None

    def heal(self) -> None:
        """Undo cut() and cut_one_way(); held data goes out now (or when it falls due)."""
        self.is_cut = False
        self.held.clear()
        for pipe in self.pipes:
            for flow in pipe.flows():
                flow.schedule()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            self._accept, self.listen_host, self.listen_port
        )
        self.listen_port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and reset every connection; nothing is left running."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        dialing = [p.dialing for p in self.pipes if p.dialing is not None]
        for pipe in list(self.pipes):
            pipe.abort()
        if dialing:
            await asyncio.gather(*dialing, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _accept(self) -> asyncio.Protocol:
        return _Pipe(self).accepted


class _Accepted(_End):
    """The accepted socket's end: it also sets the pipe up, dialing the target."""

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)
        pipe, relay = self.pipe, self.pipe.relay
        if relay.is_cut or not relay.listening or len(relay.pipes) >= relay.max_connections:
            pipe.closed = True
            _reset(transport)
            return
        relay.pipes.add(pipe)
        relay.accepted += 1
        super().connection_made(transport)
        # Nothing is read until the target answers: its bytes would have nowhere to go.
        self.out.reading = False
        transport.pause_reading()
        pipe.dialing = relay.loop.create_task(pipe.dial(relay.target_host, relay.target_port))


class RelaySet:
    """Relays on one event loop in a background thread, for synchronous callers.

    Relays are added per (group, target): a group is whoever dials through them (the
    demo uses one group per source region), and `routes(group)` is that group's map
    from target to relay address, the shape of `--peer-map` and the client's `routes`.
    Control a relay with `call(relay.cut)`: its methods must run on the loop.
    """

    def __init__(self, listen_host: str = "127.0.0.1", allow: str | None = None) -> None:
        """`listen_host` and `allow`: a test network's address of this namespace and the
        network itself (tests/faults/netns.py); loopback otherwise."""
        check_loopback(listen_host, allow)
        self._listen_host, self._allow = listen_host, allow
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._relays: dict[tuple[str, str], Relay] = {}

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="geocache-relays", daemon=True)
        self._thread.start()
        self._loop = loop
        if not ready.wait(CONTROL_TIMEOUT_S):
            raise RuntimeError("the relay thread did not start")

    def add(
        self,
        target: str,
        delay_ms: float,
        jitter_ms: float = 0.0,
        group: str = "",
        seed: int | None = None,
    ) -> Relay:
        """A started relay to `target` for `group` (its `.address` is where to dial)."""
        if (group, target) in self._relays:
            raise ValueError(f"a relay to {target} for {group!r} exists already")
        host, port = split_hostport(target)

        async def started() -> Relay:
            relay = Relay(
                self._listen_host, 0, host, port, delay_ms, jitter_ms, seed, allow=self._allow
            )
            await relay.start()
            return relay

        relay = self._submit(started())
        self._relays[group, target] = relay
        return relay

    def relay(self, target: str, group: str = "") -> Relay:
        return self._relays[group, target]

    def relays(self) -> list[Relay]:
        return list(self._relays.values())

    def routes(self, group: str = "") -> dict[str, str]:
        """Target address -> relay address, for the relays of `group`."""
        return {t: r.address for (g, t), r in self._relays.items() if g == group}

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the relays' loop (relay controls) and return its result."""

        async def run() -> T:
            return fn(*args)

        return self._submit(run())

    def stop(self) -> None:
        """Close every relay, then stop the loop and its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            relays = list(self._relays.values())

            async def close_all() -> None:
                await asyncio.gather(*(r.close() for r in relays))

            self._submit(close_all())
        finally:
            self._relays.clear()
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT_S)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> RelaySet:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the RelaySet is not started")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(CONTROL_TIMEOUT_S)


async def serve(relay: Relay, stop: asyncio.Event) -> None:
    """Run one relay until `stop` is set (the `geocache relay` command)."""
    async with relay:
        print(f"relay {relay.address} -> {relay.target}", flush=True)
        await stop.wait()
