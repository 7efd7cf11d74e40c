"""The command layer without sockets: a fake node on a ManualClock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from geocache.clock import ManualClock
from geocache.commands.context import Session
from geocache.commands.slowlog import SlowLog
from geocache.commands.table import NOAUTH, NOT_A_PEER, build_table, dispatch
from geocache.config import NodeConfig
from geocache.protocol.types import NULL_ARRAY, OK, Error
from geocache.server.node import Node
from geocache.store.databases import DATABASES, Databases
from geocache.store.keyspace import Store
from geocache.store.scan import Scanner


class FakeNode:
    def __init__(self, **settings: object) -> None:
        self.config = NodeConfig(**settings)  # type: ignore[arg-type]
        self.resp_port = self.config.port
        self.clock = ManualClock()
        self.store = Store(self.clock, max_bytes=self.config.max_bytes)
        count = 1 if self.config.clustered else DATABASES
        self.databases = Databases(self.store, self.clock, count)
        self.slowlog = SlowLog()
        self.killed: list[int] = []
        self.paused: tuple[int, bool] | None = None
        self.scanner = Scanner(self.clock)
        self.started_ms = self.clock.wall_ms()
        self.table = build_table()
        self._sessions: list[Session] = []
        self.resets = 0
        self.cluster = None

    def sessions(self) -> Iterator[Session]:
        return iter(self._sessions)

    def info_sections(self) -> dict[str, dict[str, object]]:
        return {"server": {"redis_version": "7.0.15"}, "geocache": {"node_id": "n1"}}

    def reset_stats(self) -> None:
        self.resets += 1

    def apply_config(self, config: NodeConfig) -> None:
        self.config = config
        self.databases.set_limits(config.max_bytes, config.max_keys)

    def kill_client(self, client_id: int) -> bool:
        self.killed.append(client_id)
        return True

    def pause_clients(self, timeout_ms: int, all_commands: bool) -> None:
        self.paused = (timeout_ms, all_commands)

    def unpause_clients(self) -> None:
        self.paused = None


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


def run(node: FakeNode, *args: bytes | str, session: Session | None = None) -> object:
    if session is None:
        session = Session(node, 1)  # type: ignore[arg-type]
    argv = [a.encode() if isinstance(a, str) else a for a in args]
    return dispatch(node.table, session, argv)


def test_set_get_with_expiry_on_manual_clock(node: FakeNode) -> None:
    assert run(node, "SET", "k", "v", "EX", "10") == b"+OK\r\n"
    assert run(node, "TTL", "k") == 10
    node.clock.advance(9_400)
    assert run(node, "TTL", "k") == 1  # rounded as Redis does
    assert run(node, "PTTL", "k") == 600
    node.clock.advance(600)
    assert run(node, "GET", "k") is None
    assert run(node, "TTL", "k") == -2


def test_a_plain_set_over_an_expired_key_counts_it_expired(node: FakeNode) -> None:
    """As Redis's SET looks the key up first: the expired entry is reclaimed and counted,
    then the new value holds, with no expiry of its own."""
    assert run(node, "SET", "k", "old", "PX", "100") == b"+OK\r\n"
    node.clock.advance(100)
    assert run(node, "SET", "k", "new") == b"+OK\r\n"
    assert node.store.expirations == 1
    assert run(node, "GET", "k") == b"new" and run(node, "TTL", "k") == -1
    assert run(node, "SET", "k", "newer") == b"+OK\r\n"  # a live key: nothing expires
    assert node.store.expirations == 1 and run(node, "GET", "k") == b"newer"


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        (("SET", "k", "v", "NX", "XX"), "ERR syntax error"),
        (("SET", "k", "v", "EX", "0"), "ERR invalid expire time in 'set' command"),
        (("SET", "k", "v", "EX", "-5"), "ERR invalid expire time in 'set' command"),
        (("SET", "k", "v", "EX", "x"), "ERR value is not an integer or out of range"),
        (("SET", "k", "v", "EX"), "ERR syntax error"),
        (("SET", "k", "v", "KEEPTTL", "PX", "5"), "ERR syntax error"),
        (("SETEX", "k", "0", "v"), "ERR invalid expire time in 'setex' command"),
        (("GET",), "ERR wrong number of arguments for 'get' command"),
        (("NOPE", "a"), "ERR unknown command 'NOPE', with args beginning with: 'a' "),
        (
            ("EXPIRE", "k", "5", "NX", "XX"),
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            ("EXPIRE", "k", "5", "GT", "LT"),
            "ERR GT and LT options at the same time are not compatible",
        ),
        (("EXPIRE", "k", "5", "ZZ"), "ERR Unsupported option ZZ"),
        (("SELECT", "16"), "ERR DB index is out of range"),
        (("CLIENT", "NOPE"), "ERR unknown subcommand 'NOPE'. Try CLIENT HELP."),
        (("CLIENT", "SETNAME"), "ERR wrong number of arguments for 'client|setname' command"),
        (("HELLO", "4"), "NOPROTO unsupported protocol version"),
    ],
)
def test_errors_match_redis(node: FakeNode, args: tuple[str, ...], reply: str) -> None:
    result = run(node, *args)
    assert isinstance(result, Error)
    assert str(result) == reply


def test_set_options(node: FakeNode) -> None:
    assert run(node, "SET", "k", "1", "NX") == b"+OK\r\n"
    assert run(node, "SET", "k", "2", "NX") is None
    assert run(node, "SET", "k", "3", "NX", "GET") == b"1"
    assert run(node, "SET", "k", "4", "XX", "GET") == b"1"
    assert run(node, "GET", "k") == b"4"
    assert run(node, "SET", "k", "5", "PX", "1000") == b"+OK\r\n"
    assert run(node, "SET", "k", "6", "KEEPTTL") == b"+OK\r\n"
    assert run(node, "PTTL", "k") == 1000
    assert run(node, "SET", "k", "7") == b"+OK\r\n"
    assert run(node, "TTL", "k") == -1
    assert run(node, "SET", "missing", "v", "XX") is None


def test_counters(node: FakeNode) -> None:
    assert run(node, "INCR", "n") == 1
    assert run(node, "INCRBY", "n", "41") == 42
    assert run(node, "DECRBY", "n", "2") == 40
    assert run(node, "SET", "n", "9223372036854775807") == b"+OK\r\n"
    assert str(run(node, "INCR", "n")) == "ERR increment or decrement would overflow"
    assert run(node, "GET", "n") == b"9223372036854775807"
    assert run(node, "SET", "f", "10.50") == b"+OK\r\n"
    assert run(node, "INCRBYFLOAT", "f", "0.1") == b"10.6"
    assert run(node, "SET", "f", "5.0e3") == b"+OK\r\n"
    assert run(node, "INCRBYFLOAT", "f", "2.0e2") == b"5200"
    assert run(node, "INCR", "f") == 5201
    assert run(node, "SET", "g", "1.5") == b"+OK\r\n"
    assert str(run(node, "INCR", "g")) == "ERR value is not an integer or out of range"


def test_ranges_and_append(node: FakeNode) -> None:
    assert run(node, "SET", "s", "This is a string") == b"+OK\r\n"
    assert run(node, "GETRANGE", "s", "0", "3") == b"This"
    assert run(node, "GETRANGE", "s", "-3", "-1") == b"ing"
    assert run(node, "GETRANGE", "s", "0", "-1") == b"This is a string"
    assert run(node, "GETRANGE", "s", "10", "100") == b"string"
    assert run(node, "SETRANGE", "z", "5", "hi") == 7
    assert run(node, "GET", "z") == b"\x00" * 5 + b"hi"
    assert run(node, "APPEND", "z", "!") == 8
    assert run(node, "STRLEN", "z") == 8


def test_expire_options(node: FakeNode) -> None:
    run(node, "SET", "k", "v")
    assert run(node, "EXPIRE", "k", "100", "XX") == 0
    assert run(node, "EXPIRE", "k", "100", "NX") == 1
    assert run(node, "EXPIRE", "k", "50", "GT") == 0
    assert run(node, "EXPIRE", "k", "200", "GT") == 1
    assert run(node, "EXPIRE", "k", "300", "LT") == 0
    assert run(node, "PERSIST", "k") == 1
    assert run(node, "TTL", "k") == -1
    assert run(node, "EXPIRE", "k", "0") == 1
    assert run(node, "EXISTS", "k") == 0


def test_auth_required() -> None:
    node = FakeNode(requirepass="secret")
    session = Session(node, 1)  # type: ignore[arg-type]
    assert str(run(node, "GET", "k", session=session)) == "NOAUTH Authentication required."
    assert str(run(node, "AUTH", "wrong", session=session)).startswith("WRONGPASS")
    assert run(node, "AUTH", "secret", session=session) == b"+OK\r\n"
    assert run(node, "GET", "k", session=session) is None


def test_scan_and_keys(node: FakeNode) -> None:
    for i in range(25):
        run(node, "SET", f"user:{i}", "v")
    run(node, "SET", "other", "v")
    seen: set[bytes] = set()
    cursor = b"0"
    for _ in range(100):
        reply = run(node, "SCAN", cursor, "MATCH", "user:*", "COUNT", "7")
        assert isinstance(reply, list)
        cursor, keys = reply
        seen.update(keys)
        if cursor == b"0":
            break
    assert seen == {f"user:{i}".encode() for i in range(25)}
    keys = run(node, "KEYS", "user:1?")
    assert isinstance(keys, list)
    assert sorted(keys) == sorted(f"user:{i}".encode() for i in range(10, 20))


def test_hello_switches_protocol(node: FakeNode) -> None:
    session = Session(node, 7)  # type: ignore[arg-type]
    reply = run(node, "HELLO", "3", "SETNAME", "app", session=session)
    assert isinstance(reply, dict)
    assert reply[b"proto"] == 3 and reply[b"id"] == 7
    assert session.proto == 3 and session.name == b"app"


def test_value_limit(node: FakeNode) -> None:
    small = FakeNode(max_value_bytes=10)
    assert str(run(small, "SET", "k", "x" * 11)).startswith("ERR string exceeds maximum")
    assert run(small, "GET", "k") is None


def test_multi_exec_and_watch(node: FakeNode) -> None:
    a, b = Session(node, 1), Session(node, 2)  # type: ignore[arg-type]
    assert run(node, "MULTI", session=a) == b"+OK\r\n"
    assert run(node, "SET", "k", "1", session=a) == b"+QUEUED\r\n"
    assert run(node, "INCR", "k", session=a) == b"+QUEUED\r\n"
    assert run(node, "GET", "k", session=b) is None  # nothing ran yet
    assert run(node, "EXEC", session=a) == [b"+OK\r\n", 2]
    assert run(node, "WATCH", "k", session=a) == b"+OK\r\n"
    run(node, "MULTI", session=a)
    run(node, "SET", "k", "mine", session=a)
    run(node, "SET", "k", "theirs", session=b)
    assert run(node, "EXEC", session=a) is NULL_ARRAY
    assert run(node, "GET", "k", session=a) == b"theirs"
    run(node, "MULTI", session=a)
    assert str(run(node, "GET", session=a)) == "ERR wrong number of arguments for 'get' command"
    assert str(run(node, "EXEC", session=a)).startswith("EXECABORT")
    assert str(run(node, "EXEC", session=a)) == "ERR EXEC without MULTI"


def test_getver_and_cas(node: FakeNode) -> None:
    assert run(node, "GETVER", "k") is None
    first = run(node, "CAS", "k", "0", "a")
    assert isinstance(first, int) and first > 0
    assert run(node, "GETVER", "k") == first
    assert run(node, "CAS", "k", "0", "b") is None  # someone else's version now
    second = run(node, "CAS", "k", str(first), "b", "EX", "10")
    assert isinstance(second, int) and second > first
    assert run(node, "GET", "k") == b"b" and run(node, "TTL", "k") == 10


def clustered_node() -> Node:
    """A node in cluster mode, never started: its command table has the peer commands."""
    config = NodeConfig(cluster_secret="s3cret", requirepass="pw", port=7000)
    return Node(config, clock=ManualClock())


def test_peer_authentication() -> None:
    """The server's side of the handshake (auth.py); tests/unit/test_peer_handshake.py
    tries every way around it."""
    from geocache import auth

    node = clustered_node()
    session = Session(node, 1)
    nonce = auth.new_nonce()
    hello = dispatch(node.table, session, [b"GC.HELLO", b"n2", nonce])
    assert isinstance(hello, list)
    server_id, server_nonce, server_proof = hello
    t = auth.Transcript("n2", server_id.decode(), nonce, server_nonce)
    assert auth.verify("s3cret", auth.SERVER_TO_CLIENT, t, server_proof)  # it proved first
    bad = auth.proof("wrong", auth.CLIENT_TO_SERVER, t)
    assert str(dispatch(node.table, session, [b"GC.AUTH", bad])).startswith("NOPERM")
    assert session.closing and not session.peer_id
    # A proof is good for one handshake only.
    session.closing = False
    good = auth.proof("s3cret", auth.CLIENT_TO_SERVER, t)
    assert str(dispatch(node.table, session, [b"GC.AUTH", good])).startswith("NOPERM")
    hello = dispatch(node.table, session, [b"GC.HELLO", b"n2", nonce])
    assert isinstance(hello, list)
    t = auth.Transcript("n2", hello[0].decode(), nonce, hello[1])
    good = auth.proof("s3cret", auth.CLIENT_TO_SERVER, t)
    assert dispatch(node.table, session, [b"GC.AUTH", good]) == OK
    assert session.peer_id == "n2" and session.authenticated


@pytest.mark.parametrize(
    "argv",
    [
        [b"GC.SWIM", b"a:1", b"x"],
        [b"GC.APPLY", b"k", b"v", b"0", b"1", b"n"],
        [b"GC.APPLYDEL", b"k", b"1", b"n"],
        [b"GC.APPLYBATCH", b"k", b"1", b"n", b"0", b"v", b""],
        [b"GC.FETCH", b"k"],
        [b"gc.fwd", b"2", b"0", b"SET", b"k", b"v"],
        [b"GC.DIGEST"],
        [b"GC.BUCKET", b"1"],
        [b"GC.REPAIR", b"1"],
        [b"GC.GEO", b"eu"],
    ],
)
def test_peer_commands_are_refused_to_unproven_sessions_in_one_place(argv: list[bytes]) -> None:
    node = clustered_node()
    session = Session(node, 1)
    assert dispatch(node.table, session, argv) == NOAUTH
    assert dispatch(node.table, session, [b"AUTH", b"pw"]) == OK
    assert dispatch(node.table, session, argv) == NOT_A_PEER
    assert node.store.peek(b"k") is None


def test_no_secret_no_peer_commands() -> None:
    """A standalone node has no peer commands at all: not even the handshake."""
    node = FakeNode()
    session = Session(node, 1)  # type: ignore[arg-type]
    for name in ("GC.HELLO", "GC.AUTH", "GC.SWIM", "GC.APPLY"):
        reply = run(node, name, "a", "b", session=session)
        assert str(reply).startswith("ERR unknown command"), reply
    assert session.peer_id == ""
