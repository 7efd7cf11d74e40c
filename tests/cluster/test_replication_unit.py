"""Replication alone: the real Replicator and peer connections against scripted peers.

Each peer (sim.fakes.FakePeer) answers GC.APPLYBATCH with the real handler
(`PeerHandlers.applybatch`) over a store of its own, unless a test scripts it to hang
or refuse. The fake view (`View`, a `ReplicationView`) says who owns a key and who is
down; everything runs on a VirtualTimeLoop, so timeouts pass without sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

from geocache.clock import ManualClock, make_version
from geocache.cluster.handlers import PeerHandlers
from geocache.cluster.hints import Hints
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.peers import Peers
from geocache.cluster.records import GEO_FIELDS
from geocache.cluster.replication import BATCH_BYTES, BATCH_RECORDS, NOREPLICAS, Replicator
from geocache.commands.context import Deferred
from geocache.protocol.types import OK, Error
from geocache.store.errors import VersionRefused
from sim.fakes import HANG, FakePeer
from sim.loop import VirtualTimeLoop

T = TypeVar("T")
SECRET = "secret"
TIMEOUT_MS = 500


def run(main: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop(limit_s=60)
    try:
        result = loop.run_until_complete(main)
        assert loop.errors == [], loop.errors
        return result
    finally:
        loop.close()


@dataclass
class Replica:
    """A peer node's store and the real GC.APPLYBATCH handler over it."""

    clock: ManualClock = field(default_factory=ManualClock)
    store: JournaledStore = field(init=False)
    refused: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = JournaledStore(self.clock, node_id="replica")

    def version_refused(self, exc: VersionRefused, peer_id: str, key: bytes, via: str) -> Error:
        self.refused.append(key)
        return Error(str(exc))

    def answer(self, argv: list[bytes]) -> object:
        handlers = PeerHandlers(self)  # type: ignore[arg-type]  # the two parts it uses
        session = SimpleNamespace(peer_id="me")  # the one field of a session it reads
        return handlers.applybatch(session, argv)  # type: ignore[arg-type]


@dataclass
class View:
    """A ReplicationView: every key is owned by `owner_ids`, this node first."""

    peers: Peers
    owner_ids: list[str]
    node_id: str = "me"
    clock: ManualClock = field(default_factory=ManualClock)
    hints: Hints = field(default_factory=Hints)
    stats: dict[str, int] = field(default_factory=lambda: {"replicated": 0, "replica_failures": 0})

    def owners(self, key: bytes) -> list[str]:
        return list(self.owner_ids)

    def known_down(self, node_id: str) -> bool:
        return node_id != self.node_id and self.peers.get(f"{node_id}:1").failed_recently()

    def required_acks(self, owners: int) -> int:
        return owners // 2 + 1  # quorum

    def addr_of(self, node_id: str) -> str | None:
        return f"{node_id}:1"


def region(*names: str) -> tuple[View, Replicator, dict[str, FakePeer], dict[str, Replica]]:
    """This node ("me") and replicas `names`, each a FakePeer answering with a Replica."""
    replicas = {name: Replica() for name in names}
    fakes = {name: FakePeer(SECRET, replicas[name].answer, node_id=name) for name in names}
    peers = Peers("me", SECRET, dial=lambda addr: fakes[addr.split(":")[0]].dial)
    view = View(peers, ["me", *names])
    return view, Replicator(view, TIMEOUT_MS), fakes, replicas


def write(key: bytes, value: bytes, version: int) -> Write:
    return key, (value, 0, version, "me")


def batches(peer: FakePeer) -> list[list[bytes]]:
    return [r.argv for r in peer.received if r.argv[0] == b"GC.APPLYBATCH"]


async def answer(reply: object) -> object:
    return await reply.awaitable if isinstance(reply, Deferred) else reply


def test_writes_of_one_turn_for_one_owner_leave_as_one_batch() -> None:
    view, replicator, fakes, replicas = region("a")

    async def main() -> None:
        writes = [write(b"k%d" % i, b"v%d" % i, 100 + i) for i in range(3)]
        # Three commands in one loop turn, as three clients' SETs would be.
        replies = [replicator.replicate([w], OK) for w in writes]
        assert all(isinstance(r, Deferred) for r in replies)  # quorum of 2: a must ack
        assert await asyncio.gather(*(answer(r) for r in replies)) == [OK, OK, OK]
        (sent,) = batches(fakes["a"])
        assert len(sent) == 1 + 3 * GEO_FIELDS
        assert sent[1::GEO_FIELDS] == [b"k0", b"k1", b"k2"]
        store = replicas["a"].store
        assert [store.peek(b"k%d" % i) for i in range(3)] == [w[1] for w in writes]
        assert view.stats == {"replicated": 3, "replica_failures": 0}
        # The next turn's writes go in a batch of their own.
        assert await answer(replicator.replicate([write(b"k9", b"v", 200)], OK)) == OK
        assert len(batches(fakes["a"])) == 2

    run(main())


def test_a_command_over_the_record_bound_is_split_and_acknowledged_once_all_arrive() -> None:
    view, replicator, fakes, replicas = region("a")

    async def main() -> None:
        n = 2 * BATCH_RECORDS + 1  # an MSET of that many keys
        writes = [write(b"k%d" % i, b"v", 100 + i) for i in range(n)]
        reply = replicator.replicate(writes, OK)
        assert await answer(reply) == OK
        sizes = [(len(b) - 1) // GEO_FIELDS for b in batches(fakes["a"])]
        assert sizes == [BATCH_RECORDS, BATCH_RECORDS, 1]
        assert len(replicas["a"].store) == n and view.stats["replicated"] == n

    run(main())


def test_a_batch_is_cut_at_its_byte_bound() -> None:
    _view, replicator, fakes, replicas = region("a")

    async def main() -> None:
        value = b"x" * (BATCH_BYTES // 3)  # two fit a batch; a third and the overhead do not
        writes = [write(b"big%d" % i, value, 100 + i) for i in range(5)]
        assert await answer(replicator.replicate(writes, OK)) == OK
        sent = batches(fakes["a"])
        sizes = [(len(b) - 1) // GEO_FIELDS for b in sent]
        assert sizes == [2, 2, 1]
        for argv in sent:
            assert sum(len(a) for a in argv) <= BATCH_BYTES
        assert len(replicas["a"].store) == 5

    run(main())


def test_an_owner_failing_mid_batch_gets_the_batch_as_hints() -> None:
    view, replicator, fakes, _replicas = region("a", "b")
    fakes["b"].handler = lambda argv: HANG  # b accepts the batch and never answers

    async def main() -> None:
        writes = [write(b"k%d" % i, b"v", 100 + i) for i in range(4)]
        replies = [replicator.replicate([w], OK) for w in writes]
        # Three owners: a quorum is two, this node and a; b's silence costs nothing.
        assert await asyncio.gather(*(answer(r) for r in replies)) == [OK] * 4
        assert view.hints.targets() == []
        await asyncio.sleep(TIMEOUT_MS / 1000 + 0.1)  # b's batch times out
        assert view.hints.targets() == ["b"]
        assert [k for k, _ in view.hints.batch("b", 100, 0)] == [w[0] for w in writes]
        assert view.stats == {"replicated": 4, "replica_failures": 4}

    run(main())


def test_a_connection_lost_mid_batch_leaves_the_quorum_and_hints_the_writes() -> None:
    view, replicator, fakes, _replicas = region("a")

    def drop(argv: list[bytes]) -> object:
        fakes["a"].drop()  # the connection resets with the batch unanswered
        return HANG

    async def main() -> None:
        assert await answer(replicator.replicate([write(b"k0", b"v", 100)], OK)) == OK
        fakes["a"].handler = drop
        writes = [write(b"k%d" % i, b"v", 200 + i) for i in range(1, 4)]
        replies = [replicator.replicate([w], OK) for w in writes]
        # a's connection failed: it is known down, so the quorum is of this node alone.
        assert await asyncio.gather(*(answer(r) for r in replies)) == [OK] * 3
        assert [k for k, _ in view.hints.batch("a", 100, 0)] == [b"k1", b"k2", b"k3"]

    run(main())


def test_a_record_refused_in_a_batch_fails_its_command_only() -> None:
    view, replicator, fakes, replicas = region("a")
    # A day ahead of the replica's clock, past its skew bound: refused there.
    far_future = make_version(ManualClock().wall_ms() + 86_400_000, 0)

    async def main() -> None:
        good, bad = write(b"good", b"v", 100), write(b"bad", b"v", far_future)
        replies = [replicator.replicate([good], OK), replicator.replicate([bad], OK)]
        assert await answer(replies[0]) == OK
        assert await answer(replies[1]) == NOREPLICAS  # a answered: it is not down
        assert len(batches(fakes["a"])) == 1 and replicas["a"].refused == [b"bad"]
        assert [k for k, _ in view.hints.batch("a", 100, 0)] == [b"bad"]
        assert view.stats == {"replicated": 1, "replica_failures": 1}

    run(main())


def test_write_acks_one_answers_at_once_and_still_replicates() -> None:
    view, replicator, _fakes, replicas = region("a")
    view.required_acks = lambda owners: 1  # type: ignore[method-assign]

    async def main() -> None:
        assert replicator.replicate([write(b"k", b"v", 100)], OK) is OK
        await asyncio.sleep(0.1)
        assert replicas["a"].store.peek(b"k") == (b"v", 0, 100, "me")

    run(main())
