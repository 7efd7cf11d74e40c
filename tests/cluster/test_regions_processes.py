"""Two regions of real node processes: writes, deletes and expiry cross between them, a
region that missed writes (its stream overflowed) resyncs by digest, and a miss can be
answered by the other region.

Region A has nodes a1, a2 and region B nodes b1, b2 (replicas=2: every node owns every
key, so each region holds everything and any node can be asked directly)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from geocache.clock import make_version
from geocache.cluster.streams import GEO_TIMEOUT_MS
from support.cluster import client, cluster_args, peer_client, poll, start_at, states
from support.procs import ServerProcess, start_geocache


@contextmanager
def two_regions(
    tmp: Path, a_args: tuple[str, ...] = (), b_args: tuple[str, ...] = ()
) -> Iterator[dict[str, ServerProcess]]:
    nodes: dict[str, ServerProcess] = {}
    try:
        nodes["a1"] = start_geocache(tmp, cluster_args("a1", None, "--region", "A", *a_args))
        seed = f"127.0.0.1:{nodes['a1'].port}"
        nodes["a2"] = start_geocache(tmp, cluster_args("a2", seed, "--region", "A", *a_args))
        for name in ("b1", "b2"):
            nodes[name] = start_geocache(tmp, cluster_args(name, seed, "--region", "B", *b_args))
        for node in nodes.values():
            poll(lambda n=node: list(states(n).values()).count("alive") == 4, 20, "4 alive")
        yield nodes
    finally:
        for node in nodes.values():
            if node.is_running():
                node.proc.send_signal(signal.SIGCONT)
            node.stop()


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("regions")
    with two_regions(tmp, b_args=("--read-remote-on-miss",)) as nodes:
        yield nodes


def held(node: ServerProcess, key: bytes) -> list[object] | None:
    """What `node` itself holds for `key` (GC.FETCH: no routing): an entry, a tombstone
    or None."""
    with peer_client(node) as c:
        reply = c.execute_command("GC.FETCH", key)
    return None if reply is None else list(reply)


def all_hold(nodes: dict[str, ServerProcess], key: bytes, version: int) -> bool:
    records = [held(n, key) for n in nodes.values()]
    return all(
        r is not None and int(r[2 if isinstance(r[0], bytes) else 0]) == version for r in records
    )


def test_a_write_reaches_the_other_region_with_its_version_and_expiry(
    regions: dict[str, ServerProcess],
) -> None:
    with client(regions["a1"]) as c:
        assert c.set("geo:w", "v1", ex=300)
        version = int(c.execute_command("GETVER", "geo:w"))
    poll(lambda: all_hold(regions, b"geo:w", version), 5, "the write in both regions")
    records = [held(n, b"geo:w") for n in regions.values()]
    assert {bytes(r[0]) for r in records if r} == {b"v1"}
    # Expiry travels as an absolute time: every copy expires at the same millisecond.
    assert len({int(r[1]) for r in records if r}) == 1
    with client(regions["b2"]) as c:
        assert c.get("geo:w") == b"v1"
        assert 290 < c.ttl("geo:w") <= 300


def test_a_delete_crosses_regions_and_an_older_write_does_not_undo_it(
    regions: dict[str, ServerProcess],
) -> None:
    with client(regions["a2"]) as c:
        c.set("geo:d", "old")
        old_version = int(c.execute_command("GETVER", "geo:d"))
    poll(lambda: all_hold(regions, b"geo:d", old_version), 5, "the write in both regions")
    with client(regions["b1"]) as c:
        assert c.delete("geo:d") == 1
    poll(
        lambda: all((r := held(n, b"geo:d")) is not None and len(r) == 3 for n in regions.values()),
        5,
        "a tombstone on every node",
    )
    # The old write arriving late (a retried batch) is dropped everywhere.
    for node in regions.values():
        with peer_client(node) as p:
            p.execute_command("GC.APPLY", "geo:d", "old", 0, old_version, "a2")
    for node in regions.values():
        with client(node) as c:
            assert c.get("geo:d") is None


def test_a_key_with_a_ttl_expires_in_every_region_at_the_same_moment(
    regions: dict[str, ServerProcess],
) -> None:
    started = time.monotonic()
    with client(regions["a1"]) as c:
        assert c.set("geo:ttl", "v", ex=2)
    poll(lambda: all(held(n, b"geo:ttl") is not None for n in regions.values()), 2, "copies")
    gone_at: dict[str, float] = {}
    deadline = started + 6
    while len(gone_at) < len(regions) and time.monotonic() < deadline:
        for name, node in regions.items():
            if name not in gone_at:
                with client(node) as c:
                    if c.get("geo:ttl") is None:
                        gone_at[name] = time.monotonic()
        time.sleep(0.02)
    assert len(gone_at) == len(regions), "the key outlived its TTL somewhere"
    assert min(gone_at.values()) - started >= 1.8  # not before its time
    assert max(gone_at.values()) - min(gone_at.values()) < 1.0


def test_concurrent_writes_in_both_regions_converge(regions: dict[str, ServerProcess]) -> None:
    keys = [f"geo:c{i}".encode() for i in range(100)]
    errors: list[BaseException] = []

    def writer(node: ServerProcess, tag: str) -> None:
        try:
            with client(node) as c:
                for round_ in range(3):
                    pipe = c.pipeline(transaction=False)
                    for i, key in enumerate(keys):
                        if (i + round_) % 7 == 0:
                            pipe.delete(key)
                        else:
                            pipe.set(key, f"{tag}{round_}")
                    pipe.execute()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(regions["a1"], "a")),
        threading.Thread(target=writer, args=(regions["b2"], "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors

    def converged() -> bool:
        seen = {name: [held(n, k) for k in keys] for name, n in regions.items()}
        versions = {
            name: [None if r is None else (r[2 if len(r) == 4 else 0], len(r)) for r in rs]
            for name, rs in seen.items()
        }
        return len({tuple(v) for v in versions.values()}) == 1

    poll(converged, 10, "identical (key, version) in both regions")


def test_a_miss_asks_the_other_region_when_told_to(regions: dict[str, ServerProcess]) -> None:
    # Put a key in region A only (a replicated write is never shipped on), as if B had
    # missed it.
    version = make_version(int(time.time() * 1000))
    for name in ("a1", "a2"):
        with peer_client(regions[name]) as p:
            assert p.execute_command("GC.APPLY", "geo:only-a", "va", 0, version, "a1") == 1
    assert held(regions["b1"], b"geo:only-a") is None
    with client(regions["b1"]) as c:  # B runs with --read-remote-on-miss
        assert c.get("geo:only-a") == b"va"
        assert c.get("geo:nowhere") is None
    assert held(regions["b1"], b"geo:only-a") is not None  # kept once fetched
    with client(regions["a1"]) as c:  # A does not ask: its misses stay misses
        assert c.get("geo:only-b") is None


def test_lag_and_rtt_are_reported_per_region(regions: dict[str, ServerProcess]) -> None:
    with client(regions["a1"]) as c:
        c.config_resetstat()
        for i in range(50):
            c.set(f"geo:lag{i}", "x")

        def stream() -> dict[str, float]:
            line = c.info("regions").get("region_B", {})
            assert isinstance(line, dict)
            return line

        # Keys are coordinated by their primaries, a1 or a2: a1 sent its share.
        poll(lambda: stream().get("acked", 0) >= 1 and stream()["queued"] == 0, 5, "acks")
        poll(lambda: stream()["rtt_ms"] > 0, 5, "an RTT measured")
        line = stream()
    assert line["resync"] == 0 and line["sent"] >= line["acked"]
    assert 0 <= line["lag_p50_ms"] <= line["lag_p99_ms"] < 2000
    assert 0 < line["rtt_ms"] < 1000
    assert line["bytes"] > 0


def test_a_region_that_missed_writes_resyncs_by_digest(tmp_path: Path) -> None:
    """Region B frozen while A takes more writes than its queue holds: the stream gives
    up on the queue, and once B answers again, repair brings B every key."""
    small = ("--geo-queue-max", "20")
    with two_regions(tmp_path, a_args=small, b_args=small) as nodes:
        for name in ("b1", "b2"):
            nodes[name].proc.send_signal(signal.SIGSTOP)
        with client(nodes["a1"]) as c:
            pipe = c.pipeline(transaction=False)
            for i in range(300):
                pipe.set(f"cut:{i}", i)
            assert all(pipe.execute())
            info = c.info("regions")["region_B"]
            assert isinstance(info, dict)
        # Past the batch timeout at both gateways (GEO_TIMEOUT_MS each): the batches in
        # flight fail and do not fit the queue again.
        time.sleep(2 * GEO_TIMEOUT_MS / 1000 + 1.5)
        for name in ("b1", "b2"):
            nodes[name].proc.send_signal(signal.SIGCONT)

        def b_has_all() -> bool:
            for name in ("b1", "b2"):
                with client(nodes[name]) as c:
                    try:
                        if c.dbsize() < 300:
                            return False
                    except redis.ResponseError:
                        return False
            return True

        poll(b_has_all, 40, "region B repaired")

        def resyncs() -> int:
            total = 0
            for name in ("a1", "a2"):  # each coordinated its share of the writes
                with client(nodes[name]) as c:
                    line = c.info("regions")["region_B"]
                    assert isinstance(line, dict)
                    total += line["resyncs"]
            return total

        poll(lambda: resyncs() >= 1, 20, "a resync by digest")
        with client(nodes["b2"]) as c:
            assert c.get("cut:299") == b"299"


def test_a_whole_region_restarted_empty_warms_up_from_another_region(tmp_path: Path) -> None:
    with two_regions(tmp_path) as nodes:
        with client(nodes["a1"]) as c:
            pipe = c.pipeline(transaction=False)
            for i in range(200):
                pipe.set(f"w:{i}", i)
            pipe.execute()
        poll(lambda: all_hold_count(nodes["b1"], 200), 10, "B has every key")
        ports = {name: nodes[name].port for name in ("b1", "b2")}
        for name in ("b1", "b2"):
            nodes[name].proc.send_signal(signal.SIGKILL)
            nodes[name].proc.wait(5)
        seed = f"127.0.0.1:{nodes['a1'].port}"
        for name in ("b1", "b2"):
            nodes[name] = start_at(ports[name], tmp_path, cluster_args(name, seed, "--region", "B"))
        for name in ("b1", "b2"):
            with client(nodes[name]) as c:
                poll(lambda c=c: c.info("geocache")["cluster_ready"] == 1, 20, "ready")
                assert c.mget([f"w:{i}" for i in range(200)]) == [b"%d" % i for i in range(200)]


def all_hold_count(node: ServerProcess, n: int) -> bool:
    with client(node) as c:
        return int(c.dbsize()) >= n
