"""A node in front of an HTTP origin the tests slow down, fail and empty; and a custom
`module:function` origin. Time passes for real here (the node is another process), so
TTLs are short and every wait is a poll with a deadline."""

from __future__ import annotations

import select
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from support import RawClient, ServerProcess, free_port, start_geocache
from support.cluster import client, poll

from .burst import burst
from .http_origin import HttpOrigin

# Budget for the node to show something that should happen at once (seconds).
DEADLINE_S = 10.0


@pytest.fixture
def origin() -> Iterator[HttpOrigin]:
    with HttpOrigin() as server:
        yield server


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """start(*flags): a node with those flags; all stopped at teardown."""
    started: list[ServerProcess] = []

    def start_node(*flags: str) -> ServerProcess:
        started.append(start_geocache(tmp_path, ["--log-level", "warning", *flags]))
        return started[-1]

    yield start_node
    for server in started:
        server.stop()


def test_values_keep_their_bytes_and_keys_are_escaped(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    origin.values["a b/c?d"] = b"\x00\xff binary"
    origin.values["doc"] = b'{"json": true}'
    origin.content_types["doc"] = "application/json"
    node = start("--origin", origin.url)
    with client(node) as c:
        assert c.get("a b/c?d") == b"\x00\xff binary"
        assert c.get("doc") == b'{"json": true}'  # RESP has the body (HTTP: the type too)
        assert c.get("nothing here") is None
        assert c.get("nothing here") is None
    assert origin.requests == {"a b/c?d": 1, "doc": 1, "nothing here": 2}


def test_dot_keys_stay_one_literal_segment(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    """`..` and `.` are keys like any other: the origin is asked for them, not for
    `/items/` or the parent of `/items/`."""
    origin.values[".."] = b"two dots"
    origin.values["."] = b"one dot"
    origin.values["%2e%2e"] = b"escaped"
    node = start("--origin", origin.url)
    with client(node) as c:
        assert c.get("..") == b"two dots"
        assert c.get(".") == b"one dot"
        assert c.get("%2e%2e") == b"escaped"  # its % is escaped: never a dot-segment
        assert c.get("...") is None
    assert origin.requests == {"..": 1, ".": 1, "%2e%2e": 1, "...": 1}
    # On the wire no segment is a dot-segment, which a normalising server (or proxy)
    # would resolve to /items/ or /.
    for path in origin.raw_paths:
        assert not {".", ".."} & set(path.split("/")), path


def test_the_http_api_reads_through_and_keeps_the_content_type(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    origin.values["doc"] = b'{"json": true}'
    origin.content_types["doc"] = "application/json; charset=utf-8"
    origin.values["blob"] = b"\x00\x01"
    http_port = free_port()
    start("--origin", origin.url, "--http-port", str(http_port))
    base = f"http://127.0.0.1:{http_port}/v1/keys/"
    with urllib.request.urlopen(base + "doc", timeout=DEADLINE_S) as reply:  # a miss: filled
        assert reply.read() == b'{"json": true}'
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
        assert reply.headers["ETag"] and int(reply.headers["X-Geocache-Ttl-Ms"]) > 0
    with urllib.request.urlopen(base + "doc", timeout=DEADLINE_S) as reply:  # a hit
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    with urllib.request.urlopen(base + "blob", timeout=DEADLINE_S) as reply:
        assert reply.read() == b"\x00\x01"
        assert reply.headers["Content-Type"] == "application/octet-stream"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "nothing", timeout=DEADLINE_S)
    assert missing.value.code == 404
    missing.value.close()
    assert origin.requests == {"doc": 1, "blob": 1, "nothing": 1}


def test_a_value_over_max_value_bytes_is_refused(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    origin.values["big"] = b"x" * 2048
    origin.values["small"] = b"x" * 1024
    flags = ("--max-value-bytes", "1kb", "--origin-breaker-failures", "1")
    node = start("--origin", origin.url, *flags)
    with client(node) as c:
        with pytest.raises(redis.ResponseError, match="2048 bytes is over 1024"):
            c.get("big")
        assert c.get("small") == b"x" * 1024  # the origin is fine: the breaker stays shut
        assert c.info("origin")["origin_breaker"] == "closed"


def test_a_missing_key_is_remembered_for_negative_ttl(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    node = start("--origin", origin.url, "--negative-ttl-s", "1")
    with client(node) as c:
        assert c.get("ghost") is None
        assert c.get("ghost") is None
        assert origin.requests["ghost"] == 1
        assert c.info("origin")["origin_negative_hits"] == 1
        origin.values["ghost"] = b"here now"
        poll(lambda: c.get("ghost") == b"here now", DEADLINE_S, "the negative answer to end")


def test_stale_if_error_serves_the_old_value_then_errors_past_max_stale(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    http_port = free_port()
    node = start(
        "--origin", origin.url, "--origin-ttl-s", "0.5", "--max-stale-s", "2",
        "--origin-breaker-failures", "0", "--http-port", str(http_port),
    )  # fmt: skip
    origin.values["k"] = b"v1"
    with client(node) as c:
        assert c.get("k") == b"v1"
        loaded_at = time.monotonic()
        origin.fail_status = 503
        poll(lambda: c.pttl("k") == -2, DEADLINE_S, "the value to expire")
        assert c.get("k") == b"v1"  # stale, and said so:
        assert c.info("origin")["origin_stale_served"] == 1
        metrics = _scrape(http_port)
        assert "geocache_origin_stale_served_total 1.0" in metrics
        assert 'geocache_origin_loads_total{result="error"}' in metrics
        assert c.pttl("k") == -2  # answered, not stored
        # Past its TTL plus max-stale (2.5 s after loading), the failure shows.
        time.sleep(max(0.0, loaded_at + 2.6 - time.monotonic()))
        with pytest.raises(redis.ResponseError, match=r"origin unavailable: .*answered 503"):
            c.get("k")
        assert c.info("origin")["origin_failed_fills"] == 1


def test_the_breaker_opens_and_closes(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    node = start(
        "--origin", origin.url, "--origin-breaker-failures", "2",
        "--origin-breaker-reset-s", "1",
    )  # fmt: skip
    origin.fail_status = 500
    with client(node) as c:
        for key in ("a", "b"):
            with pytest.raises(redis.ResponseError, match="answered 500"):
                c.get(key)
        with pytest.raises(redis.ResponseError, match="circuit breaker open"):
            c.get("c")
        assert origin.total_requests() == 2  # refused without asking the origin
        info = c.info("origin")
        assert info["origin_breaker"] == "open" and info["origin_rejected"] == 1
        origin.fail_status = None
        origin.values["c"] = b"back"
        poll(lambda: _get_or_none(c, "c") == b"back", DEADLINE_S, "a trial load to succeed")
        info = c.info("origin")
        assert info["origin_breaker"] == "closed" and info["origin_breaker_opened"] == 1


def test_a_slow_origin_times_out(origin: HttpOrigin, start: Callable[..., ServerProcess]) -> None:
    node = start("--origin", origin.url, "--origin-timeout-s", "0.3")
    origin.values["slow"] = b"v"
    origin.delay_s = 5.0
    with client(node) as c:
        started = time.monotonic()
        with pytest.raises(redis.ResponseError, match=r"timed out after 0\.3 s"):
            c.get("slow")
        assert time.monotonic() - started < 4  # the timeout, not the origin, ended it
        assert c.info("origin")["origin_timeouts"] == 1


@pytest.mark.parametrize("cap", [0, 1])
def test_max_concurrent_commands_one_runs_commands_one_at_a_time(
    origin: HttpOrigin, start: Callable[..., ServerProcess], cap: int
) -> None:
    node = start(
        "--origin", origin.url, "--origin-timeout-s", "5",
        "--max-concurrent-commands", str(cap),
    )  # fmt: skip
    origin.values["slow"] = b"v"
    origin.delay_s = 1.5
    with RawClient(*node.address) as loading, RawClient(*node.address) as other:
        loading.send("GET", "slow")
        poll(lambda: origin.requests["slow"] == 1, DEADLINE_S, "the load to start")
        other.send("PING")
        ping_answered_during_load = _readable_within(other, 0.75)
        assert loading.read_reply() == b"$1\r\nv\r\n"
        assert other.read_reply() == b"+PONG\r\n"
    # Without a cap a PING overlaps the load; with a cap of 1 it waits for it.
    assert ping_answered_during_load is (cap == 0)
    origin.values["other"], origin.delay_s = b"o", 0.05
    assert burst([node.address] * 20, [b"GET", b"other"]) == [b"$1\r\no\r\n"] * 20
    with client(node) as c:  # every slot given back
        info = c.info("clients")
        assert (info["commands_in_flight"], info["commands_waiting"]) == (0, 0)
    assert origin.requests["other"] == 1


def test_a_python_loader(start: Callable[..., ServerProcess]) -> None:
    node = start("--origin", "tests.origin.loader_module:load")
    with client(node) as c:
        assert c.get("abc") == b"cba"
        assert c.get("text:hé") == "hé as text".encode()
        assert c.get("missing") is None
        with pytest.raises(redis.ResponseError, match="RuntimeError: the loader blew up"):
            c.get("boom")
    node = start("--origin", "tests.origin.loader_module:load_sync")
    with client(node) as c:
        assert c.get("k") == b"sync:k"


def test_hot_keys_are_refreshed_before_they_expire(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    node = start("--origin", origin.url, "--origin-ttl-s", "2", "--refresh-keys", "hot:*")
    origin.values.update({"hot:1": b"v1", "cold:1": b"c1"})
    with client(node) as c:
        assert c.get("hot:1") == b"v1" and c.get("cold:1") == b"c1"
        origin.values.update({"hot:1": b"v2", "cold:1": b"c2"})
        poll(lambda: c.pttl("cold:1") == -2, DEADLINE_S, "the cold key to expire")
        # Refreshed in time, the hot key never expired: never missed, already new.
        assert c.info("stats")["keyspace_misses"] == 2  # the first GET of each
        assert c.get("hot:1") == b"v2"
        assert c.info("origin")["origin_refreshes"] >= 1
        assert c.get("cold:1") == b"c2"


def _readable_within(raw: RawClient, timeout_s: float) -> bool:
    """Whether the server has started a reply on this connection within timeout_s."""
    readable, _, _ = select.select([raw.sock], [], [], timeout_s)
    return bool(readable)


def _get_or_none(c: redis.Redis, key: str) -> object:
    try:
        return c.get(key)
    except redis.ResponseError:
        return None


def _scrape(http_port: int) -> str:
    url = f"http://127.0.0.1:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=DEADLINE_S) as response:
        body: bytes = response.read()
    return body.decode()


def test_a_delete_or_write_during_a_load_wins_and_the_old_value_never_returns(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    """A load in flight when its key is deleted or written answers nil and stores
    nothing; a delete right after a load purges what the node remembered of it."""
    http_port = free_port()
    node = start("--origin", origin.url, "--origin-ttl-s", "60", "--http-port", str(http_port))
    origin.values["k"] = b"old"
    origin.delay_s = 0.5
    with client(node) as c, client(node) as other:
        # DEL while the load is in flight: the load does not store after it.
        reader = threading.Thread(target=lambda: results.append(c.get("k")))
        results: list[bytes | None] = []
        reader.start()
        time.sleep(0.2)
        assert other.delete("k") == 0
        reader.join()
        assert results == [None]
        assert other.pttl("k") == -2  # nothing stored
        # SET while the load is in flight: the client's value stays.
        results.clear()
        reader = threading.Thread(target=lambda: results.append(c.get("k")))
        reader.start()
        time.sleep(0.2)
        assert other.set("k", "mine")
        reader.join()
        assert other.get("k") == b"mine" and other.ttl("k") == -1
        # Deleted right after a load: the next GET asks the origin again, which now
        # has a new value; the old one never comes back (RESP and HTTP).
        origin.delay_s = 0.0
        other.delete("k")
        assert c.get("k") == b"old"
        origin.values["k"] = b"new"
        assert other.delete("k") == 1
        assert c.get("k") == b"new"
        other.delete("k")
        origin.values["k"] = b"newer"
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/keys/k") as answer:
            assert answer.read() == b"newer"


def test_only_database_0_reads_through(
    origin: HttpOrigin, start: Callable[..., ServerProcess]
) -> None:
    origin.values["k"] = b"from origin"
    node = start("--origin", origin.url)
    with node.raw() as raw:
        assert raw.call("SELECT", "3") == b"+OK\r\n"
        assert raw.call("GET", "k") == b"$-1\r\n"
        assert raw.call("SELECT", "0") == b"+OK\r\n"
        assert raw.call("GET", "k") == b"$11\r\nfrom origin\r\n"
    assert origin.requests == {"k": 1}
