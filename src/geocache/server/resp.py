"""The RESP front end: one `asyncio.Protocol` per client connection.

The hot path, as asyncpg and Redis do it: `data_received` feeds the bytes to the
sans-IO reader, runs every complete command in order, and writes all the replies with
one `transport.write` per batch. Nothing awaits, so a command's read and write of the
store are atomic with respect to every other client.

Limits (DESIGN.md section 10, server/limits.py), each cutting off only the offending client:
- the reader bounds one command's size and the bytes buffered for it;
- after `max_pipeline` commands the connection stops reading and yields to others,
  resuming on the next loop iteration (fairness, and it bounds one batch's replies);
- replies leave as they are produced, every FLUSH_BYTES, never joined per batch; while
  more than the pause mark (PAUSE_BYTES, at most half of `max_output_buffer_bytes`) waits
  unsent, the connection runs no more commands (the transport's high-water mark), and it
  is closed if it stays so for `output_stall_timeout_s` (a client that reads a byte a
  second) or if one reply would take its unsent bytes past `max_output_buffer_bytes`;
- what the connection holds (query buffer, unsent replies, MULTI queue) counts toward
  the node's client memory budget (`ClientBudget`), which closes the biggest holder;
- `max_concurrent_commands` caps client commands in progress node-wide (CommandGate);
  every path out of the command loop gives its slot back, and a handler that raises
  becomes an error reply and a log line;
- a reply the command asked to hold (`session.hold_ms`: a wrong password) is sent that
  much later, and the connection reads nothing more meanwhile (the AUTH tarpit).

A closed connection drops its reader, queued replies and transaction at once: nothing
waits for the garbage collector (the reader holds bound methods of itself, a cycle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from functools import partial
from time import perf_counter_ns
from typing import TYPE_CHECKING, Final, cast

from geocache import auth
from geocache.commands.context import Deferred, Session
from geocache.commands.table import dispatch as local_dispatch
from geocache.observability import metrics
from geocache.protocol.reader import DEFAULT_MAX_MULTIBULK_LEN, ProtocolError, RequestReader
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_into
from geocache.tls import HANDSHAKE_RECORD, channel_binding

if TYPE_CHECKING:
    from geocache.config import NodeConfig
    from geocache.server.node import Node

log = logging.getLogger("geocache.resp")

MAX_CLIENTS_REACHED: Final = b"-ERR max number of clients reached\r\n"
# A TLS ClientHello on the plaintext port: the client expects TLS, so any answer reads
# to it as a bad record; this one at least says it to whoever captures the traffic.
TLS_ON_PLAINTEXT = b"-ERR this port speaks plaintext RESP, not TLS\r\n"
CLOSED_FOR = {
    "client_memory": b"-ERR closed: the node's client memory limit (max-client-memory)\r\n",
    "auth_timeout": b"-ERR closed: not authenticated in time\r\n",
}
# A read at least this long (bytes), or a connection already holding something, tells
# the client memory budget at once; the node's limits check (every 250 ms) measures
# the rest. The event loop hands over up to 256 KiB a read, so a burst is seen at once.
REPORT_READ_BYTES: Final = 16 << 10
# SO_LINGER on, 0 s: close with a reset (struct linger).
LINGER_RESET = struct.pack("ii", 1, 0)
# Peer handshake commands: all a connection let in on probation (the peer door) may run.
HANDSHAKE: Final = frozenset({b"gc.hello", b"gc.auth"})
# Replies leave once this many bytes are ready (bytes): small replies still leave in one
# write per batch; big ones leave as they are made, never joined into a batch's buffer.
FLUSH_BYTES: Final = 256 << 10
# The transport's high-water mark (bytes): above it the connection runs no commands until
# its client has read it down to a quarter. At most half of max_output_buffer_bytes.
PAUSE_BYTES: Final = 1 << 20
# Deferred replies one connection may wait on at once (its pipeline runs on meanwhile);
# past this it stops reading until the oldest is sent.
MAX_PENDING: Final = 256
# The latency histogram's bounds (metrics.py). These and the constants above that the
# command loop reads are Final: compiled, they are C statics, not a dict lookup each time.
BOUNDS_NS: Final = metrics.LATENCY_BOUNDS_NS
SUM_INDEX: Final = metrics.SUM_INDEX
FIRST_NS: Final = BOUNDS_NS[0]
# The clock of latency metrics, read per command: a C static too, not a globals lookup.
_now_ns: Final = perf_counter_ns
# Arguments beyond two per key a command may carry in cluster mode (its name, options).
ARGUMENT_SLACK = 16
# A deferred command with more arguments than this (a multi-key command in a cluster)
# is waited for before the connection's next command runs.
SERIAL_ARGS: Final = 64


class CommandGate:
    """At most `limit` client commands in progress at once, node-wide (0: no cap).

    In one event loop a command that runs straight to its reply overlaps nothing; the
    ones that overlap are those whose reply is deferred: forwarded to an owner, waiting
    for replicas, loading from the origin. So a slot is taken by a deferred reply until
    it is sent, and a connection about to start a command while every slot is taken
    stops reading and queues. A slot given up goes straight to the first connection
    queued (first come, first served: a connection with a long pipeline queues again
    behind the others after each deferred reply). With limit 1, the node runs one
    client command at a time. Peers' GC.* commands never wait: the commands holding
    the slots may be waiting on them.
    """

    __slots__ = ("in_flight", "limit", "waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.waiting: deque[Callable[[], None]] = deque()  # each admits one connection

    def release(self) -> None:
        """Give up a slot: to the first connection waiting, or back to the gate."""
        if self.waiting:
            asyncio.get_running_loop().call_soon(self.waiting.popleft())
        else:
            self.in_flight -= 1


class RespConnection(asyncio.Protocol):
    __slots__ = (
        "_fresh",
        "_held",
        "_held_bytes",
        "_node",
        "_out_wait",
        "_paused",
        "_pending",
        "_probation",
        "_reader",
        "_slot",
        "_table",
        "_transport",
        "_writing_paused",
        "accepted_ms",
        "is_peer",
        "session",
        "stalled_since_ms",
    )

    def __init__(self, node: Node) -> None:
        self._node = node
        self._table = node.table
        config = node.config
        self._reader: RequestReader | None = RequestReader(
            max_bulk_bytes=max(config.max_value_bytes, config.max_key_bytes),
            max_query_buffer_bytes=config.max_query_buffer_bytes,
            # Until AUTH, Redis's tighter limits (10 arguments, 16 KiB bulks) apply.
            auth_required=bool(config.requirepass),
            max_multibulk_len=max_arguments(config),
        )
        self._transport: asyncio.Transport | None = None
        self._paused = False
        # No byte read yet: the first is checked for a TLS handshake (a client that
        # took the plaintext port for the TLS one).
        self._fresh = True
        # CommandGate: whether this connection holds a slot, and the command it read
        # but could not start for want of one.
        self._slot = False
        self._held: list[bytes] | None = None
        # Replies not sent yet because one before them is deferred, in command order:
        # [ready, RESP bytes] (see _run).
        self._pending: deque[list[object]] = deque()
        self.session: Session | None = None
        # The doors (limits.py): let in by the peer budget and not proven yet; proven.
        self._probation = False
        self.is_peer = False
        self.accepted_ms = 0
        # Output: the transport is over its high-water mark (since when, ms; 0: not),
        # and the command loop stopped for it.
        self._writing_paused = False
        self.stalled_since_ms = 0
        self._out_wait = False
        # What this connection last reported to the node's client memory budget.
        self._held_bytes = 0

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        node = self._node
        node.stats.connections_received += 1
        peer = transport.get_extra_info("peername")
        door = node.door()
        if door is None:
            node.stats.rejected_connections += 1
            node.refusals.count(node.refused_reason(), _addr(peer))
            self._transport.write(MAX_CLIENTS_REACHED)
            self._transport.close()
            return
        self._probation = door == "peer"
        high = min(PAUSE_BYTES, max(node.config.max_output_buffer_bytes // 2, 1))
        self._transport.set_write_buffer_limits(high=high, low=high // 4)
        local = transport.get_extra_info("sockname")
        self.session = Session(node, node.next_client_id(), _addr(peer), _addr(local))
        self.session.channel_binding = auth.channel_binding(transport.get_extra_info("ssl_object"))
        self.accepted_ms = node.clock.mono_ms()
        node.register(self, peer=self._probation)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self._node.unregister(self)
            self.session.multi = None  # a queued transaction's commands go now
        # Everything this connection held goes now, not at the next full collection.
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._pending.clear()
        self._held = None
        self._transport = None
        self._release_slot()

    def data_received(self, data: bytes) -> None:
        if self.session is None or self._reader is None:
            return
        self._node.stats.net_input_bytes += len(data)
        if self._fresh:
            self._fresh = False
            if data[0] == HANDSHAKE_RECORD and self._transport is not None:
                self._refuse_tls()
                return
        try:
            self._reader.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        if not self._paused:
            self._run()
        if len(data) >= REPORT_READ_BYTES or self._held_bytes:
            self.report()  # small reads of a small buffer wait for the limits check

    def pause_writing(self) -> None:
        """Unsent replies passed the high-water mark: run no more commands for now."""
        self._writing_paused = True
        self.stalled_since_ms = self._node.clock.mono_ms()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.stalled_since_ms = 0
        if self._out_wait:
            self._out_wait = False
            self._run()
        self.report()

    # -- what it holds (limits.ClientBudget) ------------------------------------------

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    def measure(self) -> int:
        """Bytes held now: query buffer, unsent replies, queued replies, MULTI queue."""
        transport, reader, session = self._transport, self._reader, self.session
        held = reader.buffered_bytes() if reader is not None else 0
        if transport is not None:
            held += transport.get_write_buffer_size()
        for place in self._pending:
            held += len(place[1])  # type: ignore[arg-type]
        if session is not None and session.multi is not None:
            held += session.multi_bytes
        return held

    def report(self) -> None:
        """Tell the node's client memory budget what this connection holds now."""
        if self.is_peer or self._transport is None:
            return
        held = self.measure()
        delta, self._held_bytes = held - self._held_bytes, held
        if delta:
            self._node.client_memory_changed(delta)

    def evict(self, reason: str) -> None:
        """Close at once for a limit: counted, logged (rate-limited), told why if it can be."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        session = self.session
        node = self._node
        node.refusals.count(reason, session.addr if session else "?")
        if self._held_bytes:  # gone from the budget now, not when the loop calls back
            node.budget.change(-self._held_bytes)
            self._held_bytes = 0
        notice = CLOSED_FOR.get(reason)
        if notice is not None and transport.get_write_buffer_size() == 0:
            transport.write(notice)
            transport.close()
            return
        # A reset, not a close: the replies the kernel still buffers for it go too, and
        # the client learns it is cut off now, not after reading them at its pace.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        transport.abort()

    @property
    def on_probation(self) -> bool:
        return self._probation

    def needs_auth(self) -> bool:
        """Let in on probation and not proven, or not AUTHed while a password is set."""
        session = self.session
        if session is None:
            return False
        if self._probation:
            return not session.peer_id
        return not session.authenticated

    # -- the command loop ----------------------------------------------------------------

    def _run(self) -> None:
        """Run the buffered commands, up to max_pipeline, writing replies as they are made."""
        session, transport, reader = self.session, self._transport, self._reader
        if session is None or transport is None or reader is None:
            self._release_slot()
            return
        if self._writing_paused:
            self._release_slot()
            self._out_wait = True  # resume_writing runs the rest
            self._pause()
            return
        node, table, dispatch = self._node, self._table, self._node.dispatch
        # The usual path (standalone, no CLIENT PAUSE): called directly, compiled it is a
        # C call rather than one through a Python function object and its argument parsing.
        direct = dispatch is local_dispatch
        out: list[bytes] = []
        out_bytes = 0
        waiting: Deferred | None = None
        budget = node.config.max_pipeline
        done = 0
        # Per-command latency (parse + run + encode): plain ints, see metrics.py.
        latency = node.metrics.resp
        slots = latency.by_raw if node.metrics.resp_timed else None
        # The slow log's threshold; below `fast_ns` a command needs one comparison.
        slow_ns = node.slowlog.threshold_ns
        fast_ns = min(FIRST_NS, slow_ns - 1)
        start = _now_ns()
        auth_required = reader.auth_required
        gate = node.gate
        gated = gate.limit != 0 and not session.peer_id  # a bool: compiled, no truth test
        probation = self._probation
        pending = self._pending
        argv_held, self._held = self._held, None
        held_back = False
        try:
            while done < budget:
                argv = reader.gets() if argv_held is None else argv_held
                argv_held = None
                if argv is False:
                    break
                if probation and argv[0].lower() not in HANDSHAKE and not session.peer_id:
                    out.append(MAX_CLIENTS_REACHED)  # the peer door is for peers only
                    session.closing = True
                    break
                if (
                    gated
                    and not self._slot
                    and gate.in_flight >= gate.limit
                    and argv[0][:3].lower() != b"gc."  # a peer proving itself goes on
                ):
                    self._held = argv
                    gate.waiting.append(self._admit)
                    break
                done += 1
                try:
                    if direct:
                        reply = local_dispatch(table, session, argv)
                    else:
                        reply = dispatch(table, session, argv)
                except Exception as exc:  # a bug must cost one error reply, not the node
                    reply = self._handler_failed(argv, exc)
                if session.hold_ms:  # a wrong password: answered late, nothing read meanwhile
                    node.auth_failed(session)
                    reply = Deferred(_later(session.hold_ms / 1000, reply))
                    session.hold_ms = 0
                    if not pending:
                        waiting = reply
                        break
                    held_back = True  # behind deferred replies: queued in order below
                if type(reply) is Deferred:  # waits on other nodes: replies stay in order
                    if gated or len(argv) > SERIAL_ARGS:
                        # One command in progress on this connection (holding a slot
                        # when gated): a pipeline of MGETs of 10,000 keys each runs one
                        # at a time, not 256 at once.
                        waiting = reply
                        if gated and not self._slot:
                            self._slot = True
                            gate.in_flight += 1
                        break
                    # The next commands run meanwhile (their effects, in order, are
                    # local); their replies wait behind this one.
                    # [ready, RESP bytes, protocol to encode in (0: CLIENT REPLY
                    # silenced it when it ran)]
                    place: list[object] = [False, b"", _reply_proto(session)]
                    pending.append(place)
                    task = asyncio.ensure_future(reply.awaitable)
                    task.add_done_callback(partial(self._pending_done, place=place))
                    if len(pending) >= MAX_PENDING or held_back:
                        break
                    start = _now_ns()
                    continue
                if session.proto <= 0:  # CLIENT REPLY OFF or SKIP: nothing to send
                    if session.proto < 0:
                        session.proto = session.proto + 1 or session.reply_proto
                elif pending:
                    later: list[bytes] = []
                    encode_into(later, reply, session.proto)
                    pending.append([True, b"".join(later)])
                else:
                    mark = len(out)
                    encode_into(out, reply, session.proto)
                    if len(out) == mark + 1:  # most replies are one chunk
                        out_bytes += len(out[mark])
                    else:
                        out_bytes += sum(map(len, out[mark:]))
                    if out_bytes >= FLUSH_BYTES:
                        self._flush(out, out_bytes)
                        out, out_bytes = [], 0
                        if self._writing_paused or self._transport is None:
                            break
                if slots is not None:
                    end = _now_ns()
                    elapsed, start = end - start, end
                    try:
                        slot = slots[argv[0]]
                    except KeyError:
                        slot = latency.slot_for(argv[0])
                    # Most commands fit the first bucket: skip the bisect and the slow
                    # log for them. (`x[i] = x[i] + n`: compiled, an int add, where `+=`
                    # on an item goes through the generic number protocol.)
                    if elapsed <= fast_ns:
                        slot[0] = slot[0] + 1
                    else:
                        bucket = 0 if elapsed <= FIRST_NS else bisect_left(BOUNDS_NS, elapsed)
                        slot[bucket] = slot[bucket] + 1
                        if elapsed >= slow_ns:
                            node.slowlog.add(
                                argv, elapsed, node.clock.wall_ms(), session.addr, session.name
                            )
                    # Not [-1]: CPython specializes non-negative indexes.
                    slot[SUM_INDEX] = slot[SUM_INDEX] + elapsed
                if session.authenticated is auth_required:  # AUTH, HELLO or RESET ran
                    auth_required = not session.authenticated
                    reader.set_auth_required(auth_required)
                if session.closing:
                    break
        except ProtocolError as exc:
            self._flush(out, out_bytes)
            self._fail(exc)
            self._release_slot()
            return
        except Exception as exc:  # pragma: no cover - a bug in the loop itself
            log.error("command loop failed; closing the client", exc_info=exc)
            self._release_slot()
            transport.abort()
            return
        finally:
            node.stats.commands_processed += done
            session.last_ms = node.clock.mono_ms()
        if session.peer_id and not self.is_peer:
            self._become_peer()
        self._flush(out, out_bytes)
        if self._transport is None or transport.is_closing():
            self._release_slot()
            return
        if waiting is not None:
            self._wait_for(waiting)
            return
        self._release_slot()
        if self._held is not None:
            self._pause()  # until the gate admits it
        elif len(pending) >= MAX_PENDING or held_back:
            self._pause()  # until the oldest deferred reply is sent
        elif session.closing:
            if not pending:
                transport.close()  # else once the last pending reply is sent
        elif self._writing_paused:
            self._out_wait = True  # until the client reads its replies down
            self._pause()
        elif done >= budget:
            self._yield_turn()
        elif self._paused:
            self._paused = False
            transport.resume_reading()

    def _handler_failed(self, argv: list[bytes], exc: Exception) -> Error:
        node = self._node
        node.stats.handler_errors += 1
        name = argv[0][:64].decode("utf-8", "replace")
        log.error("command failed", extra={"command": name}, exc_info=exc)
        return Error(f"ERR internal error running '{name}' (logged)")

    def _become_peer(self) -> None:
        """This connection proved the cluster secret: it leaves the client door."""
        was_probation, self._probation = self._probation, False
        self.is_peer = True
        if self._reader is not None:  # a peer's batches are not bound by the key cap
            self._reader.set_max_multibulk_len(DEFAULT_MAX_MULTIBULK_LEN)
        if self._held_bytes:
            self._node.client_memory_changed(-self._held_bytes)
            self._held_bytes = 0
        self._node.promote(self, was_probation)

    def _admit(self) -> None:
        """The gate gave this connection a slot: run the command it holds."""
        self._slot = True
        self._run()

    def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            self._node.gate.release()

    def _pause(self) -> None:
        if self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def _wait_for(self, deferred: Deferred) -> None:
        """Stop reading until a deferred reply is ready, send it, then go on in order."""
        self._pause()
        task = asyncio.ensure_future(deferred.awaitable)
        task.add_done_callback(self._deferred_done)

    def _deferred_done(self, task: asyncio.Future[object]) -> None:
        self._release_slot()  # before anything: a closed connection must give it up too
        session = self.session
        if session is None or self._transport is None:
            if not task.cancelled():
                task.exception()
            return
        out: list[bytes] = []
        _encode_late(out, _outcome(task), session)
        self._flush(out, sum(len(b) for b in out))
        if session.closing:  # the reply was the last (AUTH failed too often in a row)
            self._transport.close()
            return
        self._run()
        self.report()

    def _pending_done(self, task: asyncio.Future[object], place: list[object]) -> None:
        """A deferred reply is ready: send it and the ready replies behind it, in order."""
        session, transport, pending = self.session, self._transport, self._pending
        if session is None or transport is None:
            if not task.cancelled():
                task.exception()
            return
        out: list[bytes] = []
        proto = place[2]
        assert isinstance(proto, int)
        if proto:
            encode_into(out, _outcome(task), proto)
        else:
            _outcome(task)  # consumed (and logged if it failed), not sent
        place[0], place[1] = True, b"".join(out)
        ready: list[bytes] = []
        size = 0
        while pending and pending[0][0]:
            data = pending.popleft()[1]
            assert isinstance(data, bytes)
            ready.append(data)
            size += len(data)
            if size >= FLUSH_BYTES:
                self._flush(ready, size)
                ready, size = [], 0
        self._flush(ready, size)
        self.report()
        if pending or self._transport is None:
            return
        if session.closing:
            transport.close()
        elif self._paused and self._held is None:
            self._run()  # the pipeline stopped at MAX_PENDING: go on

    def _yield_turn(self) -> None:
        """Let other clients run before the rest of this client's pipeline."""
        if self._transport is None:
            return
        self._pause()
        asyncio.get_running_loop().call_soon(self._run)

    def _flush(self, out: list[bytes], size: int) -> None:
        """Write `size` bytes of replies, unless they would take the unsent bytes past
        max_output_buffer_bytes: then close instead, before joining them into one buffer."""
        transport = self._transport
        if not out or transport is None or transport.is_closing():
            return
        node = self._node
        if size + transport.get_write_buffer_size() > node.config.max_output_buffer_bytes:
            node.stats.output_limit_disconnects += 1
            self.evict("output_buffer")
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        node.stats.net_output_bytes += len(data)
        transport.write(data)

    def _fail(self, exc: ProtocolError) -> None:
        """Answer a protocol error and close, as Redis does."""
        transport = self._transport
        self._node.stats.protocol_errors += 1
        if transport is not None and not transport.is_closing():
            message = str(exc).replace("\r", " ").replace("\n", " ")
            transport.write(b"-ERR " + message.encode("utf-8", "surrogateescape") + b"\r\n")
            transport.close()

    def _refuse_tls(self) -> None:
        """TLS sent to the plaintext port: one log line (rate-limited), then close."""
        node, transport = self._node, self._transport
        assert transport is not None and self.session is not None
        node.tls_counters.tls_on_plaintext += 1
        node.tls_log.warning(
            "tls-on-plaintext",
            "TLS handshake on the plaintext port refused",
            client=self.session.addr,
            tls_port=node.tls_port or "none",
        )
        transport.write(TLS_ON_PLAINTEXT)
        transport.close()

    def channel_binding(self) -> bytes:
        """This connection's TLS channel binding (tls.py: "tls-unique"); b"" if plaintext.
        What a peer's proof binds to, so it is worthless on any other connection."""
        return channel_binding(self._transport)

    def close(self) -> None:
        """Close after the replies already queued are sent (graceful shutdown)."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


async def _later(delay_s: float, reply: object) -> object:
    await asyncio.sleep(delay_s)
    return reply


def _encode_late(out: list[bytes], reply: object, session: Session) -> None:
    """A deferred reply's bytes (nothing ran meanwhile), unless CLIENT REPLY silences it."""
    proto = _reply_proto(session)
    if proto:
        encode_into(out, reply, proto)


def _reply_proto(session: Session) -> int:
    """The protocol this command's reply goes out in, 0 for none (CLIENT REPLY OFF or
    SKIP, which this steps past)."""
    proto = session.proto
    if proto < 0:
        session.proto = proto + 1 or session.reply_proto
    return max(proto, 0)


def max_arguments(config: NodeConfig) -> int:
    """The most arguments a client's command may carry. In cluster mode, with a key cap:
    two per key (MSET) and some room; a command past that is refused as soon as its
    header arrives (a protocol error, as Redis refuses an oversize multibulk), before
    its arguments cost any parsing. Elsewhere, Redis's 1M."""
    cap = config.max_keys_per_command
    if config.clustered and cap:
        return min(2 * cap + ARGUMENT_SLACK, DEFAULT_MAX_MULTIBULK_LEN)
    return DEFAULT_MAX_MULTIBULK_LEN


def _outcome(task: asyncio.Future[object]) -> object:
    """A deferred command's reply: its result, or an error reply saying what went wrong."""
    if task.cancelled():
        return Error("ERR request cancelled")
    exc = task.exception()
    if exc is not None:
        log.warning("deferred reply failed", exc_info=exc)
        return Error(f"ERR {exc}")
    return task.result()


def _addr(info: object) -> str:
    if isinstance(info, tuple) and len(info) >= 2:
        host, port = info[0], info[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(info or "")
