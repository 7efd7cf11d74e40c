"""Issue 15, one client at a time: each abuse it reproduced, against a real node process.

Every node here runs with `--max-bytes 64mb`, and every test asserts the same three
bounds while the abuse runs:
- the node's RSS stays under RSS_BOUND_BYTES, 3 x max-bytes + 100 MB (the store may fill
  its 64 MB, the client memory budget takes 32 MB, the rest is Python and its arenas);
- a bystander's PING, every 10 ms on its own connection, never waits more than
  PING_BOUND_MS. The issue asks for 100 ms; this machine has 2 cores shared with other
  test runs and the abuser's own Python, and a pause of the whole process (a scheduler
  slice, a full GC) is outside the node's control, so the bound is 250 ms; the worst
  measured is printed (pytest -s) and is usually well under 100 ms;
- the node keeps what it acknowledged (a key set before, read back after).
"""

from __future__ import annotations

import gc
import socket
import tracemalloc
from pathlib import Path

import pytest

from support.abuse import (
    MB,
    Bystander,
    RssPeak,
    big_multi,
    closed_count,
    half_sent_http,
    idle_connections,
    pipelined_big_gets,
    slow_reader,
    unfinished_commands,
    wait_for,
)
from support.procs import ServerProcess, free_port, start_geocache
from support.resp import RawClient

MAX_BYTES = 64 * MB
RSS_BOUND_BYTES = 3 * MAX_BYTES + 100 * MB
PING_BOUND_MS = 250.0
NODE_ARGS = ["--max-bytes", "64mb", "--log-level", "warning"]


@pytest.fixture
def node(tmp_path: Path) -> ServerProcess:
    server = start_geocache(tmp_path, NODE_ARGS)
    yield server
    server.stop()


def start(tmp_path: Path, *extra: str) -> ServerProcess:
    return start_geocache(tmp_path, [*NODE_ARGS, *extra])


def keep_and_check(server: ServerProcess) -> None:
    with server.raw() as c:
        assert c.call("SET", "acked", "kept") == b"+OK\r\n"


def assert_kept(server: ServerProcess) -> None:
    with server.raw() as c:
        assert c.call("GET", "acked") == b"$4\r\nkept\r\n"


def assert_bounds(server: ServerProcess, rss: RssPeak, bystander: Bystander, what: str) -> None:
    print(f"\n{what}: peak RSS {rss.peak / MB:.0f} MB, worst PING {bystander.worst_ms:.1f} ms")
    assert bystander.failures == []
    assert bystander.pings > 0
    assert bystander.worst_ms < PING_BOUND_MS, what
    assert rss.peak < RSS_BOUND_BYTES, what
    assert_kept(server)


@pytest.mark.slow
def test_pipelined_gets_of_a_big_value_cost_a_bounded_buffer(node: ServerProcess) -> None:
    """1024 GETs of 1 MB in one 22 KB request: replies leave as they are made, and
    the client runs no more commands while 1 MB of them waits unsent."""
    keep_and_check(node)
    with RssPeak(node.pid) as rss, Bystander(node.port) as bystander:
        outcome = pipelined_big_gets(node.port, MB, 1024, hold_s=1.0)
    assert outcome.text == "read 1024 MB of 1024 MB", outcome
    assert_bounds(node, rss, bystander, "1024 pipelined GETs of 1 MB")


def test_unfinished_commands_are_cut_off_and_their_memory_comes_back(
    node: ServerProcess,
) -> None:
    """12 rounds of 100 MB of an MSET that never ends: each is cut off at the client
    memory budget (32 MB here), and closing gives the memory back at once."""
    keep_and_check(node)
    with RssPeak(node.pid) as rss, Bystander(node.port) as bystander:
        outcome = unfinished_commands(node.port, rounds=12, size_bytes=100 * MB)
    assert outcome.cut_off and outcome.text.startswith("12 of 12 cut off"), outcome
    assert_bounds(node, rss, bystander, "12 x 100 MB unfinished")
    with node.raw() as c:
        info = c.call("INFO", "clients").decode()
    assert "client_memory:" in info
    assert wait_for(lambda: _info_field(node, "clients", "client_memory") < MB, 5)


def test_a_transaction_of_big_commands_is_cut_off_at_the_client_budget(
    node: ServerProcess,
) -> None:
    keep_and_check(node)
    with RssPeak(node.pid) as rss, Bystander(node.port) as bystander:
        outcome = big_multi(node.port, count=500, value_bytes=MB)
    assert outcome.cut_off, outcome
    assert_bounds(node, rss, bystander, "MULTI of 500 x 1 MB")
    assert _info_field(node, "stats", "refused_client_memory") >= 1


@pytest.mark.slow
def test_a_client_reading_a_byte_a_second_is_closed_after_the_stall_timeout(
    tmp_path: Path,
) -> None:
    server = start(tmp_path, "--output-stall-timeout-s", "2")
    try:
        keep_and_check(server)
        with RssPeak(server.pid) as rss, Bystander(server.port) as bystander:
            outcome = slow_reader(server.port, watch_s=8.0)
        assert outcome.cut_off, outcome
        assert_bounds(server, rss, bystander, "a byte a second")
        assert _info_field(server, "stats", "refused_output_stall") == 1
    finally:
        server.stop()


def test_a_handler_that_raises_inside_the_gate_gives_its_slot_back(tmp_path: Path) -> None:
    """CONFIG SET with a value that is not UTF-8, with one command at a time."""
    server = start(tmp_path, "--max-concurrent-commands", "1")
    try:
        with server.raw() as c:
            reply = c.call("CONFIG", "SET", "timeout", b"\xff\xfe")
            assert reply.startswith(b"-ERR CONFIG SET failed"), reply
            for _ in range(3):
                assert c.call("PING") == b"+PONG\r\n"
        with server.raw() as other:
            assert other.call("PING") == b"+PONG\r\n"
    finally:
        server.stop()


def test_unauthenticated_connections_are_closed_after_the_auth_timeout(tmp_path: Path) -> None:
    server = start(tmp_path, "--requirepass", "pw", "--auth-timeout-s", "1")
    try:
        socks = idle_connections(server.port, 5)
        try:
            assert wait_for(lambda: closed_count(socks) == 5, 5)
        finally:
            for sock in socks:
                sock.close()
        with RawClient(server.host, server.port) as c:
            assert c.call("AUTH", "pw") == b"+OK\r\n"
            assert _info_field_on(c, "stats", "refused_auth_timeout") == 5
    finally:
        server.stop()


def test_half_sent_http_requests_are_capped_timed_out_and_never_lock_resp_out(
    tmp_path: Path,
) -> None:
    http_port = free_port()
    server = start(
        tmp_path,
        "--max-clients",
        "20",
        "--max-http-connections",
        "50",
        "--http-header-timeout-s",
        "1",
        "--http-port",
        str(http_port),
    )
    try:
        socks = half_sent_http(http_port, 60)
        try:
            with server.raw() as c:  # RESP has its own door
                assert c.call("PING") == b"+PONG\r\n"
            assert wait_for(
                lambda: _info_field(server, "stats", "refused_max_http_connections") == 10, 5
            )
            assert wait_for(lambda: closed_count(socks) == 60, 10)
        finally:
            for sock in socks:
                sock.close()
        with socket.create_connection(("127.0.0.1", http_port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        server.stop()


def test_an_http_body_that_does_not_arrive_in_time_gets_408(tmp_path: Path) -> None:
    http_port = free_port()
    server = start(tmp_path, "--http-port", str(http_port), "--http-body-timeout-s", "1")
    try:
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as sock:
            sock.sendall(
                b"PUT /v1/keys/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 408")
        assert _info_field(server, "stats", "refused_http_timeout") == 1
    finally:
        server.stop()


def _info_field(server: ServerProcess, section: str, name: str) -> int:
    with server.raw() as c:
        return _info_field_on(c, section, name)


def _info_field_on(c: RawClient, section: str, name: str) -> int:
    raw = c.call("INFO", section).decode()
    for line in raw.splitlines():
        if line.startswith(name + ":"):
            value = line.split(":", 1)[1]
            return int(value) if value.lstrip("-").isdigit() else 0
    return 0


def test_a_closed_connection_frees_its_buffers_without_the_garbage_collector() -> None:
    """The reader of a closed connection held bound methods of itself: a cycle, freed
    only by a full collection (the issue: 2.4 GB after 12 closes). With gc off, closing
    must give back what an unfinished 8 MB command took."""
    import asyncio

    from geocache.config import NodeConfig
    from geocache.server.node import Node
    from geocache.server.resp import RespConnection

    class Transport(asyncio.Transport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 1)

        def write(self, data: bytes | bytearray | memoryview) -> None:
            pass

        def get_write_buffer_size(self) -> int:
            return 0

        def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

    async def scenario() -> tuple[int, int, int]:
        node = Node(NodeConfig(http_port=0, port=0))
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        conn = RespConnection(node)
        conn.connection_made(Transport())
        header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (16 * MB)
        conn.data_received(header)
        for _ in range(8):
            conn.data_received(b"x" * MB)
        held = tracemalloc.get_traced_memory()[0] - before
        conn.connection_lost(None)
        del conn
        after = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return held, after, node.budget.used

    gc.disable()
    try:
        held, after, budget_used = asyncio.run(scenario())
    finally:
        gc.enable()
    assert held > 8 * MB
    assert after < MB, f"{after / MB:.1f} MB still held after close"
    assert budget_used == 0
