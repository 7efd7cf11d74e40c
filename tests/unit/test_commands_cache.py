"""The commands of issue 18 without sockets, on a ManualClock (see test_commands.py).

What the differential suite cannot show against redis-server: databases sharing the
memory limit, OOM texts, the idle time from a manual clock, the slow log's bounds,
internal commands hidden from COMMAND, and what a rename journals in a cluster.
"""

from __future__ import annotations

from test_commands import FakeNode, run

from geocache.clock import ManualClock
from geocache.cluster.journal import JournaledStore, is_tombstone
from geocache.commands.context import Session
from geocache.commands.dump import dump_payload, load_payload
from geocache.commands.slowlog import MAX_ARG_BYTES, MAX_ARGC, SlowLog
from geocache.protocol.types import Error
from geocache.store.entry import entry_size
from geocache.store.tombstones import Tombstones

OOM = "OOM command not allowed when used memory > 'maxmemory'."


def test_databases_keep_keys_apart() -> None:
    node = FakeNode()
    one, zero = Session(node, 1), Session(node, 2)  # type: ignore[arg-type]
    assert run(node, "SELECT", "1", session=one) == b"+OK\r\n"
    assert run(node, "SET", "k", "in one", session=one) == b"+OK\r\n"
    assert run(node, "GET", "k", session=zero) is None
    assert run(node, "DBSIZE", session=one) == 1 and run(node, "DBSIZE", session=zero) == 0
    assert run(node, "SWAPDB", "0", "1", session=one) == b"+OK\r\n"
    assert run(node, "GET", "k", session=zero) == b"in one"
    assert node.store.peek(b"k") is not None  # database 0 is still the node's store
    assert run(node, "FLUSHALL", session=one) == b"+OK\r\n"
    assert run(node, "DBSIZE", session=zero) == 0


def test_databases_share_the_memory_limit() -> None:
    size = entry_size(b"k0", b"v" * 100)
    node = FakeNode(max_bytes=10 * size)
    one, zero = Session(node, 1), Session(node, 2)  # type: ignore[arg-type]
    run(node, "SELECT", "1", session=one)
    for i in range(6):
        run(node, "SET", f"k{i}", "v" * 100, session=one)
    for i in range(6):
        run(node, "SET", f"k{i}", "v" * 100, session=zero)
    held = sum(store.used_bytes for _i, store in node.databases.held())
    assert held <= 10 * size
    assert node.store.evictions == 2  # database 0 got what database 1 left it
    assert run(node, "DBSIZE", session=one) == 6
    run(node, "FLUSHDB", session=one)
    for i in range(6, 10):
        run(node, "SET", f"k{i}", "v" * 100, session=zero)
    assert node.store.evictions == 2 and run(node, "DBSIZE", session=zero) == 8


def test_select_in_cluster_mode() -> None:
    node = FakeNode(cluster_secret="s")
    assert str(run(node, "SELECT", "1")) == "ERR SELECT is not allowed in cluster mode"
    assert run(node, "SELECT", "0") == b"+OK\r\n"
    assert str(run(node, "SWAPDB", "0", "1")) == "ERR SWAPDB is not allowed in cluster mode"
    assert str(run(node, "MOVE", "k", "1")) == "ERR MOVE is not allowed in cluster mode"
    run(node, "SET", "k", "v")
    expected = "ERR Copying to another database is not allowed in cluster mode"
    assert str(run(node, "COPY", "k", "k2", "DB", "1")) == expected
    assert str(run(node, "COPY", "k", "k2", "DB", "16")) == "ERR DB index is out of range"


def test_write_that_cannot_fit_is_oom_and_refused_when_queued() -> None:
    node = FakeNode(max_bytes=1000)
    assert str(run(node, "SET", "k", "v" * 1000)) == OOM
    session = Session(node, 1)  # type: ignore[arg-type]
    run(node, "MULTI", session=session)
    assert run(node, "SET", "small", "v", session=session) == b"+QUEUED\r\n"
    assert str(run(node, "SET", "big", "v" * 1000, session=session)) == OOM
    assert str(run(node, "MSET", "a", "1", "b", "v" * 1000, session=session)) == OOM
    assert str(run(node, "SETBIT", "b", "8000", "1", session=session)) == OOM
    assert str(run(node, "SETRANGE", "b", "990", "x", session=session)) == OOM
    assert str(run(node, "RESTORE", "b", "0", dump_payload(b"v" * 1000), session=session)) == OOM
    assert run(node, "SETBIT", "b", "80", "1", session=session) == b"+QUEUED\r\n"
    assert str(run(node, "EXEC", session=session)).startswith("EXECABORT")
    assert run(node, "GET", "small") is None


def test_internal_commands_hidden_from_clients_not_peers() -> None:
    node = FakeNode()
    client, peer = Session(node, 1), Session(node, 2)  # type: ignore[arg-type]
    peer.peer_id = "n2"
    names = run(node, "COMMAND", "LIST", session=client)
    assert isinstance(names, list) and b"get" in names
    assert not [n for n in names if n.startswith(b"gc.")]
    assert run(node, "COMMAND", "COUNT", session=client) == len(names)
    assert run(node, "COMMAND", "INFO", "gc.apply", session=client) == [None]
    assert run(node, "COMMAND", "DOCS", "gc.apply", session=client) == {}
    every = run(node, "COMMAND", session=client)
    assert isinstance(every, list) and len(every) == len(names)
    peer_names = run(node, "COMMAND", "LIST", session=peer)
    assert isinstance(peer_names, list)
    internal = {c.name for c in node.table.values() if c.name.startswith(b"gc.")}
    assert internal and {n for n in peer_names if n.startswith(b"gc.")} == internal


def test_object_idletime_and_refcount() -> None:
    node = FakeNode()
    run(node, "SET", "k", "42")
    node.clock.advance(5_400)
    assert run(node, "OBJECT", "IDLETIME", "k") == 5
    assert run(node, "OBJECT", "REFCOUNT", "k") == 1  # max_bytes set: no shared integers
    unlimited = FakeNode(max_bytes=0)
    run(unlimited, "SET", "k", "42")
    assert run(unlimited, "OBJECT", "REFCOUNT", "k") == 2**31 - 1
    assert run(node, "MEMORY", "USAGE", "k") == entry_size(b"k", b"42")


def test_dump_payload_round_trip_and_checks() -> None:
    payload = dump_payload(b"\x00value")
    assert load_payload(payload) == b"\x00value"
    for bad in (payload[:-1], b"", payload[:5] + b"x" + payload[6:], b"\x01" + payload[1:]):
        assert isinstance(load_payload(bad), Error)
    node = FakeNode()
    run(node, "SET", "k", "v")
    dumped = run(node, "DUMP", "k")
    assert isinstance(dumped, bytes)
    assert run(node, "RESTORE", "k2", "10000", dumped) == b"+OK\r\n"
    assert run(node, "PTTL", "k2") == 10_000
    absolute = str(node.clock.wall_ms() + 5000)
    assert run(node, "RESTORE", "k2", absolute, dumped, "REPLACE", "ABSTTL") == b"+OK\r\n"
    assert run(node, "PTTL", "k2") == 5000


def test_slowlog_bounds_and_trims() -> None:
    log = SlowLog(slower_than_us=0, max_len=3)
    for i in range(5):
        log.add([b"SET", b"k%d" % i, b"v"], 2_000_000, 1_700_000_000_000, "1.2.3.4:5", b"")
    assert len(log) == 3
    assert [e.id for e in log.latest(-1)] == [4, 3, 2]
    assert log.latest(1)[0].duration_us == 2000 and log.latest(1)[0].time_s == 1_700_000_000
    log.add([b"AUTH", b"secret"], 1, 0, "", b"")
    assert log.latest(1)[0].argv[0] == b"SET"  # never a password
    log.add([b"MSET", *[b"x" * 200] * 40], 1, 0, "", b"")
    argv = log.latest(1)[0].argv
    assert len(argv) == MAX_ARGC and argv[-1] == b"... (10 more arguments)"
    assert argv[1] == b"x" * MAX_ARG_BYTES + b"... (72 more bytes)"
    log.configure(-1, 1)
    assert len(log) == 1 and log.threshold_ns > 10**18


def test_client_kill_and_pause_reach_the_node() -> None:
    node = FakeNode()
    me, other = Session(node, 1, "1.1.1.1:1"), Session(node, 2, "2.2.2.2:2")  # type: ignore[arg-type]
    node._sessions += [me, other]
    assert run(node, "CLIENT", "KILL", "2.2.2.2:2", session=me) == b"+OK\r\n"
    assert node.killed == [2]
    assert run(node, "CLIENT", "KILL", "ADDR", "1.1.1.1:1", session=me) == 0  # SKIPME yes
    assert run(node, "CLIENT", "KILL", "ID", "1", "SKIPME", "no", session=me) == 1
    assert me.closing
    assert run(node, "CLIENT", "PAUSE", "100", "WRITE", session=other) == b"+OK\r\n"
    assert node.paused == (100, False)
    assert run(node, "CLIENT", "UNPAUSE", session=other) == b"+OK\r\n"
    assert node.paused is None


def test_rename_in_a_cluster_store_journals_a_write_and_a_delete() -> None:
    clock = ManualClock()
    store = JournaledStore(clock, node_id="n1", tombstones=Tombstones())
    node = FakeNode(cluster_secret="s")
    node.store = store
    session = Session(node, 1)  # type: ignore[arg-type]
    store.set(b"a", b"v", 0)
    store.take_journal()
    assert run(node, "RENAME", "a", "b", session=session) == b"+OK\r\n"
    (wrote, entry), (deleted, tomb) = store.take_journal()
    assert (wrote, deleted) == (b"b", b"a")
    assert not is_tombstone(entry) and is_tombstone(tomb)
    assert entry[2] == tomb[0]  # one version for both


def test_client_kill_type_normal_spares_cluster_peers() -> None:
    node = FakeNode()
    me, client, peer = (Session(node, i, f"10.0.0.{i}:1") for i in (1, 2, 3))  # type: ignore[arg-type]
    peer.peer_id = "n2"
    node._sessions += [me, client, peer]
    assert run(node, "CLIENT", "KILL", "TYPE", "normal", session=me) == 1
    assert node.killed == [2]
    assert run(node, "CLIENT", "KILL", "TYPE", "slave", session=me) == 1
    assert node.killed == [2, 3]


def test_randomkey_never_answers_an_expired_key() -> None:
    node = FakeNode()
    assert run(node, "RANDOMKEY") is None
    for i in range(50):
        run(node, "SET", f"gone:{i}", "v", "PX", "10")
    run(node, "SET", "live", "v")
    node.clock.advance(20)  # expired, not yet reclaimed
    assert {run(node, "RANDOMKEY") for _ in range(20)} == {b"live"}
