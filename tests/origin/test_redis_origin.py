"""A node in front of a real redis-server: misses fill from it, once per key."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from support import ServerProcess, start_geocache, start_redis
from support.cluster import client, poll

from .burst import burst

TTL_S = 1.0
CONCURRENT_GETS = 100


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_redis(tmp_path_factory.mktemp("origin"))
    yield server
    server.stop()


@pytest.fixture
def origin_client(origin: ServerProcess) -> Iterator[redis.Redis]:
    with client(origin) as c:
        c.flushall()
        c.config_resetstat()
        yield c


@pytest.fixture
def proxy(tmp_path: Path, origin: ServerProcess) -> Iterator[ServerProcess]:
    server = start_geocache(tmp_path, ["--origin", origin.url, "--origin-ttl-s", str(TTL_S)])
    yield server
    server.stop()


def origin_gets(origin_client: redis.Redis) -> int:
    """GETs the origin has run since its stats were reset."""
    stats = origin_client.info("commandstats").get("cmdstat_get")
    return int(stats["calls"]) if stats else 0


def test_a_miss_fills_from_the_origin_and_then_hits(
    proxy: ServerProcess, origin_client: redis.Redis
) -> None:
    origin_client.set("user:1", "ada")
    with client(proxy) as c:
        assert c.get("user:1") == b"ada"
        assert origin_gets(origin_client) == 1
        assert c.get("user:1") == b"ada"
        assert 0 < c.pttl("user:1") <= TTL_S * 1000
        assert origin_gets(origin_client) == 1
        assert c.get("nobody") is None
        origin_client.set("user:2", "bob")
        assert c.mget("user:1", "user:2", "nobody") == [b"ada", b"bob", None]
        info = c.info("origin")
        assert info["origin_found"] == 2 and info["origin_not_found"] >= 1
        assert info["origin_loads"] == info["origin_found"] + info["origin_not_found"]
        assert c.info("stats")["keyspace_hits"] == 2  # the second GET, and user:1 in MGET


def test_the_ttl_of_loaded_values_is_honoured(
    proxy: ServerProcess, origin_client: redis.Redis
) -> None:
    origin_client.set("price", "10")
    with client(proxy) as c:
        assert c.get("price") == b"10"
        origin_client.set("price", "12")
        assert c.get("price") == b"10"  # cached until its TTL passes
        poll(lambda: c.pttl("price") == -2, TTL_S + 5, "the loaded value to expire")
        assert c.get("price") == b"12"
    assert origin_gets(origin_client) == 2


def test_concurrent_gets_of_a_missing_key_load_it_once(
    proxy: ServerProcess, origin_client: redis.Redis
) -> None:
    origin_client.set("hot", "value")
    replies = burst([proxy.address] * CONCURRENT_GETS, [b"GET", b"hot"])
    assert replies == [b"$5\r\nvalue\r\n"] * CONCURRENT_GETS
    assert origin_gets(origin_client) == 1
    with client(proxy) as c:
        info = c.info("origin")
        stats = c.info("stats")
    assert info["origin_loads"] == 1
    # Every GET but the first either waited for its load or found the value stored.
    assert info["origin_coalesced"] + stats["keyspace_hits"] == CONCURRENT_GETS - 1


def test_the_origin_database_and_a_down_origin(
    tmp_path: Path, origin: ServerProcess, origin_client: redis.Redis
) -> None:
    with redis.Redis(host=origin.host, port=origin.port, db=3) as db3:
        db3.set("in-db-3", "yes")
    origin_url = f"redis://{origin.host}:{origin.port}/3"
    down_url = f"redis://127.0.0.1:{_closed_port()}/0"
    nodes = [
        start_geocache(tmp_path, ["--origin", origin_url]),
        start_geocache(tmp_path, ["--origin", down_url, "--origin-timeout-s", "2"]),
    ]
    try:
        with client(nodes[0]) as c:
            assert c.get("in-db-3") == b"yes"
        with client(nodes[1]) as c:
            started = time.monotonic()
            with pytest.raises(redis.ResponseError, match="origin unavailable"):
                c.get("anything")
            assert time.monotonic() - started < 2  # refused at once, not timed out
            assert c.info("origin")["origin_errors"] == 1
    finally:
        for node in nodes:
            node.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed
