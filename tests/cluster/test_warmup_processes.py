"""A whole region restarted empty, as real node processes: it is not ready (and answers
LOADING) until it has pulled every key from the other region, and a client whose home
it is reads from the other region meanwhile, never a miss, and comes back after.

Region A has a1, a2 and region B b1, b2 (replicas=2: every node holds every key). B's
warm-up is paced (`--warmup-keys-per-s`) so that it lasts seconds whatever the
machine's speed: a slower machine only makes the not-ready window longer."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from geocache import Client
from support.cluster import client, cluster_args, poll, start_at, states
from support.procs import ServerProcess, free_port

pytestmark = pytest.mark.timeout(180)

KEYS = 20_000
# 20,000 keys at 5,000 a second: about 4 s of warm-up per node; the bound is far past it.
PACED = ("--warmup-keys-per-s", "5000", "--warmup-max-s", "120")
READY_S = 60.0


def key(i: int) -> str:
    return f"warm:{i}"


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("warmup")
    nodes: dict[str, ServerProcess] = {}
    try:
        for name in ("a1", "a2", "b1", "b2"):
            nodes[name] = start(tmp, name, free_port(), seed=nodes.get("a1"))
        for node in nodes.values():
            poll(lambda n=node: list(states(n).values()).count("alive") == 4, 20, "4 alive")
        with client(nodes["a1"]) as c:
            for start_at_key in range(0, KEYS, 1000):
                pipe = c.pipeline(transaction=False)
                for i in range(start_at_key, start_at_key + 1000):
                    pipe.set(key(i), i)
                pipe.execute()
        for name in ("b1", "b2"):
            poll(lambda n=nodes[name]: dbsize(n) == KEYS, 30, f"{name} holds every key")
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def start(tmp: Path, name: str, port: int, seed: ServerProcess | None) -> ServerProcess:
    region = name[0].upper()
    seed_addr = None if seed is None else f"127.0.0.1:{seed.port}"
    extra = PACED if region == "B" else ()
    return start_at(port, tmp, cluster_args(name, seed_addr, "--region", region, *extra))


def restart_region_b(nodes: dict[str, ServerProcess], tmp: Path) -> None:
    """SIGKILL both B nodes, then start them again, empty, at their addresses."""
    for name in ("b1", "b2"):
        nodes[name].proc.send_signal(signal.SIGKILL)
        nodes[name].proc.wait(5)
    for name in ("b1", "b2"):
        nodes[name] = start(tmp, name, nodes[name].port, seed=nodes["a1"])


def dbsize(node: ServerProcess) -> int:
    with client(node) as c:
        return int(c.dbsize())


def no_retry(node: ServerProcess) -> redis.Redis:
    """A connection that raises LOADING at once (redis-py retries it by default)."""
    return redis.Redis(
        host=node.host, port=node.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)
    )


def ready(node: ServerProcess) -> bool:
    with client(node) as c:
        return bool(c.info("geocache")["cluster_ready"] == 1)


def test_a_region_restarted_empty_is_ready_only_once_it_holds_every_key(
    regions: dict[str, ServerProcess], tmp_path: Path
) -> None:
    restart_region_b(regions, tmp_path)
    b1, b2 = regions["b1"], regions["b2"]
    # Straight after the restart: b1 is paced far from done (4 s for its keys).
    assert not ready(b1) and dbsize(b1) < KEYS
    with no_retry(b1) as c, pytest.raises(redis.exceptions.BusyLoadingError):
        c.get(key(0))
    held_at_ready: dict[str, int] = {}
    deadline = time.monotonic() + READY_S
    while len(held_at_ready) < 2 and time.monotonic() < deadline:
        for name, node in (("b1", b1), ("b2", b2)):
            if name not in held_at_ready and ready(node):
                held_at_ready[name] = dbsize(node)
        time.sleep(0.02)
    assert held_at_ready == {"b1": KEYS, "b2": KEYS}
    wanted = [key(i) for i in range(0, KEYS, 97)]
    for node in (b1, b2):
        with client(node) as c:
            assert c.mget(wanted) == [str(i).encode() for i in range(0, KEYS, 97)]
            info = c.info("geocache")
            assert info["cluster_warmup_records"] == KEYS
            assert info["cluster_warmup_buckets_failed"] == 0


def test_the_client_does_not_move_back_to_a_region_still_warming_up(
    regions: dict[str, ServerProcess], tmp_path: Path
) -> None:
    """Two clients whose home is B: one saw B go down (its probes find B not ready), one
    first meets B while it warms up (B's LOADING makes it skip the node)."""
    b_nodes = ("b1", "b2")
    for name in b_nodes:
        poll(lambda n=regions[name]: ready(n), READY_S, f"{name} ready")
    seeds = [addr(regions[n]) for n in ("b1", "a1")]
    sample = [key(i) for i in range(0, KEYS, 401)]
    expected = {k: str(i).encode() for k, i in zip(sample, range(0, KEYS, 401), strict=True)}

    def requests(cache: Client, name: str) -> int:
        stats = cache.stats().get(addr(regions[name]))
        return 0 if stats is None else stats.requests

    with Client(seeds, region="B", topology_refresh_s=0.5) as seen_down:
        assert seen_down.get_many(sample) == expected
        before = sum(requests(seen_down, n) for n in b_nodes)
        assert seen_down.get(sample[0]) == expected[sample[0]]
        assert sum(requests(seen_down, n) for n in b_nodes) == before + 1  # home is B

        restart_region_b(regions, tmp_path)
        # One map request at most (a warming node answers GC.TOPOLOGY): no refresh due.
        with Client(seeds, region="B", topology_refresh_s=60) as fresh:
            clients = {"seen_down": seen_down, "fresh": fresh}
            at_restart = {(c, n): requests(clients[c], n) for c in clients for n in b_nodes}
            # Calls a B node got while not ready: counted before asking it, so every call
            # counted was made before it was ready (readiness never goes back).
            while_warming = dict.fromkeys(at_restart, 0)
            warming = set(b_nodes)
            reads = 0
            deadline = time.monotonic() + READY_S
            while warming and time.monotonic() < deadline:
                for cache in clients.values():
                    for k in sample[:10]:
                        assert cache.get(k) == expected[k]  # a ready node's: never a miss
                        reads += 1
                counted = {pair: requests(clients[pair[0]], pair[1]) for pair in at_restart}
                for name in list(warming):
                    if ready(regions[name]):
                        warming.discard(name)
                        continue
                    for c in clients:
                        while_warming[c, name] = counted[c, name] - at_restart[c, name]
                time.sleep(0.05)
            assert not warming and reads >= 40
            # At most the one call a node answered LOADING to (and the fresh client's map
            # request): then the client skips the node until its probe says ready.
            assert all(while_warming["seen_down", n] <= 1 for n in b_nodes), while_warming
            assert all(while_warming["fresh", n] <= 2 for n in b_nodes), while_warming
            assert while_warming["fresh", "b1"] + while_warming["fresh", "b2"] >= 1

        def back_home() -> bool:
            before = sum(requests(seen_down, n) for n in b_nodes)
            assert seen_down.get(sample[1]) == expected[sample[1]]
            return sum(requests(seen_down, n) for n in b_nodes) > before

        poll(back_home, 20, "calls back in region B")
        assert seen_down.get_many(sample) == expected


def addr(node: ServerProcess) -> str:
    return f"127.0.0.1:{node.port}"
