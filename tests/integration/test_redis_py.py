"""redis-py against a real node process: sync and asyncio clients, RESP2 and RESP3,
with the hiredis parser and with redis-py's pure-Python parsers.

The realistic workload is data (`WORKLOAD`: method, arguments, expected result), run
unchanged by both clients in every protocol/parser combination.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio
from redis._parsers import (
    _AsyncHiredisParser,
    _AsyncRESP2Parser,
    _AsyncRESP3Parser,
    _HiredisParser,
    _RESP2Parser,
    _RESP3Parser,
)

from support import ServerProcess

# Clients wait at most this long for one reply (seconds): far above a healthy node's
# latency, low enough that a hang fails fast.
SOCKET_TIMEOUT_S = 10.0
PIPELINE_COMMANDS = 1_000
YEAR_2100_S = 4102444800

SYNC_PARSERS: dict[tuple[str, int], type[Any]] = {
    ("hiredis", 2): _HiredisParser,
    ("hiredis", 3): _HiredisParser,
    ("python", 2): _RESP2Parser,
    ("python", 3): _RESP3Parser,
}
ASYNC_PARSERS: dict[tuple[str, int], type[Any]] = {
    ("hiredis", 2): _AsyncHiredisParser,
    ("hiredis", 3): _AsyncHiredisParser,
    ("python", 2): _AsyncRESP2Parser,
    ("python", 3): _AsyncRESP3Parser,
}
VARIANTS = [("hiredis", 2), ("hiredis", 3), ("python", 2), ("python", 3)]
VARIANT_IDS = [f"{parser}-resp{protocol}" for parser, protocol in VARIANTS]


@dataclass(frozen=True)
class Op:
    """One client call and what it must return (a value, or a predicate on the value)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    expect: Any = True

    def check(self, result: Any) -> None:
        if callable(self.expect):
            assert self.expect(result), f"{self}: got {result!r}"
        else:
            assert result == self.expect, f"{self}: got {result!r}"


def between(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: low <= value <= high


def unordered(*items: bytes) -> Callable[[Any], bool]:
    return lambda value: sorted(value) == sorted(items)


def text(value: bytes | str | None) -> str | None:
    """redis-py decodes some replies (CLIENT GETNAME) in RESP2 only: compare as text."""
    return value.decode() if isinstance(value, bytes) else value


WORKLOAD: list[Op] = [
    Op("ping"),
    Op("echo", (b"hi\x00there",), expect=b"hi\x00there"),
    Op("set", ("k", "v"), {"ex": 100}),
    Op("get", ("k",), expect=b"v"),
    Op("ttl", ("k",), expect=between(99, 100)),
    Op("pttl", ("k",), expect=between(95_000, 100_000)),
    Op("set", ("k", "v1"), {"keepttl": True}),
    Op("ttl", ("k",), expect=between(95, 100)),
    Op("set", ("k", "v2"), {"nx": True}, expect=None),
    Op("set", ("k", "v3"), {"xx": True, "get": True}, expect=b"v1"),
    Op("ttl", ("k",), expect=-1),  # a SET without KEEPTTL drops the TTL
    Op("set", ("k", "v4"), {"px": 50_000, "get": True}, expect=b"v3"),
    Op("ttl", ("k",), expect=between(49, 50)),
    Op("set", ("at", "v"), {"exat": YEAR_2100_S}),
    Op("set", ("new", "x"), {"xx": True}, expect=None),
    Op("exists", ("k", "new", "k"), expect=2),
    # redis-py deprecates its setex() wrapper; applications still send SETEX.
    Op("execute_command", ("SETEX", "se", 50, "v")),
    Op("psetex", ("ps", 50_000, "v")),
    Op("ttl", ("ps",), expect=between(49, 50)),
    Op("setnx", ("sn", "1"), expect=True),
    Op("setnx", ("sn", "2"), expect=False),
    Op("getset", ("sn", "3"), expect=b"1"),
    Op("getdel", ("sn",), expect=b"3"),
    Op("getdel", ("sn",), expect=None),
    Op("getex", ("k",), {"ex": 200}, expect=b"v4"),
    Op("ttl", ("k",), expect=between(199, 200)),
    Op("getex", ("k",), {"persist": True}, expect=b"v4"),
    Op("ttl", ("k",), expect=-1),
    Op("mset", ({"a": "1", "b": "2", "c": "3"},)),
    Op("mget", (["a", "b", "missing", "c"],), expect=[b"1", b"2", None, b"3"]),
    Op("msetnx", ({"a": "x", "d": "4"},), expect=False),
    Op("msetnx", ({"d": "4", "e": "5"},), expect=True),
    Op("incr", ("counter",), expect=1),
    Op("incrby", ("counter", 41), expect=42),
    Op("decr", ("counter",), expect=41),
    Op("decrby", ("counter", 40), expect=1),
    Op("incrbyfloat", ("fl", 10.5), expect=10.5),
    Op("incrbyfloat", ("fl", 0.1), expect=between(10.599999, 10.600001)),
    Op("get", ("fl",), expect=b"10.6"),
    Op("append", ("s", "Hello"), expect=5),
    Op("append", ("s", " World"), expect=11),
    Op("strlen", ("s",), expect=11),
    Op("getrange", ("s", 0, 4), expect=b"Hello"),
    Op("getrange", ("s", -5, -1), expect=b"World"),
    Op("setrange", ("s", 6, "Redis"), expect=11),
    Op("get", ("s",), expect=b"Hello Redis"),
    Op("expire", ("s", 100)),
    Op("expire", ("s", 50), {"gt": True}, expect=False),
    Op("expire", ("s", 50), {"lt": True}, expect=True),
    Op("expire", ("s", 50), {"nx": True}, expect=False),
    Op("pexpire", ("s", 60_000)),
    Op("ttl", ("s",), expect=between(59, 60)),
    Op("persist", ("s",)),
    Op("persist", ("s",), expect=False),
    Op("ttl", ("s",), expect=-1),
    Op("expireat", ("s", YEAR_2100_S)),
    Op("pexpireat", ("s", YEAR_2100_S * 1000)),
    Op("ttl", ("s",), expect=lambda ttl: abs(ttl - (YEAR_2100_S - time.time())) < 5),
    Op("expire", ("s", 0)),
    Op("get", ("s",), expect=None),
    Op("ttl", ("missing",), expect=-2),
    Op("pttl", ("missing",), expect=-2),
    Op("type", ("k",), expect=b"string"),
    Op("type", ("missing",), expect=b"none"),
    Op("delete", ("a", "b", "missing"), expect=2),
    Op("unlink", ("c", "c"), expect=1),
    Op("keys", ("e*",), expect=unordered(b"e")),
    Op("keys", ("?",), expect=unordered(b"k", b"d", b"e")),
    Op("keys", ("*s*",), expect=unordered(b"se", b"ps")),
    Op("dbsize", (), expect=8),
    Op("delete", ("k",), expect=1),
    Op("dbsize", (), expect=7),
]


def run_sync(client: redis.Redis, ops: list[Op]) -> None:
    for op in ops:
        op.check(getattr(client, op.method)(*op.args, **(op.kwargs or {})))


async def run_async(client: redis.asyncio.Redis, ops: list[Op]) -> None:
    for op in ops:
        op.check(await getattr(client, op.method)(*op.args, **(op.kwargs or {})))


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def sync_client(node: ServerProcess, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    parser, protocol = request.param
    pool = redis.ConnectionPool(
        host=node.host,
        port=node.port,
        protocol=protocol,
        parser_class=SYNC_PARSERS[(parser, protocol)],
        socket_timeout=SOCKET_TIMEOUT_S,
    )
    client = redis.Redis.from_pool(pool)
    try:
        client.flushall()
        connection = pool.get_connection()
        assert isinstance(connection._parser, SYNC_PARSERS[(parser, protocol)])
        assert connection.protocol == protocol
        pool.release(connection)
        yield client
    finally:
        client.close()


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
async def async_client(
    node: ServerProcess, request: pytest.FixtureRequest
) -> AsyncIterator[redis.asyncio.Redis]:
    parser, protocol = request.param
    pool = redis.asyncio.ConnectionPool(
        host=node.host,
        port=node.port,
        protocol=protocol,
        parser_class=ASYNC_PARSERS[(parser, protocol)],
        socket_timeout=SOCKET_TIMEOUT_S,
    )
    client = redis.asyncio.Redis.from_pool(pool)
    try:
        await client.flushall()
        connection = await pool.get_connection()
        assert isinstance(connection._parser, ASYNC_PARSERS[(parser, protocol)])
        await pool.release(connection)
        yield client
    finally:
        await client.aclose()


# --- the shared workload ---------------------------------------------------------------


def test_sync_workload(sync_client: redis.Redis) -> None:
    run_sync(sync_client, WORKLOAD)


async def test_async_workload(async_client: redis.asyncio.Redis) -> None:
    await run_async(async_client, WORKLOAD)


# --- pipelines -------------------------------------------------------------------------


def pipeline_expectations() -> tuple[list[tuple[str, tuple[Any, ...]]], list[Any]]:
    """1,000 commands: 400 SETs, 400 GETs, 100 INCRs, 100 MGETs of two keys."""
    commands: list[tuple[str, tuple[Any, ...]]] = []
    expected: list[Any] = []
    for i in range(400):
        commands.append(("set", (f"p:{i}", f"value-{i}")))
        expected.append(True)
    for i in range(400):
        commands.append(("get", (f"p:{i}",)))
        expected.append(f"value-{i}".encode())
    for i in range(100):
        commands.append(("incr", ("p:counter",)))
        expected.append(i + 1)
    for i in range(100):
        commands.append(("mget", ([f"p:{i}", "p:missing"],)))
        expected.append([f"value-{i}".encode(), None])
    assert len(commands) == PIPELINE_COMMANDS
    return commands, expected


def test_sync_pipeline_of_1000_commands(sync_client: redis.Redis) -> None:
    commands, expected = pipeline_expectations()
    with sync_client.pipeline(transaction=False) as pipe:
        for method, args in commands:
            getattr(pipe, method)(*args)
        assert pipe.execute() == expected
    assert sync_client.dbsize() == 401


async def test_async_pipeline_of_1000_commands(async_client: redis.asyncio.Redis) -> None:
    commands, expected = pipeline_expectations()
    async with async_client.pipeline(transaction=False) as pipe:
        for method, args in commands:
            getattr(pipe, method)(*args)
        assert await pipe.execute() == expected
    assert await async_client.dbsize() == 401


def test_pipeline_reports_errors_in_place(sync_client: redis.Redis) -> None:
    with sync_client.pipeline(transaction=False) as pipe:
        pipe.set("n", "x").incr("n").get("n").execute_command("GET")
        results = pipe.execute(raise_on_error=False)
    assert results[0] is True and results[2] == b"x"
    assert isinstance(results[1], redis.ResponseError)
    assert str(results[1]) == "value is not an integer or out of range"
    assert isinstance(results[3], redis.ResponseError)
    assert str(results[3]) == "wrong number of arguments for 'get' command"


# --- scanning, binary data, connection commands -----------------------------------------


def test_scan_iter_finds_every_matching_key(sync_client: redis.Redis) -> None:
    users = {f"user:{i}".encode(): i for i in range(300)}
    sync_client.mset(users)
    sync_client.mset({f"session:{i}": i for i in range(50)})
    assert set(sync_client.scan_iter(match="user:*", count=25)) == set(users)
    assert len(set(sync_client.scan_iter(count=1000))) == 350
    assert set(sync_client.scan_iter(match="session:4?", _type="STRING")) == {
        f"session:{i}".encode() for i in range(40, 50)
    }
    assert list(sync_client.scan_iter(match="nothing:*")) == []


async def test_async_scan_iter(async_client: redis.asyncio.Redis) -> None:
    await async_client.mset({f"a:{i}": i for i in range(120)})
    found = {key async for key in async_client.scan_iter(match="a:1*", count=10)}
    assert found == {f"a:{i}".encode() for i in range(120) if str(i).startswith("1")}


def test_binary_keys_and_values(sync_client: redis.Redis) -> None:
    every_byte = bytes(range(256))
    key = b"bin\x00\r\n\xff"
    assert sync_client.set(key, every_byte * 40)
    assert sync_client.get(key) == every_byte * 40
    assert sync_client.strlen(key) == 256 * 40
    assert sync_client.getrange(key, 0, 15) == every_byte[:16]
    big = every_byte * 4096  # 1 MiB
    assert sync_client.set("big", big)
    assert sync_client.get("big") == big
    assert sync_client.set("empty", b"")
    assert sync_client.get("empty") == b""
    assert sync_client.mget([key, "empty", "missing"]) == [every_byte * 40, b"", None]
    assert set(sync_client.keys("bin*")) == {key}


def test_client_name_id_and_list(sync_client: redis.Redis) -> None:
    assert sync_client.client_getname() is None
    assert sync_client.client_setname("worker-1")
    assert text(sync_client.client_getname()) == "worker-1"
    my_id = sync_client.client_id()
    assert isinstance(my_id, int) and my_id > 0
    listed = [c for c in sync_client.client_list() if c["name"] == "worker-1"]
    assert [int(c["id"]) for c in listed] == [my_id]


def test_client_name_given_at_connect(node: ServerProcess) -> None:
    with redis.Redis(host=node.host, port=node.port, client_name="named-at-connect") as client:
        assert text(client.client_getname()) == "named-at-connect"


def test_info_config_time(sync_client: redis.Redis) -> None:
    sync_client.mset({"x": 1, "y": 2})
    info = sync_client.info()
    assert "redis_version" in info
    assert info["connected_clients"] >= 1
    assert sync_client.info("keyspace")["db0"]["keys"] == 2
    assert sync_client.dbsize() == 2
    config = sync_client.config_get("maxmemory")
    assert [text(name) for name in config] == ["maxmemory"]
    assert str(text(config[next(iter(config))])).isdigit()
    seconds, micros = sync_client.time()
    assert abs(seconds + micros / 1e6 - time.time()) < 5


def test_errors_raise_response_error(sync_client: redis.Redis) -> None:
    sync_client.set("s", "abc")
    with pytest.raises(redis.ResponseError, match=r"^value is not an integer or out of range$"):
        sync_client.incr("s")
    with pytest.raises(redis.ResponseError, match=r"^value is not a valid float$"):
        sync_client.incrbyfloat("s", 1.5)
    with pytest.raises(redis.ResponseError, match=r"^invalid expire time in 'set' command$"):
        sync_client.set("k", "v", ex=0)
    with pytest.raises(redis.ResponseError, match=r"^unknown command 'NOSUCH'"):
        sync_client.execute_command("NOSUCH", "a")
    assert sync_client.ping()


def test_decode_responses(node: ServerProcess) -> None:
    with redis.Redis(host=node.host, port=node.port, decode_responses=True) as client:
        client.flushall()
        assert client.set("greeting", "héllo")
        assert client.get("greeting") == "héllo"
        assert client.mget("greeting", "missing") == ["héllo", None]
        assert client.incrbyfloat("f", "3.0e3") == 3000.0
        assert client.get("f") == "3000"


async def test_async_concurrent_clients_share_one_counter(
    async_client: redis.asyncio.Redis,
) -> None:
    """50 tasks x 20 INCRs over a pool of connections: no increment is lost."""

    async def worker() -> None:
        for _ in range(20):
            await async_client.incr("shared")

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(50))), timeout=30)
    assert await async_client.get("shared") == b"1000"


async def test_async_expiry_and_binary(async_client: redis.asyncio.Redis) -> None:
    value = bytes(range(256)) * 16
    assert await async_client.set(b"k\x00", value, px=60_000)
    assert await async_client.get(b"k\x00") == value
    assert 59 <= await async_client.ttl(b"k\x00") <= 60
    assert await async_client.getex(b"k\x00", persist=True) == value
    assert await async_client.ttl(b"k\x00") == -1
    assert await async_client.client_setname("async-client")
    assert text(await async_client.client_getname()) == "async-client"
