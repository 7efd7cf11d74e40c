"""CLIENT PAUSE/UNPAUSE, CLIENT KILL and the slow log against a real node process
(or redis-server with GEOCACHE_TEST_TARGET=redis): timing and other connections, which
the differential suite's one connection cannot show."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from support import ServerProcess

# A paused write waits at least most of the pause; generous upper bounds absorb a
# loaded machine.
PAUSE_MS = 400


@pytest.fixture
def server(node: ServerProcess) -> Iterator[ServerProcess]:
    with node.raw() as raw:
        assert raw.call("FLUSHALL") == b"+OK\r\n"
    yield node
    with node.raw() as raw:
        raw.call("CLIENT", "UNPAUSE")


def test_pause_write_holds_writes_not_reads(server: ServerProcess) -> None:
    with server.raw() as admin, server.raw() as writer, server.raw() as reader:
        assert writer.call("SET", "k", "before") == b"+OK\r\n"
        assert admin.call("CLIENT", "PAUSE", PAUSE_MS, "WRITE") == b"+OK\r\n"
        started = time.monotonic()
        assert reader.call("GET", "k") == b"$6\r\nbefore\r\n"
        assert time.monotonic() - started < PAUSE_MS / 2000
        assert writer.call("SET", "k", "after") == b"+OK\r\n"
        assert time.monotonic() - started >= PAUSE_MS / 1000 * 0.8
        assert reader.call("GET", "k") == b"$5\r\nafter\r\n"


def test_unpause_releases_held_commands_in_order(server: ServerProcess) -> None:
    """A read behind a held write waits for it; CLIENT UNPAUSE (not itself a write)
    ends the pause at once."""
    with server.raw() as admin, server.raw() as client:
        assert admin.call("CLIENT", "PAUSE", 10_000, "WRITE") == b"+OK\r\n"
        client.send_many([["SET", "k", "1"], ["INCR", "k"], ["GET", "k"]])
        time.sleep(0.1)
        started = time.monotonic()
        assert admin.call("GET", "k") == b"$-1\r\n"  # nothing ran yet
        assert admin.call("CLIENT", "UNPAUSE") == b"+OK\r\n"
        assert client.read_replies(3) == [b"+OK\r\n", b":2\r\n", b"$1\r\n2\r\n"]
        assert time.monotonic() - started < 5


def test_pause_all_holds_even_unpause(server: ServerProcess) -> None:
    """As Redis: under PAUSE ALL every client command waits, CLIENT UNPAUSE included."""
    with server.raw() as admin, server.raw() as other:
        assert admin.call("CLIENT", "PAUSE", PAUSE_MS, "ALL") == b"+OK\r\n"
        started = time.monotonic()
        assert other.call("CLIENT", "UNPAUSE") == b"+OK\r\n"
        assert time.monotonic() - started >= PAUSE_MS / 1000 * 0.8


def test_kill_another_client_by_id(server: ServerProcess) -> None:
    with server.raw() as killer, server.raw() as victim:
        victim_id = victim.call("CLIENT", "ID")[1:-2].decode()
        assert killer.call("CLIENT", "KILL", "ID", victim_id) == b":1\r\n"
        assert victim.is_closed_by_peer()
        assert killer.call("PING") == b"+PONG\r\n"


def test_client_list_shows_the_selected_database(server: ServerProcess) -> None:
    with server.raw() as client:
        assert client.call("SELECT", "5") == b"+OK\r\n"
        assert b" db=5 " in client.call("CLIENT", "INFO")


def test_slow_log_records_commands_over_the_threshold(server: ServerProcess) -> None:
    with server.raw() as client:
        assert client.call("CONFIG", "SET", "slowlog-log-slower-than", "0") == b"+OK\r\n"
        try:
            assert client.call("SLOWLOG", "RESET") == b"+OK\r\n"
            assert client.call("SET", "slow", "v") == b"+OK\r\n"
            entries = client.call("SLOWLOG", "GET", "1")
            assert b"$3\r\nSET\r\n$4\r\nslow\r\n$1\r\nv\r\n" in entries
        finally:
            client.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
