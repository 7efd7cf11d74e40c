"""Region streams alone: real RegionStreams and Peers over scripted peers, virtual time.

The fake cluster view (`FakeCluster`, a `StreamsView`) lists the members of each
region and their addresses; the remote region's nodes are `FakePeer`s answering GC.GEO
with their wall clock, so batching, coalescing, retries, resyncs and the lag measured
from the gateway's answer all play out on `VirtualTimeLoop`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from geocache.clock import ManualClock, make_version
from geocache.cluster import records
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.peers import Dial, Peers
from geocache.cluster.streams import (
    BATCH_MAX,
    FIELDS_PER_RECORD,
    FLUSH_MS,
    RTT_PROBE_S,
    RegionStreams,
    decode_batch,
)
from geocache.cluster.swim_messages import Member, MemberState
from geocache.config import NodeConfig
from geocache.fill import Filler
from geocache.protocol.types import OK, Error
from geocache.store.entry import Entry, Tombstone, is_tombstone
from geocache.store.tombstones import Tombstones
from sim.fakes import FakePeer
from sim.loop import WALL_EPOCH_MS, VirtualTimeLoop

T = TypeVar("T")
SECRET = "secret"
ME = "eu-1"


@dataclass
class Host:
    config: NodeConfig
    origin: Filler | None = None


@dataclass
class Repairs:
    requested: list[tuple[str, bool]] = field(default_factory=list)

    def request(self, peer_id: str, copy_missing: bool = False) -> None:
        self.requested.append((peer_id, copy_missing))


class FakeCluster:
    """A StreamsView: this node `eu-1` in region eu, and the members given."""

    def __init__(self, members: dict[str, list[str]], **settings: Any) -> None:
        self.node_id = ME
        self.region = "eu"
        self.replicas = 2
        self.host = Host(NodeConfig(node_id=ME, region="eu", **settings))
        self.clock = ManualClock(wall_ms=WALL_EPOCH_MS)
        self.store = JournaledStore(self.clock, node_id=ME, tombstones=Tombstones())
        self.repairer = Repairs()
        self.members = members
        self.fakes = {f"{n}:1": FakePeer(SECRET) for ids in members.values() for n in ids}
        self.peers = Peers(ME, SECRET, dial=self._dial)
        self.down: set[str] = set()
        self.shipped: list[tuple[str, list[Write]]] = []
        self.key_owners: list[str] = [ME]
        self.refused: list[tuple[str, bytes, str]] = []

    def _dial(self, addr: str) -> Dial:
        return self.fakes[addr].dial

    def fake(self, node_id: str) -> FakePeer:
        return self.fakes[f"{node_id}:1"]

    def owners(self, key: bytes) -> list[str]:
        return self.key_owners

    def addr_of(self, node_id: str) -> str | None:
        return f"{node_id}:1"

    def known_down(self, node_id: str) -> bool:
        return node_id in self.down

    def region_members(self, region: str) -> list[str]:
        return self.members.get(region, [])

    def known_regions(self) -> list[str]:
        return sorted(self.members)

    async def ship_to(self, target: str, writes: list[Write]) -> tuple[str, bool]:
        self.shipped.append((target, writes))
        return target, True

    def version_refused(self, exc: Exception, peer_id: str, key: bytes, via: str) -> Error:
        self.refused.append((peer_id, key, via))
        return Error(str(exc))

    def apply_fetched(self, key: bytes, reply: object) -> bool:
        if isinstance(reply, list) and len(reply) == 4:
            value, expires, version, origin = reply
            self.store.apply(key, (bytes(value), int(expires), int(version), origin.decode()))
        return self.store.peek(key) is not None


def run(main: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop(limit_s=120)
    try:
        result = loop.run_until_complete(main)
        assert loop.errors == [], loop.errors
        return result
    finally:
        loop.close()


def gateway(applied_at_ms: int) -> Callable[[list[bytes]], object]:
    """A remote node: GC.GEO answered with its wall clock, PING with PONG."""

    def answer(argv: list[bytes]) -> object:
        return applied_at_ms if argv[0] == b"GC.GEO" else OK

    return answer


def see_region(streams: RegionStreams, region: str, node_id: str) -> None:
    member = Member(node_id, f"{node_id}:1", region, MemberState.ALIVE, 0)
    streams.on_changes([(None, member)])


def write(key: bytes, value: bytes, at_ms: int, n: int = 0) -> Write:
    return (key, (value, 0, make_version(at_ms, n), ME))


def geo_batches(peer: FakePeer) -> list[list[Write]]:
    """The GC.GEO batches a fake peer received, decoded."""
    return [decode_batch(r.argv[2:]) for r in peer.received if r.argv[0] == b"GC.GEO"]


def test_writes_coalesce_per_key_and_leave_in_one_batch_to_a_gateway() -> None:
    cluster = FakeCluster({"eu": [ME], "us": ["us-1"]})
    cluster.fake("us-1").handler = gateway(WALL_EPOCH_MS + 70)

    async def main() -> None:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        streams.ship([write(b"a", b"1", WALL_EPOCH_MS, 1), write(b"b", b"1", WALL_EPOCH_MS, 2)])
        streams.ship([write(b"a", b"2", WALL_EPOCH_MS, 3)])
        await asyncio.sleep(0.1)
        status = streams.status()["us"]
        assert status["coalesced"] == 1 and status["acked"] == 2 and status["queued"] == 0
        assert status["lag_ms"] == 70  # the gateway's clock less the version's time
        await streams.stop()

    run(main())
    (batch,) = geo_batches(cluster.fake("us-1"))
    assert [(k, r[0]) for k, r in batch] == [(b"a", b"2"), (b"b", b"1")]
    (geo,) = [r for r in cluster.fake("us-1").received if r.argv[0] == b"GC.GEO"]
    assert geo.argv[1] == b"eu" and len(geo.argv[2:]) == 2 * FIELDS_PER_RECORD


def test_a_batch_waits_for_the_flush_interval_unless_it_is_full() -> None:
    cluster = FakeCluster({"eu": [ME], "us": ["us-1"]})
    cluster.fake("us-1").handler = gateway(WALL_EPOCH_MS)

    async def main() -> None:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        # Its first RTT probe (at its first wake-up) opened the connection; the next
        # periodic wake-up is not due before the flush.
        await asyncio.sleep(RTT_PROBE_S * 0.3)
        streams.ship([write(b"k", b"v", WALL_EPOCH_MS)])
        await asyncio.sleep(FLUSH_MS / 1000 / 2)
        assert geo_batches(cluster.fake("us-1")) == []
        await asyncio.sleep(FLUSH_MS / 1000)
        assert len(geo_batches(cluster.fake("us-1"))) == 1
        streams.ship([write(b"%d" % i, b"v", WALL_EPOCH_MS) for i in range(BATCH_MAX)])
        await asyncio.sleep(0.002)  # a round trip, not a flush interval
        assert [len(b) for b in geo_batches(cluster.fake("us-1"))] == [1, BATCH_MAX]
        await streams.stop()

    run(main())


def test_a_failed_batch_is_queued_again_and_sent_after_a_backoff() -> None:
    cluster = FakeCluster({"eu": [ME], "us": ["us-1"]})
    us1 = cluster.fake("us-1")
    us1.handler = lambda argv: Error("ERR not now") if argv[0] == b"GC.GEO" else OK

    async def main() -> None:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        streams.ship([write(b"k", b"v", WALL_EPOCH_MS)])
        await asyncio.sleep(0.02)
        status = streams.status()["us"]
        assert status["failures"] >= 1 and status["queued"] == 1 and status["acked"] == 0
        us1.handler = gateway(WALL_EPOCH_MS)
        await asyncio.sleep(RTT_PROBE_S)  # its backoff, then the next wake-up
        status = streams.status()["us"]
        assert status["acked"] == 1 and status["queued"] == 0
        await streams.stop()

    run(main())


def test_a_gateway_known_down_goes_last() -> None:
    cluster = FakeCluster({"eu": [ME], "us": ["us-1", "us-2"]})
    for node in ("us-1", "us-2"):
        cluster.fake(node).handler = gateway(WALL_EPOCH_MS)

    async def main() -> None:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        stream = streams.streams["us"]
        first = stream.gateways()[0]
        cluster.down.add(first)
        assert stream.gateways()[-1] == first
        streams.ship([write(b"k", b"v", WALL_EPOCH_MS)])
        await asyncio.sleep(0.05)
        assert geo_batches(cluster.fake(first)) == []
        await streams.stop()

    run(main())


def test_an_overflowing_queue_resyncs_through_repair_once_the_region_answers() -> None:
    cluster = FakeCluster({"eu": [ME], "us": ["us-1", "us-2"]}, geo_queue_max=2)
    for node in ("us-1", "us-2"):
        cluster.fake(node).refuse = True

    async def main() -> None:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        streams.ship([write(b"%d" % i, b"v", WALL_EPOCH_MS) for i in range(3)])
        stream = streams.streams["us"]
        assert stream.resync and stream.queued == 0
        for node in ("us-1", "us-2"):
            cluster.fake(node).refuse = False
            cluster.fake(node).handler = gateway(WALL_EPOCH_MS)
        await asyncio.sleep(1.0)
        assert not stream.resync and streams.status()["us"]["resyncs"] == 1
        await streams.stop()

    run(main())
    # Each remote member was asked to pull from this node, and this node pulls from each.
    for node in ("us-1", "us-2"):
        repairs = [r.argv for r in cluster.fake(node).received if r.argv[0] == b"GC.REPAIR"]
        assert repairs == [[b"GC.REPAIR", b"1"]]
    assert sorted(cluster.repairer.requested) == [("us-1", True), ("us-2", True)]


def test_a_queue_over_its_byte_bound_resyncs_and_batches_are_bounded_in_bytes() -> None:
    cluster = FakeCluster({"eu": [ME], "us": ["us-1"]}, max_hint_bytes=3 << 20)
    cluster.fake("us-1").refuse = True

    async def main() -> None:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        stream = streams.streams["us"]
        streams.ship([write(b"a", b"v" * (1 << 20), WALL_EPOCH_MS)])
        streams.ship([write(b"a", b"w" * (2 << 20), WALL_EPOCH_MS, 1)])  # coalesced
        assert not stream.resync and streams.status()["us"]["queued_bytes"] > 2 << 20
        streams.ship([write(b"b", b"v" * (2 << 20), WALL_EPOCH_MS)])
        assert stream.resync and stream.queued == 0
        assert streams.status()["us"]["queued_bytes"] == 0
        for i in range(6):  # 6 MB queued under a 64 MB bound: batches of at most 4 MB
            stream.parent.queue_max_bytes = 64 << 20
            stream.put(write(b"k%d" % i, b"v" * (1 << 20), WALL_EPOCH_MS))
        assert [len(stream._take_batch()) for _ in range(2)] == [3, 3]
        await streams.stop()

    run(main())


def test_a_member_of_this_region_dying_marks_every_stream_for_resync() -> None:
    cluster = FakeCluster({"eu": [ME, "eu-2"], "us": ["us-1"]})

    async def main() -> None:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        alive = Member("eu-2", "eu-2:1", "eu", MemberState.ALIVE, 0)
        dead = Member("eu-2", "eu-2:1", "eu", MemberState.DEAD, 0)
        streams.on_changes([(alive, dead)])
        assert streams.streams["us"].resync
        await streams.stop()

    run(main())


def test_the_gateway_applies_a_batch_at_its_regions_owners_and_answers_its_clock() -> None:
    cluster = FakeCluster({"eu": [ME, "eu-2"]})
    cluster.key_owners = [ME, "eu-2"]
    batch = [
        write(b"k", b"v", WALL_EPOCH_MS, 1),
        (b"gone", (make_version(WALL_EPOCH_MS, 2), "us-1", 0)),
    ]

    async def main() -> int:
        return await RegionStreams(cluster).receive(batch)

    assert run(main()) == cluster.clock.wall_ms()
    assert cluster.store.peek(b"k") is not None
    assert cluster.store.version_of(b"gone") is not None  # a tombstone
    assert cluster.shipped == [("eu-2", batch)]


def test_the_gateway_refuses_records_from_the_far_future_and_applies_the_rest() -> None:
    cluster = FakeCluster({"eu": [ME, "eu-2"]})
    cluster.key_owners = [ME, "eu-2"]
    good = write(b"k", b"v", WALL_EPOCH_MS, 1)
    batch = [
        write(b"poison", b"x", WALL_EPOCH_MS + 61_000),  # past the 60 s bound
        (b"gone", ((1 << 64) - 1, "us-1", 0)),
        good,
    ]

    async def main() -> int:
        return await RegionStreams(cluster).receive(batch, "us-1")

    run(main())
    assert cluster.store.peek(b"k") is not None
    assert cluster.store.version_of(b"poison") is None and cluster.store.version_of(b"gone") is None
    assert cluster.shipped == [("eu-2", [good])]  # nor sent on to the other owners
    assert cluster.refused == [("us-1", b"poison", "GC.GEO"), ("us-1", b"gone", "GC.GEO")]
    assert cluster.store.versions_refused == 2
    assert cluster.store.hlc.last < make_version(WALL_EPOCH_MS + 1)


def test_a_remote_read_asks_the_nearest_regions_owners_and_keeps_what_they_hold() -> None:
    cluster = FakeCluster({"eu": [ME], "us": ["us-1"], "ap": ["ap-1"]})
    version = make_version(WALL_EPOCH_MS, 1)
    for node in ("us-1", "ap-1"):
        cluster.fake(node).handler = lambda argv: (
            [b"v", 0, version, b"us-1"] if argv[0] == b"GC.FETCH" else OK
        )
    cluster.fake("ap-1").delay_s = 0.05  # farther away

    async def main() -> bool:
        streams = RegionStreams(cluster)
        see_region(streams, "us", "us-1")
        see_region(streams, "ap", "ap-1")
        await asyncio.sleep(0.5)  # both streams measured their round trip
        found = await streams.read_remote(b"k")
        await streams.stop()
        return found

    assert run(main())
    assert cluster.store.peek(b"k") is not None
    fetches = {
        n: [r.argv for r in cluster.fake(n).received if r.argv[0] == b"GC.FETCH"]
        for n in ("us-1", "ap-1")
    }
    assert fetches == {"us-1": [[b"GC.FETCH", b"k"]], "ap-1": []}


# -- records on the wire (records.py) -----------------------------------------------------------

SHAPES: list[Entry | Tombstone] = [
    (b"v", 0, 7, "eu-1"),  # one version for both registers
    (b"v", 1_700_000_060_000, 7, "eu-1", 9, "us 1"),  # an expiry written apart
    (b"", 0, 7, "eu-1", 9, "us-1"),  # PERSIST after the write
    (7, "eu-1", 0),  # a delete
    (7, "eu-1", 0, 1_700_000_060_000, 9, "us-1"),  # a delete and a newer EXPIRE
    (7, "eu-1", 0, 1_700_000_000_000, 7, "eu-1"),  # an entry expired and reclaimed
]


@pytest.mark.parametrize("record", SHAPES, ids=str)
def test_every_record_shape_crosses_every_wire_form_unchanged(
    record: Entry | Tombstone,
) -> None:
    key = b"k \x00"
    argv = [_raw(a) for a in records.apply_command(key, record)]
    assert argv[1] == key
    parsed = (
        records.from_applydel(argv[2:]) if is_tombstone(record) else records.from_apply(argv[2:])
    )
    assert parsed == record
    assert records.from_fetch_reply(records.fetch_reply(record)) == record
    geo = [_raw(f) for f in records.geo_fields(key, record)]
    assert len(geo) == FIELDS_PER_RECORD
    assert decode_batch(geo + geo) == [(key, record), (key, record)]


def test_bad_records_are_refused() -> None:
    with pytest.raises(ValueError):
        decode_batch([b"k", b"1", b"o", b"0", b"v", b"not three fields"])
    with pytest.raises(ValueError):
        records.from_apply([b"v", b"0", b"1", b"o", b"2"])  # an expiry version alone
    for reply in ([b"v", 0, 1], [1, b"o", 0, 5], "ERR nope"):
        with pytest.raises(ValueError):
            records.from_fetch_reply(reply)
    assert records.from_fetch_reply(None) is None


def _raw(arg: bytes | str | int) -> bytes:
    return arg if isinstance(arg, bytes) else str(arg).encode()
