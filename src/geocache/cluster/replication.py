"""Replication in a region: a coordinator's writes to their other owners, a batch a peer.

The writes coordinated in one event-loop turn for the same owner leave together, as one
`GC.APPLYBATCH` request (six fields a record, as GC.GEO carries them: records.py),
answered with one reply: the number of records when each was taken (applied, or
already superseded there), else one reply per record (1 or 0, or the error that refused
it). A peer then costs one request, one reply, one future and one timer a batch, not
a write (`PeerClient.request`: no task or coroutine), and a batch's records are
RESP-encoded once, straight into the request (their values referenced, not copied)
that the peer connection joins with the rest of its turn.

Bounds. A batch is open for the rest of the loop turn and holds at most BATCH_RECORDS
records and BATCH_BYTES bytes: a write that would take it past either seals it (it
leaves at once) and opens the next (a single record larger than BATCH_BYTES goes
alone). Sent batches not answered yet are bounded per owner too (MAX_IN_FLIGHT_RECORDS,
MAX_IN_FLIGHT_BYTES): past them a batch fails at once, as a peer that does not read
fails its requests (peers.py), and its records become bounded hints.

Acknowledgements, exactly as with one request per write. Each `replicate` call (one
command's writes) waits on a `Quorum`; its writes for one owner are a `Shipment`, which
may span batches when a bound cut them. A shipment succeeds once every batch carrying it
is answered with none of its records refused. The quorum answers `reply` once `need`
shipments succeeded; a shipment that failed to an owner known to be down (its
connection failed, or it stopped answering) leaves the quorum instead; NOREPLICAS when
every shipment is done and too few succeeded. The records of a batch that failed (no
answer within PEER_TIMEOUT_MS, the connection lost, an error reply) or that a peer
refused one by one are kept as hints for that owner (hints.py), replayed when it is back.

Nothing here touches the store: the coordinator wrote before `replicate` was called.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from geocache.clock import Clock
from geocache.cluster.hints import Hints
from geocache.cluster.journal import Write
from geocache.cluster.peers import PeerError, Peers
from geocache.cluster.records import GEO_FIELDS, encode_fields
from geocache.commands.context import Deferred
from geocache.protocol.types import Error

log = logging.getLogger("geocache.cluster")

# The batch bounds. 512 records: the region streams' batch (streams.py), a few ms of
# applying at the peer, so one batch never holds its event loop long. 1 MiB: a batch of
# large values still leaves in a few writes and is applied in a few ms.
BATCH_RECORDS = 512
BATCH_BYTES = 1 << 20
# Sent and not yet answered, per owner: past this a batch fails at once and becomes
# hints (a peer that stalls must not make this node hold its writes without end).
# 64 MiB and 100,000 records: peers.MAX_UNSENT_BYTES and peers.MAX_IN_FLIGHT.
MAX_IN_FLIGHT_BYTES = 64 << 20
MAX_IN_FLIGHT_RECORDS = 100_000
# What a record costs in a batch beyond its key and value: its other fields, the RESP
# headers of all six and the lists' slots, bytes.
RECORD_OVERHEAD_BYTES = 128
NOREPLICAS = Error("NOREPLICAS Not enough good replicas to write.")
COMMAND = b"GC.APPLYBATCH"
_HEAD = b"$%d\r\n%s\r\n" % (len(COMMAND), COMMAND)


class ReplicationView(Protocol):
    """What replication sees of its cluster (cluster.Cluster satisfies it)."""

    @property
    def node_id(self) -> str: ...

    @property
    def peers(self) -> Peers: ...

    @property
    def hints(self) -> Hints: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def stats(self) -> dict[str, int]: ...

    def owners(self, key: bytes) -> list[str]: ...

    def known_down(self, node_id: str) -> bool: ...

    def required_acks(self, owners: int) -> int: ...

    def addr_of(self, node_id: str) -> str | None: ...


@dataclass(slots=True, eq=False)
class Quorum:
    """The acknowledgements one command's writes wait for; `future` gets the reply."""

    future: asyncio.Future[object]
    reply: object
    need: int
    waiting: int  # shipments not done yet
    acked: int = 0

    def report(self, ok: bool, down: bool) -> None:
        """One shipment done: `ok` if its owner took every write; `down`: that owner is
        known down (it then leaves the quorum, its writes kept as hints)."""
        self.waiting -= 1
        if self.future.done():
            return  # answered already, or the client went away
        if ok:
            self.acked += 1
        elif down:
            self.need -= 1
        if self.acked >= self.need:
            self.future.set_result(self.reply)
        elif not self.waiting:
            self.future.set_result(NOREPLICAS)


@dataclass(slots=True, eq=False)
class Shipment:
    """One command's writes for one owner, maybe across batches."""

    target: str
    quorum: Quorum | None
    parts: int = 0  # batches carrying some of its writes, not answered yet
    ok: bool = True


@dataclass(slots=True, eq=False)
class Batch:
    """Records for one owner: their RESP chunks, after a slot for the request's header."""

    chunks: list[bytes] = field(default_factory=lambda: [b""])
    writes: list[Write] = field(default_factory=list)
    carriers: list[Shipment] = field(default_factory=list)  # the shipment of each record
    size: int = 0

    def fits(self, cost: int) -> bool:
        """Whether a record of `cost` bytes keeps the batch in its bounds (the first
        record always does)."""
        writes = self.writes
        return not writes or (len(writes) < BATCH_RECORDS and self.size + cost <= BATCH_BYTES)

    def add(self, write: Write, cost: int, shipment: Shipment) -> None:
        if not self.carriers or self.carriers[-1] is not shipment:
            shipment.parts += 1
        encode_fields(self.chunks, *write)
        self.size += cost
        self.writes.append(write)
        self.carriers.append(shipment)

    def request(self) -> list[bytes]:
        """The GC.APPLYBATCH request, its header in the slot kept for it."""
        self.chunks[0] = b"*%d\r\n%s" % (1 + GEO_FIELDS * len(self.writes), _HEAD)
        return self.chunks


def record_bytes(write: Write) -> int:
    """What a record counts for in a batch's bytes bound."""
    key, record = write
    value = record[0]
    return len(key) + (len(value) if isinstance(value, bytes) else 0) + RECORD_OVERHEAD_BYTES


def failed_records(answer: object, count: int) -> list[int]:
    """The positions of a batch's records that a peer did not take, from its answer (an
    integer: all taken; a list: one reply per record; anything else: none taken)."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        return []
    if isinstance(answer, list) and len(answer) == count:
        return [i for i, r in enumerate(answer) if isinstance(r, Error)]
    return list(range(count))


class Replicator:
    """Ships the coordinator's writes to their other owners in batches; see the module."""

    def __init__(self, cluster: ReplicationView, timeout_ms: int) -> None:
        """`timeout_ms`: how long a peer has to answer a batch before it counts as failed."""
        self._cluster = cluster
        self._timeout_ms = timeout_ms
        self._open: dict[str, Batch] = {}
        self._flush_scheduled = False
        # Per owner: [records, bytes] sent and not answered yet.
        self._in_flight: dict[str, list[int]] = {}

    def replicate(self, writes: list[Write], reply: object) -> object:
        """Queue writes for their other owners: `reply` at once when no other owner needs
        to acknowledge them (a lone owner, write_acks=one), else a `Deferred` answering
        `reply` once enough have applied them (NOREPLICAS if too few could)."""
        cluster = self._cluster
        me = cluster.node_id
        by_target: dict[str, list[Write]] = {}
        need = 0
        down: dict[str, bool] = {}  # known_down, asked once an owner a command
        for write in writes:
            owners = cluster.owners(write[0])
            reachable = 0
            for owner in owners:
                is_down = down.get(owner)
                if is_down is None:
                    is_down = down[owner] = cluster.known_down(owner)
                reachable += not is_down
            need = max(need, cluster.required_acks(reachable or 1) - 1)
            for owner in owners:
                if owner != me:
                    by_target.setdefault(owner, []).append(write)
        if not by_target:
            return reply
        # Asked once: get_running_loop costs a getpid system call on Python 3.11.
        loop = asyncio.get_running_loop()
        quorum: Quorum | None = None
        if need > 0:
            quorum = Quorum(loop.create_future(), reply, need, len(by_target))
        for target, shipped in by_target.items():
            self._queue(Shipment(target, quorum), shipped)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return reply if quorum is None else Deferred(quorum.future)

    def _queue(self, shipment: Shipment, writes: list[Write]) -> None:
        target = shipment.target
        batch = self._open.get(target)
        if batch is None:
            batch = self._open[target] = Batch()
        for write in writes:
            cost = record_bytes(write)
            if not batch.fits(cost):
                self._send(target, batch)
                batch = self._open[target] = Batch()
            batch.add(write, cost, shipment)

    def _flush(self) -> None:
        """The loop turn is over: every open batch leaves."""
        self._flush_scheduled = False
        batches, self._open = self._open, {}
        for target, batch in batches.items():
            self._send(target, batch)

    def _send(self, target: str, batch: Batch) -> None:
        in_flight = self._in_flight.setdefault(target, [0, 0])
        if (
            in_flight[0] + len(batch.writes) > MAX_IN_FLIGHT_RECORDS
            or in_flight[1] + batch.size > MAX_IN_FLIGHT_BYTES
        ):
            self._answered(target, batch, PeerError(f"{target}: too much replication in flight"))
            return
        in_flight[0] += len(batch.writes)
        in_flight[1] += batch.size
        addr = self._cluster.addr_of(target)
        done = partial(self._delivered, target, batch)
        if addr is None:
            asyncio.get_running_loop().call_soon(done, PeerError(f"{target}: no address"))
        else:
            peer = self._cluster.peers.get(addr)
            peer.request(batch.request(), self._timeout_ms, done)

    def _delivered(self, target: str, batch: Batch, answer: object) -> None:
        """A batch's answer came (or the PeerError that stands for it)."""
        in_flight = self._in_flight[target]
        in_flight[0] -= len(batch.writes)
        in_flight[1] -= batch.size
        self._answered(target, batch, answer)

    def _answered(self, target: str, batch: Batch, answer: object) -> None:
        """A batch's answer (or the PeerError that stood for it): hints for the records
        not taken, then each shipment it carried is done with this part."""
        cluster = self._cluster
        failed = failed_records(answer, len(batch.writes))
        if failed:
            log.debug("replica missed writes", extra={"peer": target, "error": str(answer)})
            writes, carriers = batch.writes, batch.carriers
            cluster.hints.add(target, [writes[i] for i in failed], cluster.clock.wall_ms())
            for i in failed:
                carriers[i].ok = False
        cluster.stats["replicated"] += len(batch.writes) - len(failed)
        down: bool | None = None  # asked once a batch, and only if a shipment failed
        for shipment in dict.fromkeys(batch.carriers):
            shipment.parts -= 1
            if shipment.parts:
                continue  # another batch carries more of its writes
            if not shipment.ok:
                cluster.stats["replica_failures"] += 1
                if down is None:
                    down = cluster.known_down(target)
            if shipment.quorum is not None:
                shipment.quorum.report(shipment.ok, bool(down) and not shipment.ok)
