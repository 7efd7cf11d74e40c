"""Router alone: the real router and command table over a fake cluster view.

The fake (`FakeCluster`, a `RouterView`) decides who owns each key and records what
the router asks of the cluster: forwards (with their versions and timeouts), writes
replicated and shipped to other regions. The store is a real JournaledStore on a
ManualClock, so coordinated commands really run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from geocache.clock import ManualClock
from geocache.cluster.journal import JournaledStore, Write
from geocache.cluster.router import (
    CROSSSLOT,
    FORWARD_TIMEOUT_MS,
    LOADING,
    MANY_KEYS_PER_GROUP,
    PEER_TIMEOUT_MS,
    Router,
)
from geocache.commands.context import Deferred, Session
from geocache.commands.table import build_table
from geocache.config import NodeConfig
from geocache.fill import Filler
from geocache.protocol.types import OK, QUEUED, Error, Raw
from geocache.slots import SLOTS_PER_BUCKET, key_slot
from geocache.store.scan import Scanner
from geocache.store.tombstones import Tombstones

ME = "me"


@dataclass
class Host:
    config: NodeConfig
    origin: Filler | None = None


@dataclass
class Forward:
    argv: list[bytes]
    owners: list[str]
    timeout_ms: int
    version: int


@dataclass
class Streams:
    shipped: list[Write] = field(default_factory=list)

    def ship(self, writes: list[Write]) -> None:
        self.shipped += writes

    async def read_remote(self, key: bytes) -> bool:
        return False


class FakeCluster:
    """A RouterView: owners by key prefix, forwards answered by `answers`."""

    def __init__(self, store: JournaledStore) -> None:
        self.node_id = ME
        self.host = Host(NodeConfig(node_id=ME))
        self.store = store
        self.streams = Streams()
        self.ready = True
        self.warm = False
        self.down: set[str] = set()
        self.forwards: list[Forward] = []
        self.replicated: list[Write] = []
        # owner -> its reply to a forwarded command (RESP bytes, or an Error: none answered)
        self.answers: dict[str, object] = {}
        self.fetched: list[bytes] = []
        # Buckets whose primary is another node (transactions there are forwarded).
        self.elsewhere: set[int] = set()
        self.execs: list[list[list[bytes]]] = []

    def owners(self, key: bytes) -> list[str]:
        """`mine:...` keys: this node is primary; `rep:...`: a replica; else elsewhere."""
        if key.startswith(b"mine"):
            return [ME, "b"]
        if key.startswith(b"rep"):
            return ["a", ME]
        return ["a", "b"]

    def bucket_owners(self, bucket: int) -> list[str]:
        return ["a", ME] if bucket in self.elsewhere else [ME, "b"]

    async def forward_exec(
        self, commands: list[list[bytes]], owners: list[str], proto: int
    ) -> object:
        self.execs.append(commands)
        return b"*1\r\n+OK\r\n"

    def known_down(self, node_id: str) -> bool:
        return node_id in self.down

    def warming(self) -> bool:
        return self.warm

    def replicate(self, writes: list[Write], reply: object) -> object:
        self.replicated += writes
        return reply

    async def forward(
        self,
        argv: list[bytes],
        owners: list[str],
        proto: int,
        timeout_ms: int = FORWARD_TIMEOUT_MS,
        version: int = 0,
    ) -> object:
        self.forwards.append(Forward(argv, owners, timeout_ms, version))
        return self.answers.get(owners[0], Error("CLUSTERDOWN no owner of the key answered"))

    async def fetch_newest(self, key: bytes) -> bool:
        self.fetched.append(key)
        return False


class FakeNode:
    """What a Session needs of its node."""

    def __init__(self, store: JournaledStore, clock: ManualClock) -> None:
        self.config = NodeConfig(node_id=ME)
        self.clock = clock
        self.store = store
        self.scanner = Scanner(clock)
        self.started_ms = clock.wall_ms()
        self.table = build_table()
        self.topology = None
        self.resp_port = 0

    def sessions(self) -> Iterator[Session]:
        return iter(())

    def info_sections(self) -> dict[str, dict[str, object]]:
        return {}


class Setup:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.store = JournaledStore(self.clock, node_id=ME, tombstones=Tombstones())
        self.cluster = FakeCluster(self.store)
        self.router = Router(self.cluster)
        self.node = FakeNode(self.store, self.clock)
        self.session = Session(self.node, 1)  # type: ignore[arg-type]

    def send(self, *args: str | bytes) -> object:
        """The router's reply, awaited if deferred."""
        argv = [a.encode() if isinstance(a, str) else a for a in args]
        reply = self.router.dispatch(self.node.table, self.session, argv)
        if isinstance(reply, Deferred):
            return asyncio.run(_await(reply))
        return reply


async def _await(deferred: Deferred) -> object:
    return await deferred.awaitable


@pytest.fixture
def s() -> Setup:
    return Setup()


def test_a_write_this_node_is_primary_for_is_coordinated_replicated_and_shipped(
    s: Setup,
) -> None:
    assert s.send("SET", "mine:k", "v") == OK
    assert s.store.peek(b"mine:k") is not None
    assert [key for key, _ in s.cluster.replicated] == [b"mine:k"]
    assert [key for key, _ in s.cluster.streams.shipped] == [b"mine:k"]
    assert s.cluster.forwards == []


def test_a_write_owned_elsewhere_is_forwarded_with_a_version_minted_here(s: Setup) -> None:
    s.cluster.answers["a"] = b"+OK\r\n"
    reply = s.send("SET", "k", "v")
    assert reply == Raw(b"+OK\r\n")  # the primary's bytes, unchanged
    (fwd,) = s.cluster.forwards
    assert fwd.argv == [b"SET", b"k", b"v"] and fwd.owners == ["a"] and fwd.version > 0
    assert s.store.peek(b"k") is None and s.cluster.replicated == []


def test_a_forwarded_write_refused_as_older_goes_again_above_the_newer_version(
    s: Setup,
) -> None:
    newer = s.store.hlc.now() + (1 << 30)
    s.cluster.answers["a"] = b"-TRYAGAIN newer version %d\r\n" % newer
    s.send("SET", "k", "v")
    first, second = s.cluster.forwards
    assert first.version < newer < second.version


def test_a_primary_known_down_is_skipped_and_the_next_owner_coordinates(s: Setup) -> None:
    s.cluster.down.add("a")
    assert s.send("SET", "rep:k", "v") == OK  # this node is the next owner
    assert s.cluster.forwards == []
    assert s.store.peek(b"rep:k") is not None


def test_a_write_nobody_answers_is_clusterdown(s: Setup) -> None:
    reply = s.send("SET", "k", "v")
    assert isinstance(reply, Error) and str(reply).startswith("CLUSTERDOWN")
    assert [f.owners for f in s.cluster.forwards] == [["a"], ["b"]]


def test_reads_run_at_an_owner_and_are_forwarded_from_elsewhere(s: Setup) -> None:
    s.send("SET", "mine:k", "v")
    assert s.send("GET", "mine:k") == b"v"
    assert s.cluster.forwards == []
    s.cluster.answers["a"] = b"$1\r\nw\r\n"
    assert s.send("GET", "k") == Raw(b"$1\r\nw\r\n")
    (fwd,) = s.cluster.forwards
    assert fwd.owners == ["a", "b"] and fwd.timeout_ms == PEER_TIMEOUT_MS and fwd.version == 0


def test_a_miss_at_an_owner_while_warming_asks_the_region(s: Setup) -> None:
    s.cluster.warm = True
    assert s.send("GET", "mine:k") is None
    assert s.cluster.fetched == [b"mine:k"]
    s.cluster.warm = False
    s.send("GET", "mine:k")
    assert s.cluster.fetched == [b"mine:k"]  # not warming: a miss is a miss


def test_mget_is_grouped_per_owner_and_answered_as_one_array(s: Setup) -> None:
    s.send("SET", "mine:1", "x")
    s.store.set(b"rep:1", b"z")
    s.cluster.answers["a"] = b"*2\r\n$1\r\ny\r\n$-1\r\n"
    reply = s.send("MGET", "mine:1", "other:1", "rep:1", "other:2")
    assert reply == [b"x", b"y", b"z", None]
    # One request to the owner of both other keys, naming them; reads owned here stay.
    assert [f.argv for f in s.cluster.forwards] == [[b"MGET", b"other:1", b"other:2"]]


def test_del_sums_the_owners_counts(s: Setup) -> None:
    s.send("SET", "mine:1", "x")
    s.cluster.answers["a"] = b":2\r\n"
    assert s.send("DEL", "mine:1", "mine:2", "other", "rep:1") == 3
    # Writes go to their primary: "other" and "rep:1" (primary a) in one request.
    [forward] = s.cluster.forwards
    assert forward.argv == [b"DEL", b"other", b"rep:1"] and forward.version > 0


def test_a_multi_key_command_is_cut_into_bounded_groups(s: Setup) -> None:
    keys = [f"other:{i}" for i in range(MANY_KEYS_PER_GROUP * 2 + 1)]
    s.cluster.answers["a"] = b":1\r\n"
    assert s.send("EXISTS", *keys) == 3
    assert [len(f.argv) - 1 for f in s.cluster.forwards] == [
        MANY_KEYS_PER_GROUP,
        MANY_KEYS_PER_GROUP,
        1,
    ]


def test_a_group_its_owner_does_not_answer_goes_key_by_key(s: Setup) -> None:
    down = Error("CLUSTERDOWN no owner of the key answered")
    assert s.send("MGET", "other:1", "other:2") == [down, down]
    assert [f.argv for f in s.cluster.forwards] == [
        [b"MGET", b"other:1", b"other:2"],
        [b"GET", b"other:1"],
        [b"GET", b"other:2"],
    ]


def test_too_many_keys_in_one_command_is_refused_before_any_work(s: Setup) -> None:
    s.cluster.host = Host(NodeConfig(node_id=ME, max_keys_per_command=3))
    reply = s.send("MGET", "other:1", "other:2", "other:3", "other:4")
    assert isinstance(reply, Error) and "max-keys-per-command" in reply
    assert s.cluster.forwards == []


def test_multi_key_commands_need_keys_with_the_same_owners(s: Setup) -> None:
    assert s.send("MSETNX", "mine:1", "x", "other", "y") == CROSSSLOT
    assert s.send("MSETNX", "mine:1", "x", "mine:2", "y") == 1


def test_keyless_commands_run_here(s: Setup) -> None:
    assert s.send("PING") == b"+PONG\r\n"
    assert s.cluster.forwards == []


def test_a_one_slot_transaction_runs_at_its_primary_and_replicates_as_one_batch(
    s: Setup,
) -> None:
    assert s.send("MULTI") == OK
    assert s.send("SET", "{t}a", "1") == QUEUED
    assert s.send("INCR", "{t}b") == QUEUED
    assert s.send("EXEC") == [OK, 1]
    assert [key for key, _record in s.cluster.replicated] == [b"{t}a", b"{t}b"]
    assert s.cluster.forwards == [] and s.cluster.execs == []


def test_a_key_of_another_slot_dooms_the_transaction(s: Setup) -> None:
    assert s.send("MULTI") == OK
    assert s.send("SET", "{t}a", "1") == QUEUED
    assert s.send("SET", "{u}a", "1") == CROSSSLOT
    assert str(s.send("EXEC")).startswith("EXECABORT")
    assert s.cluster.replicated == []


def test_a_transaction_whose_primary_is_elsewhere_is_forwarded_whole(s: Setup) -> None:
    s.cluster.elsewhere.add(key_slot(b"{t}a") // SLOTS_PER_BUCKET)
    assert s.send("MULTI") == OK
    assert s.send("SET", "{t}a", "1") == QUEUED
    assert s.send("EXEC") == b"*1\r\n+OK\r\n"  # the primary's reply, byte for byte
    assert s.cluster.execs == [[[b"SET", b"{t}a", b"1"]]]
    assert s.store.peek(b"{t}a") is None  # nothing ran here


def test_the_arity_error_comes_before_routing(s: Setup) -> None:
    reply = s.send("GET")
    assert str(reply) == "ERR wrong number of arguments for 'get' command"
    assert s.cluster.forwards == []


def test_a_node_not_ready_answers_loading_to_key_commands(s: Setup) -> None:
    """Joining or warming up: no key command runs here, nothing is forwarded."""
    s.cluster.ready = False
    for command in (("GET", "mine:k"), ("SET", "other:k", "v"), ("MGET", "mine:a", "rep:b")):
        assert s.send(*command) == LOADING
    assert s.cluster.forwards == [] and s.cluster.replicated == []
    assert s.send("PING") != LOADING  # keyless commands still answer
    s.cluster.ready = True
    assert s.send("GET", "mine:k") is None
