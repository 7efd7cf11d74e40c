"""Repair pulls nothing from the far future: a peer's bucket listing or fetched record
with a version the clock does not admit is refused (logged, counted), the rest applied.

A real `Repairer` and `PeerClient` against a scripted peer (sim.fakes), in virtual time.
"""

from __future__ import annotations

from geocache.clock import ManualClock, make_version
from geocache.cluster import digest
from geocache.cluster.journal import JournaledStore
from geocache.cluster.peers import PeerClient
from geocache.cluster.repair import Repairer
from geocache.protocol.types import OK, Error
from geocache.store.tombstones import Tombstones
from sim.fakes import FakePeer
from sim.loop import VirtualTimeLoop

SECRET = "secret"
NOW_MS = 1_700_000_000_000
# Versions that still fit a RESP integer (a larger one travels as a bulk string, which
# the repairer's strict decoding refuses before it gets this far): the largest, and two
# minutes ahead of this node's clock.
FAR = [(1 << 63) - 1, make_version(NOW_MS + 120_000)]


class View:
    """The little of a RepairView that pulling one batch of buckets uses."""

    def __init__(self) -> None:
        self.store = JournaledStore(ManualClock(NOW_MS), node_id="me", tombstones=Tombstones())
        self.refused: list[tuple[str, bytes, str]] = []

    def version_refused(self, exc: Exception, peer_id: str, key: bytes, via: str) -> Error:
        self.refused.append((peer_id, key, via))
        return Error(str(exc))


def test_repair_refuses_far_future_records_and_pulls_the_rest() -> None:
    good = make_version(NOW_MS - 10)
    # (key, version, origin, is_tombstone, expiry version, expiry origin): each record's
    # expiry register written with its value, as most are.
    listed = [
        (b"far-entry", FAR[0], "evil", False, FAR[0], "evil"),
        (b"far-tomb", FAR[1], "evil", True, FAR[1], "evil"),
        (b"changed", good, "peer", False, good, "peer"),  # listed fine, fetched far ahead
        (b"fine", good, "peer", False, good, "peer"),
    ]
    fetched = {
        b"changed": [b"x", 0, FAR[1], b"evil"],
        b"fine": [b"v", 0, good, b"peer"],
    }

    def answer(argv: list[bytes]) -> object:
        if argv[0] == b"GC.BUCKET":
            return digest.encode_records(listed)
        if argv[0] == b"GC.FETCH":
            return fetched[argv[1]]
        return OK

    peer = FakePeer(SECRET, answer)
    view = View()

    async def main() -> None:
        client = PeerClient("peer:1", "me", SECRET, dial=peer.dial)
        repairer = Repairer(view)  # type: ignore[arg-type]
        zeros = [0] * digest.BUCKETS
        await repairer._repair_buckets(client, "peer", [0], zeros, zeros, True)

    loop = VirtualTimeLoop(limit_s=60)
    try:
        loop.run_until_complete(main())
        assert loop.errors == [], loop.errors
    finally:
        loop.close()
    store = view.store
    assert store.peek(b"fine") is not None
    for key in (b"far-entry", b"far-tomb", b"changed"):
        assert store.version_of(key) is None, key
    assert [r[1] for r in view.refused] == [b"far-entry", b"far-tomb", b"changed"]
    assert store.versions_refused == 3
    assert store.hlc.last < make_version(NOW_MS + 1)
    # Only the records that looked sane were fetched.
    fetches = [r.argv[1] for r in peer.received if r.argv[0] == b"GC.FETCH"]
    assert fetches == [b"changed", b"fine"]


def test_repair_fetches_a_value_this_node_forgot_but_whose_registers_say_it_lives() -> None:
    """A six-field tombstone whose expiry register no longer expires it stands for a
    forgotten value (JournaledStore.forgot_value): a peer's entry at its version is
    fetched and fills it in. A tombstone of a value that really expired is left alone."""
    x, s = make_version(NOW_MS - 5_000), make_version(NOW_MS - 4_000)
    view = View()
    store = view.store
    # The value at x expired here and was reclaimed; then a SET's no-expiry register (s)
    # came: by registers the key lives, but this node no longer has the value.
    store.apply(b"forgot", (x, "eu", NOW_MS - 3_000, 0, s, "us"))
    store.apply(b"expired", (x, "eu", NOW_MS - 3_000, NOW_MS - 3_500, s, "us"))
    assert store.forgot_value(b"forgot") and not store.forgot_value(b"expired")
    listed = [
        (b"forgot", x, "eu", False, s, "us"),
        (b"expired", x, "eu", False, s, "us"),
    ]

    def answer(argv: list[bytes]) -> object:
        if argv[0] == b"GC.BUCKET":
            return digest.encode_records(listed)
        if argv[0] == b"GC.FETCH":
            return [b"v", 0, x, b"eu", s, b"us"]
        return OK

    peer = FakePeer(SECRET, answer)

    async def main() -> None:
        client = PeerClient("peer:1", "me", SECRET, dial=peer.dial)
        zeros = [0] * digest.BUCKETS
        await Repairer(view)._repair_buckets(client, "peer", [0], zeros, zeros, False)  # type: ignore[arg-type]

    loop = VirtualTimeLoop(limit_s=60)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    fetches = [r.argv[1] for r in peer.received if r.argv[0] == b"GC.FETCH"]
    assert fetches == [b"forgot"]
    assert store.peek(b"forgot") is not None
