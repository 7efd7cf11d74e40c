"""Failover against a real region of three node processes on 127.0.0.1.

A key's primary owner is SIGKILLed while a client keeps calling: the calls go on through
the replica at once (p99 of the calls in the 2 s after the kill at most 50 ms: the
killed node refuses connections, which marks it down in one attempt, and a down node is
never tried again until a probe finds it back). Restarted at the same port, the node is
probed back, reappears in the topology, and takes its share of the calls again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from client.regions import addr, cluster_args, poll, start_at, start_nodes, stop_all, wait_alive
from geocache import AsyncClient, Client
from support.procs import ServerProcess

pytestmark = pytest.mark.timeout(30)

IDS = ["n1", "n2", "n3"]
KEY = "failover-key"
WATCH_S = 2.0  # the window after the kill whose latencies are measured
P99_LIMIT_S = 0.050
# The client refreshes its map this often here (seconds), so the restarted node's
# return to the membership reaches it within the test's budget.
REFRESH_S = 1.0
BACK_WITHIN_S = 15.0


@pytest.fixture
def region(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    nodes = start_nodes(tmp_path, IDS)
    try:
        wait_alive(nodes, 3)
        yield nodes
    finally:
        stop_all(nodes)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def kill(server: ServerProcess) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(5)


def restart(nodes: list[ServerProcess], victim: ServerProcess, tmp_path: Path) -> ServerProcess:
    index = nodes.index(victim)
    seed = addr(nodes[1] if index == 0 else nodes[0])
    restarted = start_at(victim.port, tmp_path, cluster_args(IDS[index], seed))
    nodes[index] = restarted  # the fixture stops it
    return restarted


def test_owners_match_the_nodes(region: list[ServerProcess]) -> None:
    with Client([addr(region[0])], typed=True) as client:
        for node in region:
            with redis.Redis(host=node.host, port=node.port, socket_timeout=5) as r:
                for i in range(100):
                    ids = [o.decode() for o in r.execute_command("GC.OWNERS", f"k{i}")]
                    by_id = {IDS[j]: addr(n) for j, n in enumerate(region)}
                    assert client.owners(f"k{i}") == tuple(by_id[o] for o in ids)


def test_sigkill_of_the_primary_costs_no_timeout_and_it_comes_back(
    region: list[ServerProcess], tmp_path: Path
) -> None:
    with Client([addr(region[0])], typed=True, topology_refresh_s=REFRESH_S) as client:
        client.set(KEY, 0)
        primary, replica = client.owners(KEY)
        victim = next(n for n in region if addr(n) == primary)
        for i in range(100):  # warm: pools, latency estimates
            client.set(KEY, i)
            assert client.get(KEY) == i
        kill(victim)
        latencies, i, last = [], 0, 99
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < WATCH_S:
            started = time.perf_counter()
            if i % 2:
                client.set(KEY, i)
                last = i
            else:
                assert client.get(KEY) == last  # nothing lost, nothing stale
            latencies.append(time.perf_counter() - started)
            i += 1
        assert p99(latencies) <= P99_LIMIT_S, (p99(latencies), max(latencies))
        stats = client.stats()
        assert stats[primary].down and stats[replica].requests > len(latencies) // 2

        restart(region, victim, tmp_path)
        before = client.stats()[primary].requests
        deadline = time.monotonic() + BACK_WITHIN_S
        while client.stats()[primary].requests == before:
            assert time.monotonic() < deadline, "the restarted node was not used again"
            client.set(KEY, "after")
            time.sleep(0.01)
        assert not client.stats()[primary].down
        assert client.owners(KEY)[0] == primary
        # While the nodes' views of the rejoin differ, a write may land where the
        # restarted node does not see it at once; the region converges (repair).
        poll(lambda: client.get(KEY) == "after", BACK_WITHIN_S, "the last write everywhere")


async def test_async_client_fails_over_the_same_way(
    region: list[ServerProcess], tmp_path: Path
) -> None:
    async with AsyncClient([addr(region[0])], typed=True, topology_refresh_s=REFRESH_S) as client:
        await client.set(KEY, 0)
        primary, _ = await client.owners(KEY)
        victim = next(n for n in region if addr(n) == primary)
        for i in range(100):
            await client.set(KEY, i)
        kill(victim)
        latencies = []
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < WATCH_S:
            started = time.perf_counter()
            # Ten at once: calls already queued on the dead connection fail over too.
            await asyncio.gather(*(client.get(KEY) for _ in range(10)))
            await client.set(KEY, "during")
            latencies.append(time.perf_counter() - started)
        assert p99(latencies) <= P99_LIMIT_S, (p99(latencies), max(latencies))

        restart(region, victim, tmp_path)
        before = client.stats()[primary].requests
        deadline = time.monotonic() + BACK_WITHIN_S
        while client.stats()[primary].requests == before:
            assert time.monotonic() < deadline, "the restarted node was not used again"
            await client.get(KEY)
            await asyncio.sleep(0.01)
        assert await client.get(KEY) == "during"  # the restarted node was warmed up


def test_with_every_node_down_misses_are_quick(region: list[ServerProcess]) -> None:
    computed: list[int] = []
    with Client([addr(n) for n in region], typed=True, on_error="miss") as client:

        @client.memoize(namespace="down")
        def compute(x: int) -> int:
            computed.append(x)
            return x + 1

        assert compute(1) == 2 and compute(1) == 2 and computed == [1]
        for node in region:
            kill(node)
        latencies = []
        for _ in range(50):
            started = time.perf_counter()
            assert client.get("anything", "default") == "default"
            assert compute(1) == 2
            latencies.append(time.perf_counter() - started)
        assert max(latencies) <= P99_LIMIT_S, max(latencies)
        assert len(computed) == 51
        assert all(s.down for s in client.stats().values())
