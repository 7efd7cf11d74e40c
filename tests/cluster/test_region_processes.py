"""A region of real node processes on 127.0.0.1: routing, replication, crash and restart."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import client, cluster_args, poll, running_region, start_at, states
from support.procs import ServerProcess, free_port, start_geocache


@pytest.fixture
def region(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    with running_region(tmp_path) as nodes:
        yield nodes


def test_any_node_answers_and_each_key_has_two_copies(region: list[ServerProcess]) -> None:
    n1, n2, n3 = region
    with client(n1) as c1, client(n2) as c2, client(n3) as c3:
        for i in range(200):
            assert c1.set(f"k{i}", f"v{i}")
        for c in (c2, c3):
            assert c.mget([f"k{i}" for i in range(200)]) == [f"v{i}".encode() for i in range(200)]
        assert sum(c.dbsize() for c in (c1, c2, c3)) == 400  # replicas=2
        assert c3.delete("k1", "k2", "missing") == 2
        assert c1.get("k1") is None and c2.exists("k2") == 0
        assert c2.incr("counter") == 1 and c3.incr("counter") == 2
        ver = c1.execute_command("GETVER", "k5")
        assert c2.execute_command("CAS", "k5", ver, "new") > ver
        assert c3.execute_command("CAS", "k5", ver, "lost") is None
        assert c1.get("k5") == b"new"
        info = c2.info("geocache")
        assert info["cluster_enabled"] == 1 and info["cluster_members_alive"] == 3
        assert info["cluster_replicas"] == 2 and info["cluster_forwarded"] > 0


def test_a_killed_node_costs_no_reads_or_writes_and_rejoins(
    region: list[ServerProcess], tmp_path: Path
) -> None:
    n1, n2, n3 = region
    keys = [f"k{i}" for i in range(100)]
    with client(n1) as c1, client(n2) as c2:
        for k in keys:
            c1.set(k, "before")
        n3.proc.send_signal(signal.SIGKILL)
        n3.proc.wait(5)
        # Straight away, before membership notices: every read and write still works.
        assert c1.mget(keys) == [b"before"] * len(keys)
        for k in keys:
            assert c2.set(k, "during")
        poll(
            lambda: states(n1).get("n3") == "dead" and states(n2).get("n3") == "dead",
            15,
            "n3 declared dead",
        )
        assert c2.mget(keys) == [b"during"] * len(keys)
        restarted = start_at(n3.port, tmp_path, cluster_args("n3", f"127.0.0.1:{n1.port}"))
        try:
            poll(lambda: states(n1).get("n3") == "alive", 15, "n3 alive again")
            # The restarted node answers LOADING until it has found its peers and pulled
            # its keys from them (warm-up).
            poll(lambda: list(states(restarted).values()).count("alive") == 3, 15, "n3 joined")
            with client(restarted) as c3:
                poll(lambda: c3.info("geocache")["cluster_ready"] == 1, 15, "n3 warmed up")
                assert c3.mget(keys) == [b"during"] * len(keys)
        finally:
            restarted.stop()


def test_sigterm_leaves_gracefully(region: list[ServerProcess]) -> None:
    n1, n2, n3 = region
    assert n3.stop() == 0
    poll(lambda: states(n1).get("n3") in ("left", "dead"), 10, "n3 gone")
    with client(n1) as c1, client(n2) as c2:
        assert c1.set("after", "leave")
        assert c2.get("after") == b"leave"


def test_writes_forwarded_both_ways_do_not_wait_on_each_other(
    region: list[ServerProcess],
) -> None:
    """Clients on two nodes writing keys the other node owns: no stall at the peer timeout.

    A forwarded write waits for its replication; if forwarding and replication shared a
    connection, each node's could queue behind the other's and both would stall until
    the 500 ms peer timeout. 400 writes take well under a second without that; a bound
    of 20 stalls' worth catches it without timing anything finer.
    """
    n1, n2, _ = region
    slowest: list[float] = []

    def write_through(server: ServerProcess, prefix: str) -> None:
        with client(server) as c:
            for i in range(200):
                start = time.monotonic()
                assert c.set(f"{prefix}{i}", "v")
                slowest.append(time.monotonic() - start)

    threads = [
        threading.Thread(target=write_through, args=(n1, "a")),
        threading.Thread(target=write_through, args=(n2, "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(slowest) == 400
    assert sum(1 for s in slowest if s >= 0.45) <= 2, sorted(slowest)[-5:]


def test_a_hung_primary_costs_one_timeout_not_one_per_write(
    region: list[ServerProcess],
) -> None:
    """n3 frozen (SIGSTOP): connected but silent. Writes to keys it owns, through n1,
    succeed; after the first timeout n3 counts as down, so the rest do not wait on it."""
    n1, _n2, n3 = region
    with client(n1) as c1:
        keys = [f"h{i}" for i in range(200)]
        owned = [k for k in keys if c1.execute_command("GC.OWNERS", k)[0] == b"n3"][:20]
        assert len(owned) >= 10
        n3.proc.send_signal(signal.SIGSTOP)
        try:
            took = []
            for key in owned:
                started = time.monotonic()
                assert c1.set(key, "while-hung")
                took.append(time.monotonic() - started)
            assert sum(t > 0.3 for t in took) <= 2, took
            assert all(c1.get(k) == b"while-hung" for k in owned)
        finally:
            n3.proc.send_signal(signal.SIGCONT)


def test_the_http_api_of_any_node_serves_any_key(tmp_path: Path) -> None:
    """Keys over HTTP are routed like RESP commands: PUT on one node, GET on the others
    (each key has two owners of three, so some of these are forwarded), DELETE anywhere."""
    http = [free_port() for _ in range(3)]
    first = start_geocache(tmp_path, cluster_args("h1", None, "--http-port", str(http[0])))
    seed = f"127.0.0.1:{first.port}"
    nodes = [first]
    try:
        for i in (2, 3):
            args = cluster_args(f"h{i}", seed, "--http-port", str(http[i - 1]))
            nodes.append(start_geocache(tmp_path, args))
        for node in nodes:
            poll(lambda n=node: list(states(n).values()).count("alive") == 3, 15, "3 alive")
        keys = [f"web{i}" for i in range(12)]
        for k in keys:
            request = urllib.request.Request(
                f"http://127.0.0.1:{http[0]}/v1/keys/{k}?ttl=100", data=k.encode(), method="PUT"
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert reply.status == 201
        for port in http[1:]:
            for k in keys:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/keys/{k}", timeout=5) as r:
                    assert r.read() == k.encode()
                    assert 0 < int(r.headers["X-Geocache-Ttl-Ms"]) <= 100_000
        with client(nodes[1]) as c:
            assert c.mget(keys) == [k.encode() for k in keys]  # and over RESP
        for k in keys:
            request = urllib.request.Request(
                f"http://127.0.0.1:{http[2]}/v1/keys/{k}", method="DELETE"
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert reply.status == 204
        with client(nodes[0]) as c:
            assert c.mget(keys) == [None] * len(keys)
    finally:
        for node in nodes:
            node.stop()
