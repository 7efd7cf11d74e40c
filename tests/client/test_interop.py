"""A value set by geocache.Client reads the same from redis-cli and redis-py, and the
other way round (the value rule of client/values.py, on a node process)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import redis

from client.regions import addr
from geocache import AsyncClient, Client
from support.procs import ServerProcess

pytestmark = pytest.mark.timeout(30)


def cli(redis_cli: str, node: ServerProcess, *args: str) -> bytes:
    """redis-cli's raw output (--raw: the value's bytes and a newline, no quoting)."""
    done = subprocess.run(
        [redis_cli, "-h", node.host, "-p", str(node.port), "--raw", *args],
        capture_output=True,
        timeout=10,
        check=True,
    )
    return done.stdout.removesuffix(b"\n")


@pytest.fixture
def redis_py(solo: ServerProcess) -> Iterator[redis.Redis]:
    with redis.Redis(host=solo.host, port=solo.port, socket_timeout=5) as r:
        yield r


def test_what_the_client_writes_others_read(
    client: Client, solo: ServerProcess, redis_py: redis.Redis, redis_cli: str
) -> None:
    client.set("io:text", "héllo wörld")
    client.set("io:bytes", b"\x00\x01\xfe\xff")
    client.set("io:int", 42)
    client.set("io:doc", {"a": [1, 2]})
    assert cli(redis_cli, solo, "GET", "io:text") == "héllo wörld".encode()
    assert redis_py.get("io:text") == "héllo wörld".encode()
    assert redis_py.get("io:bytes") == b"\x00\x01\xfe\xff"
    assert cli(redis_cli, solo, "GET", "io:int") == b"42"
    assert cli(redis_cli, solo, "INCR", "io:int") == b"43"  # a counter to every client
    assert client.incr("io:int") == 44 and redis_py.get("io:int") == b"44"
    assert redis_py.get("io:doc") == b'\xc1json:{"a":[1,2]}'  # marked: read by its name
    assert cli(redis_cli, solo, "GET", "io:doc") == b'\xc1json:{"a":[1,2]}'


def test_what_others_write_the_client_reads(
    solo: ServerProcess, redis_py: redis.Redis, redis_cli: str
) -> None:
    cli(redis_cli, solo, "SET", "io:cli", "from redis-cli")
    redis_py.set("io:py", "from redis-py ✓")
    redis_py.set("io:raw", b"\xc1\x00\xff binary")  # starts with the mark, but no name
    redis_py.set("io:json", b'{"looks": "like json"}')
    with Client([addr(solo)]) as plain, Client([addr(solo)], decode=True) as text:
        assert plain.get("io:cli") == b"from redis-cli"
        assert text.get("io:cli") == "from redis-cli"
        assert plain.get("io:py") == "from redis-py ✓".encode()
        assert text.get_many(["io:cli", "io:py"]) == {
            "io:cli": "from redis-cli",
            "io:py": "from redis-py ✓",
        }
        assert plain.get("io:raw") == b"\xc1\x00\xff binary"
        assert plain.get("io:json") == b'{"looks": "like json"}'  # text, not parsed


async def test_async_client_reads_and_writes_the_same(
    solo: ServerProcess, redis_py: redis.Redis
) -> None:
    redis_py.set("io:a", "plain")
    async with AsyncClient([addr(solo)], decode=True) as client:
        assert await client.get("io:a") == "plain"
        await client.set("io:b", "written by AsyncClient")
        await client.set("io:c", b"\xc1starts with the mark")
        assert await client.get("io:c") == b"\xc1starts with the mark"  # bytes stay bytes
    assert redis_py.get("io:b") == b"written by AsyncClient"
    assert redis_py.get("io:c") == b"\xc1bytes:\xc1starts with the mark"  # the one change


def test_round_trip_between_two_clients_of_different_languages(
    client: Client, redis_py: redis.Redis
) -> None:
    """What one writes and the other rewrites unchanged reads back the same."""
    client.set("io:rt", "naïve")
    redis_py.set("io:rt2", redis_py.get("io:rt") or b"")
    assert client.get("io:rt2") == "naïve".encode()
    client.set("io:rt3", {"nested": {"x": 1.5}})
    redis_py.set("io:rt4", redis_py.get("io:rt3") or b"")
    assert client.get("io:rt4") == {"nested": {"x": 1.5}}
