"""Warm-up alone: a real WarmUp and Peers pulling from scripted nodes, in virtual time.

The fake view is node `b1`, alone in region B and owner of every bucket; region A's
nodes are `FakePeer`s answering GC.DIGEST and GC.WARM from a real store (`warmup.serve`,
the code GC.WARM runs), so planning, batching, failover, the in-flight bound and pacing
all play out on `VirtualTimeLoop`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from geocache.clock import ManualClock, make_version
from geocache.cluster import digest, warmup
from geocache.cluster.journal import JournaledStore
from geocache.cluster.peers import Dial, Peers
from geocache.config import NodeConfig
from geocache.fill import Filler
from geocache.protocol.types import Error
from geocache.store.entry import make_entry, make_tombstone
from geocache.store.tombstones import Tombstones
from sim.fakes import FakePeer
from sim.loop import WALL_EPOCH_MS, VirtualTimeLoop

SECRET = "secret"
ME = "b1"
KEYS = 3_000


@dataclass
class Host:
    config: NodeConfig
    origin: Filler | None = None


@dataclass
class Sources:
    members: list[str]

    def warm_up_source(self) -> list[str]:
        return self.members


class FakeView:
    """A WarmView: `b1` alone in its region; region A's members serve `source`."""

    def __init__(self, source: JournaledStore, remote: list[str], **settings: Any) -> None:
        self.node_id = ME
        self.host = Host(NodeConfig(node_id=ME, region="B", replicas=1, **settings))
        clock = ManualClock(wall_ms=WALL_EPOCH_MS + 1_000)  # a second after the source's writes
        self.store = JournaledStore(clock, node_id=ME, tombstones=Tombstones())
        self.streams = Sources(remote)
        self.source = source
        self.fakes = {n: FakePeer(SECRET, self._answer, node_id=n) for n in remote}
        self.peers = Peers(ME, SECRET, dial=self._dial)
        self.warm_at: list[float] = []  # the loop time each GC.WARM arrived

    def _dial(self, addr: str) -> Dial:
        return self.fakes[addr].dial

    def _answer(self, argv: list[bytes]) -> object:
        if argv[0] == b"GC.DIGEST":
            return digest.encode_buckets(self.source.digest.buckets)
        self.warm_at.append(asyncio.get_running_loop().time())
        buckets = [int(b) for b in argv[2:]]
        return warmup.serve(self.source, buckets, int(argv[1]))

    def region_peers(self) -> list[str]:
        return []

    def addr_of(self, node_id: str) -> str | None:
        return node_id

    def bucket_owners(self, bucket: int) -> list[str]:
        return [ME]

    def version_refused(self, exc: Exception, peer_id: str, key: bytes, via: str) -> Error:
        return Error(str(exc))


def filled_source() -> JournaledStore:
    clock = ManualClock(wall_ms=WALL_EPOCH_MS)
    store = JournaledStore(clock, node_id="a1", tombstones=Tombstones())
    for i in range(KEYS):
        store.set(b"k%d" % i, b"v%d" % i)
    v = make_version(WALL_EPOCH_MS, 5)
    store.apply(b"gone", make_tombstone((v, "a2"), 0, 0, (v, "a2")))
    # An expiry written after the value, at a version of its own.
    expires = WALL_EPOCH_MS + 60_000
    store.apply(b"ttl", make_entry(b"t", expires, (v, "a1"), (v + 1, "a2")))
    return store


def pull(
    source: JournaledStore,
    remote: list[str],
    setup: Callable[[FakeView], object] = lambda view: None,
    **settings: Any,
) -> tuple[FakeView, warmup.WarmUp, float]:
    """Build the view on a virtual-time loop, `setup(view)`, then run a warm-up: the view,
    the warm-up and the virtual seconds it took."""

    async def main() -> tuple[FakeView, warmup.WarmUp, float]:
        view = FakeView(source, remote, **settings)
        setup(view)
        up = warmup.WarmUp(view)
        started = asyncio.get_running_loop().time()
        try:
            await up.run()
        finally:
            view.peers.close()
        return view, up, asyncio.get_running_loop().time() - started

    loop = VirtualTimeLoop(limit_s=600)
    try:
        result = loop.run_until_complete(main())
        assert loop.errors == [], loop.errors
        return result
    finally:
        loop.close()


def all_records(store: JournaledStore) -> list[digest.Record]:
    return [r for b in range(digest.BUCKETS) for r in store.digest.keys_in_bucket(b)]


def test_an_empty_node_pulls_every_record_with_both_registers() -> None:
    source = filled_source()
    view, up, _took = pull(source, ["a1", "a2"])
    assert view.store.digest.buckets == source.digest.buckets  # the same records, exactly
    assert sorted(all_records(view.store)) == sorted(all_records(source))
    assert len(view.store) == KEYS + 1 and view.store.tombstones.get(b"gone") is not None
    stats = up.stats
    assert stats.records == stats.applied == KEYS + 2
    assert stats.buckets_failed == stats.failures == 0
    # Whole buckets, BUCKETS_PER_REQUEST at a time, and never more than MAX_IN_FLIGHT
    # requests at once (all sent in one virtual instant are in flight together).
    assert stats.requests >= stats.buckets_pulled / warmup.BUCKETS_PER_REQUEST
    at_once = Counter(view.warm_at)
    assert max(at_once.values()) == warmup.MAX_IN_FLIGHT


def test_a_newer_record_held_here_is_kept() -> None:
    source = filled_source()
    newer: list[object] = []
    view, _up, _took = pull(
        source, ["a1"], lambda v: newer.append(v.store.set(b"k7", b"written here meanwhile"))
    )
    assert [view.store.peek(b"k7")] == newer  # a later version than the source's
    assert view.store.peek(b"k8") == source.peek(b"k8")


def test_a_source_that_refuses_hands_its_buckets_to_the_next() -> None:
    source = filled_source()

    def refuse(view: FakeView) -> None:
        view.fakes["a1"].refuse = True

    view, up, _took = pull(source, ["a1", "a2"], refuse)
    assert sorted(all_records(view.store)) == sorted(all_records(source))
    assert up.stats.buckets_failed == 0


def test_buckets_no_source_answers_for_are_left_to_repair() -> None:
    source = filled_source()

    def older(view: FakeView) -> None:
        view.fakes["a1"].handler = lambda argv: (
            digest.encode_buckets(source.digest.buckets)
            if argv[0] == b"GC.DIGEST"
            else Error("ERR unknown command 'GC.WARM'")  # a node of an older version
        )

    view, up, _took = pull(source, ["a1"], older)  # returns: readiness is not held up
    wanted = sum(1 for b in source.digest.buckets if b)
    assert up.stats.buckets_failed == up.stats.buckets_wanted == wanted
    assert len(view.store) == 0


def test_the_pull_is_paced_to_warmup_keys_per_s() -> None:
    source = filled_source()
    view, _up, took_s = pull(source, ["a1"], warmup_keys_per_s=1000)
    # 3,002 records at 1,000 a second: the last reply waits for its turn.
    assert 2.0 <= took_s <= 4.0
    assert len(view.store) == KEYS + 1


def test_serve_sends_whole_buckets_up_to_max_bytes_and_at_least_one() -> None:
    source = filled_source()
    busy = sorted(range(digest.BUCKETS), key=lambda b: -len(source.digest.keys_in_bucket(b)))[:4]
    done, writes = warmup.decode_reply(warmup.serve(source, busy, max_bytes=1))
    assert done == 1 and {k for k, _ in writes} == {
        r[0] for r in source.digest.keys_in_bucket(busy[0])
    }
    done, writes = warmup.decode_reply(warmup.serve(source, busy, max_bytes=1 << 20))
    assert done == 4 and len(writes) == sum(len(source.digest.keys_in_bucket(b)) for b in busy)


@pytest.mark.parametrize(
    "reply",
    [None, [], [b"1", b"k"], [b"x"], [b"1", b"k", 1, b"a1", b"0", b"v", b""], Error("ERR no")],
)
def test_a_malformed_reply_is_refused(reply: object) -> None:
    with pytest.raises(ValueError):
        warmup.decode_reply(reply)
