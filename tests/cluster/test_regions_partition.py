"""Two regions of real processes joined through delay relays, cut apart long enough for
each to declare the other dead, both writing and deleting the same keys meanwhile.
After the heal every node holds the same (key, version) for every key, the later write
or delete wins everywhere, and no deleted key comes back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from geocache.relay import RelaySet
from support.cluster import client, cluster_args, peer_client, poll, start_at, states
from support.procs import ServerProcess, free_port

pytestmark = pytest.mark.timeout(120)

REGION = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
ONE_WAY_MS = 10


@contextmanager
def regions_through_relays(
    tmp: Path, *extra: str, one_way_ms: int = ONE_WAY_MS
) -> Iterator[tuple[dict[str, ServerProcess], RelaySet]]:
    """a1, a2 in A and b1, b2 in B; each region reaches the other's nodes through a relay
    that delays each way by `one_way_ms`."""
    ports = {name: free_port() for name in REGION}
    nodes: dict[str, ServerProcess] = {}
    with RelaySet() as relays:
        for name, port in ports.items():
            dialer = "B" if REGION[name] == "A" else "A"
            relays.add(f"127.0.0.1:{port}", one_way_ms, group=dialer)
        try:
            for name, port in ports.items():
                routes = relays.routes(REGION[name])
                peer_map = ",".join(f"{addr}={via}" for addr, via in routes.items())
                seed = None if name == "a1" else f"127.0.0.1:{ports['a1']}"
                args = cluster_args(
                    name, seed, "--region", REGION[name], "--peer-map", peer_map, *extra
                )
                nodes[name] = start_at(port, tmp, args)
            for node in nodes.values():
                poll(lambda n=node: list(states(n).values()).count("alive") == 4, 20, "4 alive")
            yield nodes, relays
        finally:
            for node in nodes.values():
                if node.is_running():
                    node.proc.send_signal(signal.SIGCONT)
                node.stop()


def record(node: ServerProcess, key: str) -> tuple[int, bool] | None:
    """(version, is_tombstone) of what `node` holds for `key`."""
    with peer_client(node) as p:
        reply = p.execute_command("GC.FETCH", key)
    if reply is None:
        return None
    return (int(reply[0]), True) if len(reply) == 3 else (int(reply[2]), False)


def test_writes_and_deletes_on_both_sides_of_a_region_partition_converge(
    tmp_path: Path,
) -> None:
    keys = [f"p{i}" for i in range(140)]
    with regions_through_relays(tmp_path) as (nodes, relays):
        with client(nodes["a1"]) as a:
            pipe = a.pipeline(transaction=False)
            for k in keys:
                pipe.set(k, "base")
            pipe.execute()
        poll(
            lambda: all(record(n, "p139") is not None for n in nodes.values()),
            10,
            "the base values in both regions",
        )
        for relay in relays.relays():
            relays.call(relay.cut)
        poll(lambda: states(nodes["a1"]).get("b1") == "dead", 20, "A declares B dead")
        poll(lambda: states(nodes["b1"]).get("a1") == "dead", 20, "B declares A dead")
        # Region A first, region B later (later versions): B's operations must win.
        with client(nodes["a2"]) as a:
            for i in range(100):
                a.set(keys[i], "a")
            for i in range(100, 120):
                a.delete(keys[i])
        with client(nodes["b2"]) as b:
            for i in range(50):
                b.delete(keys[i])
            for i in range(50, 100):
                b.set(keys[i], "b")
            for i in range(120, 140):
                b.set(keys[i], "b2")
        for relay in relays.relays():
            relays.call(relay.heal)

        def converged() -> bool:
            return all(len({record(n, k) for n in nodes.values()}) == 1 for k in keys)

        poll(converged, 40, "identical (key, version) on every node of both regions")
        expected = (
            [None] * 50 + [b"b"] * 50 + [None] * 20 + [b"b2"] * 20  # deletes stay deleted
        )
        for node in nodes.values():
            with client(node) as c:
                assert c.mget(keys) == expected


def test_a_region_cut_off_past_its_queue_resyncs_by_digest(tmp_path: Path) -> None:
    """The link is down (connections reset, so nothing sent before arrives late) while
    region A takes more writes than a stream's queue holds: the streams give up on their
    queues, and once the link is back, digest repair brings region B every key."""
    keys = [f"q{i}" for i in range(300)]
    with regions_through_relays(tmp_path, "--geo-queue-max", "20") as (nodes, relays):
        for relay in relays.relays():
            relays.call(relay.cut)
        with client(nodes["a1"]) as a:
            pipe = a.pipeline(transaction=False)
            for k in keys:
                pipe.set(k, k)
            assert all(pipe.execute())

        def streams() -> list[dict[str, int]]:
            lines = []
            for name in ("a1", "a2"):
                with client(nodes[name]) as c:
                    lines.append(c.info("regions")["region_B"])
            return lines

        poll(lambda: all(s["resync"] == 1 for s in streams()), 10, "both streams overflowed")
        for relay in relays.relays():
            relays.call(relay.heal)
        poll(lambda: all(s["resyncs"] >= 1 for s in streams()), 30, "resyncs")
        for name in ("b1", "b2"):
            with client(nodes[name]) as c:
                poll(lambda c=c: c.mget(keys) == [k.encode() for k in keys], 30, "B has all")
