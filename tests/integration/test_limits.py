"""Limits, bad input and lifecycle of a real node process.

Every load loop is bounded twice: by a count and by a deadline. A client that is cut
off must be cut off while another client keeps being served, and the node must keep
everything it acknowledged.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from support import (
    NodeFactory,
    RawClient,
    ServerProcess,
    decode,
    encode_command,
    split_replies,
)

PASSWORD = "s3cret-pw"
NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
MAX_CLIENTS_ERROR = b"-ERR max number of clients reached\r\n"

# Budget for a node to notice something (a close, a limit, a signal), in seconds.
DEADLINE_S = 15.0
# Output limit for the slow-reader test: small against the 1 GB the pipeline asks for.
OUTPUT_LIMIT_BYTES = 1_000_000
SLOW_READER_GETS = 100_000
SLOW_READER_VALUE = b"v" * 10_240


def poll(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> bool:
    """Call `condition` until it is true or the deadline passes (no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def assert_serving(server: ServerProcess) -> None:
    """A brand-new client gets served: the node as a whole is healthy."""
    with server.raw() as client:
        assert client.call("PING") == b"+PONG\r\n"


# --- authentication ----------------------------------------------------------------------


@pytest.fixture
def secured(node_factory: NodeFactory) -> ServerProcess:
    return node_factory(requirepass=PASSWORD)


def test_commands_need_auth(secured: ServerProcess) -> None:
    with secured.raw() as client:
        for argv in (["PING"], ["GET", "k"], ["SET", "k", "v"], ["CLIENT", "SETNAME", "x"]):
            assert client.call(*argv) == NOAUTH, argv
        assert client.call("HELLO", "3") == (
            b"-NOAUTH HELLO must be called with the client already authenticated, otherwise"
            b" the HELLO AUTH <user> <pass> option can be used to authenticate the client and"
            b" select the RESP protocol version at the same time\r\n"
        )
        assert client.call("AUTH", "wrong") == WRONGPASS
        assert client.call("AUTH", "default", "wrong") == WRONGPASS
        assert client.call("AUTH", "nosuchuser", PASSWORD) == WRONGPASS
        assert client.call("GET", "k") == NOAUTH
        assert client.call("AUTH", PASSWORD) == b"+OK\r\n"
        assert client.call("SET", "k", "v") == b"+OK\r\n"
        assert client.call("GET", "k") == b"$1\r\nv\r\n"
        # A failed AUTH does not log an authenticated connection out.
        assert client.call("AUTH", "wrong") == WRONGPASS
        assert client.call("PING") == b"+PONG\r\n"


def test_auth_with_username_and_hello(secured: ServerProcess) -> None:
    with secured.raw() as client:
        assert client.call("AUTH", "default", PASSWORD) == b"+OK\r\n"
        assert client.call("PING") == b"+PONG\r\n"
    with secured.raw() as client:
        assert client.call("HELLO", "3", "AUTH", "default", "wrong") == WRONGPASS
        hello = decode(client.call("HELLO", "3", "AUTH", "default", PASSWORD))
        assert hello.kind == "%" and hello.pairs[b"proto"].value == 3
        assert client.call("GET", "missing") == b"_\r\n"


def test_unauthenticated_clients_cannot_announce_big_requests(secured: ServerProcess) -> None:
    """Before AUTH, Redis refuses > 1M arguments and > 16 KB bulks: memory stays bounded."""
    with secured.raw() as client:
        client.send_raw(b"*2000000\r\n")
        assert client.read_until_closed() == (
            b"-ERR Protocol error: unauthenticated multibulk length\r\n"
        )
    with secured.raw() as client:
        client.send_raw(b"*2\r\n$3\r\nGET\r\n$20000\r\n")
        assert client.read_until_closed() == b"-ERR Protocol error: unauthenticated bulk length\r\n"
    assert_serving_authed(secured)


def assert_serving_authed(server: ServerProcess) -> None:
    with server.raw() as client:
        assert client.call("AUTH", PASSWORD) == b"+OK\r\n"
        assert client.call("PING") == b"+PONG\r\n"


def test_quit_before_auth(secured: ServerProcess) -> None:
    with secured.raw() as client:
        client.send("QUIT")
        assert client.read_until_closed() == b"+OK\r\n"


def test_redis_py_with_password(secured: ServerProcess) -> None:
    with redis.Redis(host=secured.host, port=secured.port, password=PASSWORD) as client:
        assert client.set("k", "v")
        assert client.get("k") == b"v"
    with redis.Redis(host=secured.host, port=secured.port, password=PASSWORD, protocol=3) as r3:
        assert r3.get("k") == b"v"
    # AuthenticationError is a ConnectionError: without this, redis-py retries 10 times.
    no_retry = Retry(NoBackoff(), retries=0)
    with (
        redis.Redis(host=secured.host, port=secured.port, retry=no_retry) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.get("k")
    with (
        redis.Redis(
            host=secured.host, port=secured.port, password="wrong", retry=no_retry
        ) as wrong,
        pytest.raises(redis.AuthenticationError),
    ):
        wrong.get("k")


# --- max clients -----------------------------------------------------------------------


def connect_when_slot_free(server: ServerProcess) -> RawClient:
    """A served connection; retries while the node still counts recently closed ones."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        client = server.raw()
        try:
            client.send("PING")
            if client.read_reply() == b"+PONG\r\n":
                return client
        except (ConnectionError, TimeoutError):
            pass
        client.close()
        if time.monotonic() > deadline:
            raise AssertionError("no connection slot became free")
        time.sleep(0.02)


def test_max_clients(node_factory: NodeFactory) -> None:
    server = node_factory(max_clients=3)
    clients = [connect_when_slot_free(server) for _ in range(3)]
    try:
        with server.raw() as refused:
            assert refused.read_until_closed() == MAX_CLIENTS_ERROR
        for client in clients:
            assert client.call("PING") == b"+PONG\r\n"
        clients.pop().close()
        clients.append(connect_when_slot_free(server))
        assert clients[-1].call("SET", "k", "v") == b"+OK\r\n"
    finally:
        for client in clients:
            client.close()


# --- oversized requests ----------------------------------------------------------------


def stream_until_cut_off(client: RawClient, header: bytes, max_bytes: int) -> int:
    """Send `header`, then filler until the server closes on us; return bytes sent."""
    client.sock.sendall(header)
    sent = 0
    chunk = b"x" * 65536
    deadline = time.monotonic() + DEADLINE_S
    client.sock.settimeout(1.0)
    try:
        while sent < max_bytes and time.monotonic() < deadline:
            sent += client.sock.send(chunk)
    except (TimeoutError, ConnectionError):
        pass
    finally:
        client.sock.settimeout(client.timeout_s)
    return sent


def assert_cut_off_with_optional_error(client: RawClient) -> None:
    received = client.read_until_closed()
    replies, rest = split_replies(received)
    assert rest == b"", received[:200]
    assert all(reply.startswith(b"-ERR") for reply in replies), received[:200]


def test_two_gigabyte_bulk_is_cut_off(node: ServerProcess) -> None:
    with node.raw() as bystander, node.raw() as attacker:
        assert bystander.call("SET", "safe", "kept") == b"+OK\r\n"
        header = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$2147483648\r\n"
        stream_until_cut_off(attacker, header, max_bytes=64 * 1024 * 1024)
        assert bystander.call("GET", "safe") == b"$4\r\nkept\r\n"
        assert_cut_off_with_optional_error(attacker)
        assert bystander.call("EXISTS", "big") == b":0\r\n"
    assert_serving(node)


def test_query_buffer_limit(node_factory: NodeFactory) -> None:
    server = node_factory(max_query_buffer_bytes=1024 * 1024)
    with server.raw() as bystander, server.raw() as attacker:
        header = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$4000000\r\n"
        sent = stream_until_cut_off(attacker, header, max_bytes=16 * 1024 * 1024)
        assert sent < 16 * 1024 * 1024
        assert_cut_off_with_optional_error(attacker)
        assert bystander.call("PING") == b"+PONG\r\n"
        assert bystander.call("EXISTS", "big") == b":0\r\n"


# --- slow readers ----------------------------------------------------------------------


def test_slow_reader_is_disconnected_at_its_output_limit(node_factory: NodeFactory) -> None:
    """100,000 GETs of 10 KB (1 GB of replies) from a client that never reads."""
    server = node_factory(max_output_buffer_bytes=OUTPUT_LIMIT_BYTES)
    pipeline = encode_command(["GET", "big"]) * SLOW_READER_GETS
    with server.raw() as slow, server.raw() as third:
        assert slow.call("SET", "big", SLOW_READER_VALUE) == b"+OK\r\n"
        slow_id = decode(slow.call("CLIENT", "ID")).value
        assert isinstance(slow_id, int)
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sender = threading.Thread(target=send_ignoring_reset, args=(slow.sock, pipeline))
        sender.start()
        served = 0

        def slow_reader_gone() -> bool:
            nonlocal served
            assert third.call("INCR", "third-client") == b":%d\r\n" % (served + 1)
            served += 1
            return not is_listed(third, slow_id)

        try:
            assert poll(slow_reader_gone), "the node never cut the slow reader off"
        finally:
            sender.join(timeout=DEADLINE_S)
        assert not sender.is_alive()
        received = slow.read_until_closed()
        assert len(received) < SLOW_READER_GETS * len(SLOW_READER_VALUE) // 10
        assert third.call("GET", "big") == b"$10240\r\n" + SLOW_READER_VALUE + b"\r\n"
    assert_serving(server)


def is_listed(client: RawClient, client_id: int) -> bool:
    """Whether CLIENT LIST (asked on `client`) still shows the connection `client_id`."""
    listing = decode(client.call("CLIENT", "LIST")).value
    assert isinstance(listing, bytes)
    return any(line.startswith(b"id=%d " % client_id) for line in listing.splitlines())


def send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    """Write everything, or stop when the server closes the connection."""
    sock.settimeout(DEADLINE_S)
    view = memoryview(data)
    try:
        while view:
            sent = sock.send(view[:262144])
            view = view[sent:]
    except OSError:  # reset, broken pipe, timeout: the server stopped taking data
        pass


# --- bad input -------------------------------------------------------------------------

PROTOCOL_ERRORS = {
    "multibulk-length": (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    "multibulk-too-long": (
        b"*3000000000\r\n",
        b"-ERR Protocol error: invalid multibulk length\r\n",
    ),
    "bulk-length": (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    "negative-bulk": (b"*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    "missing-dollar": (b"*1\r\nxyz\r\n", b"-ERR Protocol error: expected '$', got 'x'\r\n"),
    "unbalanced-quotes": (
        b'SET "a\r\n',
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    ),
    "inline-too-big": (b"x" * 70_000, b"-ERR Protocol error: too big inline request\r\n"),
    "after-good-command": (
        b"*1\r\n$4\r\nPING\r\n*abc\r\n",
        b"+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n",
    ),
}


@pytest.mark.parametrize(("data", "expected"), PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS)
def test_garbage_gets_protocol_error_then_close(
    node: ServerProcess, data: bytes, expected: bytes
) -> None:
    with node.raw() as bystander, node.raw() as client:
        client.send_raw(data)
        assert client.read_until_closed() == expected
        assert bystander.call("PING") == b"+PONG\r\n"


def test_quit_replies_ok_and_closes(node: ServerProcess) -> None:
    with node.raw() as client:
        assert client.call("FLUSHALL") == b"+OK\r\n"
        # Commands after QUIT in the same packet are not executed.
        client.send_many([["SET", "before", "1"], ["QUIT"], ["SET", "after", "1"]])
        assert client.read_until_closed() == b"+OK\r\n+OK\r\n"
    with node.raw() as client:
        assert client.call("EXISTS", "before", "after") == b":1\r\n"


def test_idle_clients_are_closed(node_factory: NodeFactory) -> None:
    server = node_factory(idle_timeout_s=1)
    with server.raw() as idle, server.raw() as active:
        assert idle.call("PING") == b"+PONG\r\n"
        started = time.monotonic()

        def idle_closed() -> bool:
            assert active.call("PING") == b"+PONG\r\n"  # activity keeps this one open
            return idle.is_closed_by_peer(timeout_s=0.05)

        assert poll(idle_closed, timeout_s=DEADLINE_S)
        assert time.monotonic() - started >= 0.9
        assert active.call("PING") == b"+PONG\r\n"


# --- memory limits (geocache only: Redis has no per-key or per-value limit) -----------------


@pytest.mark.geocache_only
def test_value_larger_than_max_value_bytes_is_refused(node_factory: NodeFactory) -> None:
    server = node_factory(max_value_bytes=1000)
    with server.raw() as client:
        assert client.call("SET", "k", b"x" * 1001).startswith(b"-")
        assert client.call("EXISTS", "k") == b":0\r\n"
        assert client.call("SET", "k", b"x" * 1000) == b"+OK\r\n"
        assert client.call("APPEND", "k", "y").startswith(b"-")
        assert client.call("SETRANGE", "k", "1000", "y").startswith(b"-")
        assert client.call("STRLEN", "k") == b":1000\r\n"
        assert client.call("MSET", "a", "1", "b", b"x" * 1001).startswith(b"-")
        assert client.call("EXISTS", "a", "b") == b":0\r\n"  # never half-stored
        assert client.call("PING") == b"+PONG\r\n"


@pytest.mark.geocache_only
def test_max_keys_evicts_least_recently_used(node_factory: NodeFactory) -> None:
    server = node_factory(max_keys=100)
    with server.raw() as client:
        client.send_many([["SET", f"k{i}", i] for i in range(100)])
        assert client.read_replies(100) == [b"+OK\r\n"] * 100
        assert client.call("GET", "k0") == b"$1\r\n0\r\n"  # k0 becomes most recent
        assert client.call("SET", "k100", "100") == b"+OK\r\n"
        assert client.call("DBSIZE") == b":100\r\n"
        assert client.call("EXISTS", "k0", "k1", "k100") == b":2\r\n"  # k1 was the LRU
        client.send_many([["SET", f"n{i}", i] for i in range(200)])
        assert client.read_replies(200) == [b"+OK\r\n"] * 200
        assert client.call("DBSIZE") == b":100\r\n"
        assert client.call("EXISTS", *[f"n{i}" for i in range(100, 200)]) == b":100\r\n"


@pytest.mark.geocache_only
def test_max_bytes_bounds_the_store(node_factory: NodeFactory) -> None:
    server = node_factory(max_bytes=1_000_000)
    value = b"v" * 1000
    with server.raw() as client:
        client.send_many([["SET", f"k{i}", value] for i in range(5000)])
        assert client.read_replies(5000) == [b"+OK\r\n"] * 5000
        keys = decode(client.call("DBSIZE")).value
        assert isinstance(keys, int) and 100 < keys < 1000
        assert client.call("GET", "k4999") == b"$1000\r\n" + value + b"\r\n"
        assert client.call("EXISTS", "k0") == b":0\r\n"
        assert client.call("SET", "huge", b"x" * 2_000_000).startswith(b"-")
        assert client.call("EXISTS", "huge") == b":0\r\n"


# --- shutdown ----------------------------------------------------------------------------


def test_sigterm_exits_zero(node_factory: NodeFactory) -> None:
    server = node_factory()
    with server.raw() as client:
        assert client.call("SET", "k", "v") == b"+OK\r\n"
        server.terminate()
        assert server.wait(timeout_s=DEADLINE_S) == 0
        assert client.read_until_closed() == b""


def test_sigterm_delivers_replies_for_a_received_pipeline(node_factory: NodeFactory) -> None:
    """500 INCRs in one packet: once the first reply is out, all 500 must follow."""
    server = node_factory()
    with server.raw() as client:
        client.send_many([["INCR", "counter"]] * 500)
        first = client.read_reply()
        assert first == b":1\r\n"
        server.terminate()
        rest = client.read_until_closed()
        replies, partial = split_replies(rest)
        assert partial == b""
        assert [first, *replies] == [b":%d\r\n" % i for i in range(1, 501)]
    assert server.wait(timeout_s=DEADLINE_S) == 0


def test_sigterm_during_a_long_pipeline(node_factory: NodeFactory) -> None:
    """Whatever arrives before the close is a clean, in-order prefix of the replies."""
    server = node_factory()
    total = 20_000
    pipeline = encode_command(["INCR", "counter"]) * total
    with server.raw() as client:
        sender = threading.Thread(target=send_ignoring_reset, args=(client.sock, pipeline))
        sender.start()
        try:
            assert client.read_reply() == b":1\r\n"
            server.terminate()
            received = b":1\r\n" + client.read_until_closed()
        finally:
            sender.join(timeout=DEADLINE_S)
        assert not sender.is_alive()
    # An abortive close may cut the last reply short, but never reorder or corrupt.
    expected = b"".join(b":%d\r\n" % i for i in range(1, total + 1))
    assert expected.startswith(received), received[-100:]
    assert server.wait(timeout_s=DEADLINE_S) == 0
