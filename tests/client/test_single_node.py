"""Client and AsyncClient against one standalone node process (and a plain redis-server)."""

from __future__ import annotations

import asyncio
import gc
import math
import signal
import threading
import time
import weakref
from pathlib import Path

import pytest
import redis

from client.regions import addr, poll
from geocache import AsyncClient, CacheError, Client, Timeout, Unavailable
from geocache.client.errors import CommandError
from support.procs import ServerProcess, free_port, start_geocache

pytestmark = pytest.mark.timeout(30)

# A call that fails fast (refused connection, or a node known down) takes well under
# this on loopback; a generous bound keeps slow CI machines green.
FAST_S = 0.05


def raw(solo: ServerProcess) -> redis.Redis:
    return redis.Redis(host=solo.host, port=solo.port, socket_timeout=5)


def test_basic_calls(client: Client, solo: ServerProcess) -> None:
    client.set("b:doc", {"name": "geo", "tags": [1, 2]})
    assert client.get("b:doc") == {"name": "geo", "tags": [1, 2]}
    assert client.get("b:missing") is None
    assert client.get("b:missing", "dflt") == "dflt"
    client.set("b:none", None)
    assert client.get("b:none", "dflt") is None  # a stored None is not a miss
    client.set(b"b:bytes", b"\x00\xff")
    assert client.get(b"b:bytes") == b"\x00\xff"
    assert client.delete("b:doc") is True and client.delete("b:doc") is False
    assert client.ttl("b:none") == math.inf and client.ttl("b:doc") is None
    client.set("b:ttl", 1, ttl_s=30)
    assert 29 < client.ttl("b:ttl") <= 30  # type: ignore[operator]
    assert client.expire("b:ttl", 100.5) and 100 < client.ttl("b:ttl") <= 100.5  # type: ignore[operator]
    assert client.expire("b:ttl", 0) and client.get("b:ttl") is None
    assert client.expire("b:nope", 10) is False
    assert client.incr("b:n") == 1 and client.incr("b:n", 41) == 42
    assert client.get("b:n") == b"42"  # a counter is decimal text, plain
    with raw(solo) as r:
        assert r.get("b:n") == b"42"
        r.set("b:text", "plain")
    assert client.get("b:text") == b"plain"  # written by another client: bytes
    client.set("b:word", "x")
    with pytest.raises(CommandError):
        client.incr("b:word")  # an error reply raises, even with on_error="miss"
    assert client.region == "local" and client.owners("k") == (addr(solo),)


def test_many_keys_are_pipelined(client: Client, solo: ServerProcess) -> None:
    values = {f"m:{i}": {"i": i} for i in range(500)}
    client.get("m:warm-up")  # the first call also fetches the topology
    before = client.stats()[addr(solo)].requests
    client.set_many(values, ttl_s=60)
    found = client.get_many([*values, "m:absent"])
    assert found == values
    assert client.stats()[addr(solo)].requests - before == 1001  # each command counted once
    assert 59 < client.ttl("m:7") <= 60  # type: ignore[operator]
    assert client.get_many([]) == {}


@pytest.mark.parametrize("serializer", ["msgpack", "raw", "pickle"])
def test_serializers(solo: ServerProcess, serializer: str) -> None:
    value: object = b"\x01bytes" if serializer == "raw" else {"a": [1, 2.5, "x"]}
    with Client([addr(solo)], serializer=serializer) as c:
        c.set(f"ser:{serializer}", value)
        assert c.get(f"ser:{serializer}") == value
    if serializer == "raw":
        with Client([addr(solo)], serializer="raw") as c:
            c.set("ser:str", "text")  # bytes, str and int need no serializer
            assert c.get("ser:str") == b"text"
            with pytest.raises(TypeError):
                c.set("ser:dict", {"a": 1})


def test_threads_share_a_client(client: Client) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                client.set(f"t:{n}:{i}", [n, i])
                assert client.get(f"t:{n}:{i}") == [n, i]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors and not any(t.is_alive() for t in threads)


def test_password(tmp_path: Path) -> None:
    server = start_geocache(tmp_path, ["--requirepass", "s3cret", "--log-level", "warning"])
    try:
        with Client([addr(server)], password="s3cret") as c:
            c.set("pw", 1)
            assert c.get("pw") == b"1"
        with Client([addr(server)], password="wrong") as c, pytest.raises(CommandError):
            c.get("pw")
    finally:
        server.stop()


def test_nothing_listening_raises_or_misses_at_once() -> None:
    seed = f"127.0.0.1:{free_port()}"
    with Client([seed]) as c:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            c.get("k")
        with pytest.raises(Unavailable):
            c.set("k", 1)
        assert time.monotonic() - started < FAST_S * 2
    with Client([seed], on_error="miss") as c:
        for _ in range(20):
            started = time.monotonic()
            assert c.get("k", "dflt") == "dflt"
            c.set("k", 1)
            assert c.delete("k") is False and c.ttl("k") is None
            assert c.get_many(["a", "b"]) == {}
            assert c.get_or_set("k", lambda: "computed") == "computed"
            assert time.monotonic() - started < FAST_S
        with pytest.raises(Unavailable):
            c.incr("k")  # a count cannot be made up


def test_a_hung_node_costs_an_attempt_timeout_then_nothing(tmp_path: Path) -> None:
    """SIGSTOP: no refusal, just silence. The attempt timeout (latency-derived, 50 ms on
    loopback), not the call's 5 s deadline, ends each call; after two, the node is down
    and calls fail at once; SIGCONT and the background probe restores it."""
    server = start_geocache(tmp_path, ["--log-level", "warning"])
    try:
        with Client([addr(server)], timeout_s=5.0) as c:
            for i in range(50):
                c.set(f"h:{i}", i)  # latency samples
            server.proc.send_signal(signal.SIGSTOP)
            try:
                durations = []
                for _ in range(4):
                    started = time.monotonic()
                    with pytest.raises((Timeout, Unavailable)):
                        c.get("h:1")
                    durations.append(time.monotonic() - started)
                # At most the 0.5 s ceiling even on a loaded machine; 50 ms here.
                assert all(d < 0.6 for d in durations[:2]), durations
                assert all(d < FAST_S for d in durations[2:]), durations  # known down
                assert c.stats()[addr(server)].down
            finally:
                server.proc.send_signal(signal.SIGCONT)
            poll(lambda: not c.stats()[addr(server)].down, 10, "the node restored")
            assert c.get("h:1") == b"1"
    finally:
        server.stop()


def test_against_redis_server(redis_server: ServerProcess) -> None:
    """A plain Redis has no GC.TOPOLOGY: the seed is the whole cluster."""
    with Client([addr(redis_server)]) as c:
        c.set("rs:k", [1, 2])
        assert c.get("rs:k") == [1, 2]
        assert c.incr("rs:n", 2) == 2
        assert c.get_many(["rs:k", "rs:x"]) == {"rs:k": [1, 2]}


def test_closed_client_refuses_calls(solo: ServerProcess) -> None:
    c = Client([addr(solo)])
    c.set("cl", 1)
    c.close()
    with pytest.raises(CacheError):
        c.get("cl")


def test_a_dropped_client_is_collected(solo: ServerProcess) -> None:
    """Its background thread holds it weakly and its sockets close with it."""
    c = Client([addr(solo)])
    c.set("drop", 1)
    thread, ref = c._thread, weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None
    assert thread is not None
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Client(["no-port"])
    with pytest.raises(ValueError):
        Client(["127.0.0.1:1"], on_error="ignore")
    with pytest.raises(ValueError):
        Client([])


# -- asyncio -------------------------------------------------------------------------------


async def test_async_basic_calls(solo: ServerProcess) -> None:
    async with AsyncClient([addr(solo)]) as c:
        await c.set("a:doc", {"x": [1]})
        assert await c.get("a:doc") == {"x": [1]}
        assert await c.get("a:nope", 7) == 7
        assert await c.incr("a:n", 3) == 3
        await c.set_many({"a:1": 1, "a:2": 2}, ttl_s=10)
        assert await c.get_many(["a:1", "a:2", "a:3"]) == {"a:1": b"1", "a:2": b"2"}
        assert 9 < (await c.ttl("a:1") or 0) <= 10
        assert await c.expire("a:1", 0) and await c.get("a:1") is None
        assert await c.delete("a:2") and not await c.delete("a:2")
        assert await c.owners("x") == (addr(solo),)


async def test_async_concurrent_calls_share_one_connection(solo: ServerProcess) -> None:
    async with AsyncClient([addr(solo)], typed=True) as c:
        await asyncio.gather(*(c.set(f"ac:{i}", i) for i in range(300)))
        got = await asyncio.gather(*(c.get(f"ac:{i}") for i in range(300)))
        assert got == list(range(300))
        assert c.stats()[addr(solo)].errors == 0


async def test_async_nothing_listening() -> None:
    seed = f"127.0.0.1:{free_port()}"
    async with AsyncClient([seed], on_error="miss") as c:
        for _ in range(10):
            started = time.monotonic()
            assert await c.get("k", "d") == "d"
            assert await c.get_or_set("k", lambda: 5) == 5
            assert time.monotonic() - started < FAST_S
    async with AsyncClient([seed]) as c:
        with pytest.raises(Unavailable):
            await c.get("k")


async def test_async_password(tmp_path: Path) -> None:
    server = start_geocache(tmp_path, ["--requirepass", "pw", "--log-level", "warning"])
    try:
        async with AsyncClient([addr(server)], password="pw") as c:
            await c.set("apw", 1)
            assert await c.get("apw") == b"1"
        async with AsyncClient([addr(server)], password="bad") as c:
            with pytest.raises(CommandError):
                await c.get("apw")
    finally:
        server.stop()
