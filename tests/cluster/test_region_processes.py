"""A region of real node processes on 127.0.0.1: routing, replication, crash and restart."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from support.procs import (
    ServerProcess,
    _spawn,
    geocache_argv,
    geocache_env,
    start_geocache,
    wait_ready,
)

SECRET = "test-secret"
REPO_ROOT = Path(__file__).resolve().parents[2]


def poll(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def cluster_args(node_id: str, seed: str | None, *extra: str) -> list[str]:
    args = ["--node-id", node_id, "--cluster-secret", SECRET, "--log-level", "warning"]
    if seed:
        args += ["--seeds", seed]
    return args + list(extra)


def start_at(port: int, tmp: Path, args: list[str]) -> ServerProcess:
    server = _spawn(
        "geocache",
        geocache_argv(port, args),
        port,
        tmp / f"node-{port}-{time.monotonic_ns()}.log",
        cwd=REPO_ROOT,
        env=geocache_env(),
    )
    wait_ready(server)
    return server


def states(server: ServerProcess) -> dict[str, str]:
    with redis.Redis(host=server.host, port=server.port, socket_timeout=5) as client:
        topology = client.execute_command("GC.TOPOLOGY")
    result = {}
    for item in topology:
        record = item if isinstance(item, dict) else dict(zip(item[::2], item[1::2], strict=True))
        result[record[b"id"].decode()] = record[b"state"].decode()
    return result


@pytest.fixture
def region(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    first = start_geocache(tmp_path, cluster_args("n1", None))
    seed = f"127.0.0.1:{first.port}"
    nodes = [first] + [start_geocache(tmp_path, cluster_args(f"n{i}", seed)) for i in (2, 3)]
    try:
        for node in nodes:
            poll(lambda n=node: list(states(n).values()).count("alive") == 3, 15, "3 alive")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def client(server: ServerProcess) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=5)


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
            # The restarted node answers LOADING until it has found its peers.
            poll(lambda: list(states(restarted).values()).count("alive") == 3, 15, "n3 joined")
            with client(restarted) as c3:
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
