"""Repair and warm-up between real node processes on 127.0.0.1.

A replica misses writes and deletes (frozen with SIGSTOP until the others declare it
dead, or killed and restarted empty); once it is back, within a bounded time every owner
of every key holds the same (key, version, origin, tombstone), and no deleted key is
live anywhere. What each node holds is read with the peer commands repair itself uses
(`GC.BUCKET` over every bucket), on a connection that proved the cluster secret.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from geocache.cluster.digest import BUCKETS
from support.cluster import (
    client,
    cluster_args,
    peer_client,
    poll,
    running_region,
    start_at,
    states,
)
from support.procs import ServerProcess, free_port, start_geocache

# Crash to DEAD at every member of 3 is at most 10 s (SwimConfig.detection_bound_ms).
DEAD_TIMEOUT_S = 14
CONVERGE_TIMEOUT_S = 10

Held = dict[str, tuple[int, str, bool]]  # key -> (version, origin, is_tombstone)

pytestmark = pytest.mark.timeout(60)


def held(server: ServerProcess) -> Held:
    """Every record the node holds: GC.BUCKET over all buckets, in one pipeline."""
    with peer_client(server) as c:
        pipe = c.pipeline(transaction=False)
        for b in range(BUCKETS):
            pipe.execute_command("GC.BUCKET", b)
        replies = pipe.execute()
    out: Held = {}
    for flat in replies:
        for i in range(0, len(flat), 6):  # key, version, origin, tomb, expiry's version, origin
            key, version, origin, tomb = flat[i : i + 4]
            out[key.decode()] = (int(version), origin.decode(), bool(tomb))
    return out


def owners_of(server: ServerProcess, keys: list[str]) -> dict[str, list[str]]:
    with client(server) as c:
        pipe = c.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("GC.OWNERS", key)
        return {k: [o.decode() for o in r] for k, r in zip(keys, pipe.execute(), strict=True)}


def disagreements(nodes: dict[str, ServerProcess], keys: list[str], deleted: set[str]) -> list[str]:
    """Keys whose owners hold different records, or that are deleted yet live somewhere."""
    views = {name: held(node) for name, node in nodes.items()}
    owners = owners_of(next(iter(nodes.values())), keys)
    bad = []
    for key in keys:
        records = {views[o].get(key) for o in owners[key]}
        if len(records) != 1 or None in records:
            bad.append(f"{key}: {dict((o, views[o].get(key)) for o in owners[key])}")
        elif key in deleted and not records.pop()[2]:  # type: ignore[index]
            bad.append(f"{key}: deleted but live at its owners")
    for name, view in views.items():
        bad += [f"{k}: live again at {name}" for k in deleted if k in view and not view[k][2]]
    return bad


def assert_converges(nodes: dict[str, ServerProcess], keys: list[str], deleted: set[str]) -> None:
    last: list[str] = []

    def converged() -> bool:
        nonlocal last
        last = disagreements(nodes, keys, deleted)
        return not last

    try:
        poll(converged, CONVERGE_TIMEOUT_S, "owners to converge")
    except AssertionError:
        raise AssertionError(f"{len(last)} keys differ, e.g. {last[:5]}") from None


@pytest.fixture
def region(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    with running_region(tmp_path) as nodes:
        yield nodes


def write_phase_one(c: redis.Redis) -> None:
    pipe = c.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"k{i}", "v1")
    assert all(pipe.execute())


def write_phase_two(c: redis.Redis) -> set[str]:
    """While a replica is away: update 100 keys, delete 100, add 100; returns the deleted."""
    pipe = c.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"k{i}", "v2")
        pipe.delete(f"k{100 + i}")
        pipe.set(f"new{i}", "n")
    replies = pipe.execute()
    assert all(r in (True, 1) for r in replies), replies
    return {f"k{100 + i}" for i in range(100)}


ALL_KEYS = [f"k{i}" for i in range(300)] + [f"new{i}" for i in range(100)]


def test_a_frozen_replica_gets_the_writes_and_deletes_it_missed(
    region: list[ServerProcess],
) -> None:
    n1, n2, n3 = region
    with client(n1) as c1:
        for command in (["GC.DIGEST"], ["GC.BUCKET", "0"], ["GC.REPAIR", "1"]):
            with pytest.raises(redis.ResponseError, match="cluster peers"):
                c1.execute_command(*command)  # a client is no peer
        write_phase_one(c1)
        n3.proc.send_signal(signal.SIGSTOP)
        poll(
            lambda: states(n1).get("n3") == "dead" and states(n2).get("n3") == "dead",
            DEAD_TIMEOUT_S,
            "n3 declared dead",
        )
        # n3 is no owner now, so no hint is kept for it: only repair can fix it.
        deleted = write_phase_two(c1)
    n3.proc.send_signal(signal.SIGCONT)
    poll(
        lambda: states(n1).get("n3") == "alive" and states(n2).get("n3") == "alive",
        DEAD_TIMEOUT_S,
        "n3 alive again",
    )
    nodes = {"n1": n1, "n2": n2, "n3": n3}
    assert_converges(nodes, ALL_KEYS, deleted)
    # And it stays so: rounds still under way (n1 and n2 against n3) bring nothing back.
    time.sleep(1.5)
    assert disagreements(nodes, ALL_KEYS, deleted) == []
    with client(n3) as c3:
        assert c3.mget([f"k{i}" for i in range(200)]) == [b"v2"] * 100 + [None] * 100
        assert c3.mget([f"new{i}" for i in range(100)]) == [b"n"] * 100
        # Repair did it (no hint was kept for a dead owner): stale values, lost deletes
        # and the keys written meanwhile were all pulled by n3.
        info = c3.info("geocache")
        assert info["cluster_repair_keys_pulled"] > 0
        assert info["cluster_repair_deletes_pulled"] > 0
        assert info["cluster_ready"] == 1


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            assert json.load(reply)["status"] == "ready"
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_a_restarted_node_warms_up_before_it_is_ready(
    region: list[ServerProcess], tmp_path: Path
) -> None:
    n1, n2, n3 = region
    with client(n1) as c1:
        write_phase_one(c1)
        n3.proc.send_signal(signal.SIGKILL)
        n3.proc.wait(5)
        poll(
            lambda: states(n1).get("n3") == "dead" and states(n2).get("n3") == "dead",
            DEAD_TIMEOUT_S,
            "n3 declared dead",
        )
        deleted = write_phase_two(c1)
    http_port = free_port()
    args = cluster_args("n3", f"127.0.0.1:{n1.port}", "--http-port", str(http_port))
    restarted = start_at(n3.port, tmp_path, args)
    try:
        poll(lambda: readyz(http_port) == 200, 12, "n3 /readyz")
        # Ready means warmed up: what n3 owns is already there, without waiting.
        nodes = {"n1": n1, "n2": n2, "n3": restarted}
        mine = [k for k, o in owners_of(restarted, ALL_KEYS).items() if "n3" in o]
        view = held(restarted)
        live = [k for k in mine if k not in deleted]
        assert live and all(k in view and not view[k][2] for k in live)
        assert_converges(nodes, ALL_KEYS, deleted)
    finally:
        restarted.stop()


def test_a_joining_node_takes_its_share_and_the_others_let_go(
    region: list[ServerProcess], tmp_path: Path
) -> None:
    """A fourth node joins: it pulls the buckets it now owns, and the nodes that lost
    them drop their copies once it holds the same: two copies of each key, no more."""
    n1 = region[0]
    keys = [f"j{i}" for i in range(400)]
    with client(n1) as c1:
        pipe = c1.pipeline(transaction=False)
        for k in keys:
            pipe.set(k, "v")
        assert all(pipe.execute())
    n4 = start_geocache(tmp_path, cluster_args("n4", f"127.0.0.1:{n1.port}"))
    try:
        nodes = [*region, n4]
        poll(lambda: all(list(states(n).values()).count("alive") == 4 for n in nodes), 15, "4")

        def copies() -> int:
            return sum(len([k for k in held(n) if k.startswith("j")]) for n in nodes)

        poll(lambda: copies() == 2 * len(keys), 30, "exactly two copies of each key")
        assert len([k for k in held(n4) if k.startswith("j")]) > 0
        with client(n4) as c4:
            assert c4.mget(keys) == [b"v"] * len(keys)
            assert c4.info("geocache")["cluster_ready"] == 1
        handed = sum(client(n).info("geocache")["cluster_repair_handed_off"] for n in region)
        assert handed > 0
    finally:
        n4.stop()
