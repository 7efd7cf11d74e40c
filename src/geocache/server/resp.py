"""The RESP front end: one `asyncio.Protocol` per client connection.

The hot path, as asyncpg and Redis do it: `data_received` feeds the bytes to the
sans-IO reader, runs every complete command in order, and writes all the replies with
one `transport.write` per batch. Nothing awaits, so a command's read and write of the
store are atomic with respect to every other client.

Limits (DESIGN.md section 10), each cutting off only the offending client:
- the reader bounds one command's size and the bytes buffered for it;
- after `max_pipeline` commands the connection stops reading and yields to others,
  resuming on the next loop iteration (fairness, and it bounds one batch's replies);
- replies queued beyond `max_output_buffer_bytes` (a client that sends but does not
  read) close the connection;
- `max_concurrent_commands` caps client commands in progress node-wide (CommandGate);
- a reply the command asked to hold (`session.hold_ms`: a wrong password) is sent that
  much later, and the connection reads nothing more meanwhile (the AUTH tarpit).
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from functools import partial
from time import perf_counter_ns
from typing import TYPE_CHECKING, cast

from geocache import auth
from geocache.commands.context import Deferred, Session
from geocache.observability.metrics import LATENCY_BOUNDS_NS as BOUNDS_NS
from geocache.observability.metrics import SUM_INDEX
from geocache.protocol.reader import ProtocolError, RequestReader
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_into
from geocache.tls import HANDSHAKE_RECORD, channel_binding

if TYPE_CHECKING:
    from geocache.server.node import Node

log = logging.getLogger("geocache.resp")

MAX_CLIENTS_REACHED = b"-ERR max number of clients reached\r\n"
# A TLS ClientHello on the plaintext port: the client expects TLS, so any answer reads
# to it as a bad record; this one at least says it to whoever captures the traffic.
TLS_ON_PLAINTEXT = b"-ERR this port speaks plaintext RESP, not TLS\r\n"
# Deferred replies one connection may wait on at once (its pipeline runs on meanwhile);
# past this it stops reading until the oldest is sent.
MAX_PENDING = 256
FIRST_NS = BOUNDS_NS[0]


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
        "_node",
        "_paused",
        "_pending",
        "_reader",
        "_slot",
        "_table",
        "_transport",
        "session",
    )

    def __init__(self, node: Node) -> None:
        self._node = node
        self._table = node.table
        config = node.config
        self._reader = RequestReader(
            max_bulk_bytes=max(config.max_value_bytes, config.max_key_bytes),
            max_query_buffer_bytes=config.max_query_buffer_bytes,
            # Until AUTH, Redis's tighter limits (10 arguments, 16 KiB bulks) apply.
            auth_required=bool(config.requirepass),
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

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        node = self._node
        node.stats.connections_received += 1
        if node.connection_count() >= node.config.max_clients:
            node.stats.rejected_connections += 1
            self._transport.write(MAX_CLIENTS_REACHED)
            self._transport.close()
            return
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.session = Session(node, node.next_client_id(), _addr(peer), _addr(local))
        self.session.channel_binding = auth.channel_binding(transport.get_extra_info("ssl_object"))
        node.register(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self._node.unregister(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self.session is None:
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

    # -- the command loop ----------------------------------------------------------------

    def _run(self) -> None:
        """Run the buffered commands, up to max_pipeline, and write their replies once."""
        session, transport, reader = self.session, self._transport, self._reader
        if session is None or transport is None:
            self._release_slot()
            return
        node, table, dispatch = self._node, self._table, self._node.dispatch
        out: list[bytes] = []
        waiting: Deferred | None = None
        budget = node.config.max_pipeline
        done = 0
        # Per-command latency (parse + run + encode): plain ints, see metrics.py.
        latency = node.metrics.resp
        slots = latency.by_raw if node.metrics.resp_timed else None
        # The slow log's threshold; below `fast_ns` a command needs one comparison.
        slow_ns = node.slowlog.threshold_ns
        fast_ns = min(FIRST_NS, slow_ns - 1)
        start = perf_counter_ns()
        auth_required = reader.auth_required
        gate = node.gate
        gated = gate.limit and not session.peer_id
        pending = self._pending
        argv_held, self._held = self._held, None
        held_back = False
        try:
            while done < budget:
                argv = reader.gets() if argv_held is None else argv_held
                argv_held = None
                if argv is False:
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
                reply = dispatch(table, session, argv)
                if session.hold_ms:  # a wrong password: answered late, nothing read meanwhile
                    node.auth_failed(session)
                    reply = Deferred(_later(session.hold_ms / 1000, reply))
                    session.hold_ms = 0
                    if not pending:
                        waiting = reply
                        break
                    held_back = True  # behind deferred replies: queued in order below
                if type(reply) is Deferred:  # waits on other nodes: replies stay in order
                    if gated:  # one command in progress per connection, holding a slot
                        waiting = reply
                        if not self._slot:
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
                    start = perf_counter_ns()
                    continue
                if session.proto <= 0:  # CLIENT REPLY OFF or SKIP: nothing to send
                    if session.proto < 0:
                        session.proto = session.proto + 1 or session.reply_proto
                elif pending:
                    later: list[bytes] = []
                    encode_into(later, reply, session.proto)
                    pending.append([True, b"".join(later)])
                else:
                    encode_into(out, reply, session.proto)
                if slots is not None:
                    end = perf_counter_ns()
                    elapsed, start = end - start, end
                    try:
                        slot = slots[argv[0]]
                    except KeyError:
                        slot = latency.slot_for(argv[0])
                    # Most commands fit the first bucket: skip the bisect and the slow
                    # log for them.
                    if elapsed <= fast_ns:
                        slot[0] += 1
                    else:
                        slot[0 if elapsed <= FIRST_NS else bisect_left(BOUNDS_NS, elapsed)] += 1
                        if elapsed >= slow_ns:
                            node.slowlog.add(
                                argv, elapsed, node.clock.wall_ms(), session.addr, session.name
                            )
                    slot[SUM_INDEX] += elapsed  # not [-1]: CPython specializes non-negative indexes
                if session.authenticated is auth_required:  # AUTH, HELLO or RESET ran
                    auth_required = not session.authenticated
                    reader.set_auth_required(auth_required)
                if session.closing:
                    break
        except ProtocolError as exc:
            self._flush(out)
            self._fail(exc)
            self._release_slot()
            return
        finally:
            node.stats.commands_processed += done
            session.last_ms = node.clock.mono_ms()
        self._flush(out)
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
        elif done >= budget:
            self._yield_turn()
        elif self._paused:
            self._paused = False
            transport.resume_reading()

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
        self._flush(out)
        if session.closing:  # the reply was the last (AUTH failed too often in a row)
            self._transport.close()
            return
        self._run()

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
        while pending and pending[0][0]:
            data = pending.popleft()[1]
            assert isinstance(data, bytes)
            ready.append(data)
        self._flush(ready)
        if pending:
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

    def _flush(self, out: list[bytes]) -> None:
        transport = self._transport
        if not out or transport is None or transport.is_closing():
            return
        data = b"".join(out)
        self._node.stats.net_output_bytes += len(data)
        transport.write(data)
        if transport.get_write_buffer_size() > self._node.config.max_output_buffer_bytes:
            self._node.stats.output_limit_disconnects += 1
            log.warning(
                "closing client over its output buffer limit",
                extra={"client": self.session.addr if self.session else "?"},
            )
            transport.abort()

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
