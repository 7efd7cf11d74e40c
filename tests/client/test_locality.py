"""Locality with distance: the client's own region on loopback, two others behind delay
relays (10 ms and 40 ms one way). Calls stay home; with the home region down they go
to the nearer other region, where what was written at home already is (cross-region
replication), never to the farther one; when home returns, they come back to it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.regions import addr, cluster_args, poll, start_at, wait_alive
from geocache import Client
from geocache.relay import RelaySet
from support.procs import ServerProcess, free_port

pytestmark = pytest.mark.timeout(60)

DELAYS_MS = {"mid": 10, "far": 40}
KEYS = [f"loc{i}" for i in range(30)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[dict[str, ServerProcess], RelaySet]]:
    """One node a region: home, mid, far (joined directly: only the client is far)."""
    nodes: dict[str, ServerProcess] = {}
    with RelaySet() as relays:
        try:
            seed = None
            for region in ("home", "mid", "far"):
                nodes[region] = start_at(
                    free_port(), tmp_path, cluster_args(region, seed, region=region)
                )
                seed = seed or addr(nodes[region])
            wait_alive(list(nodes.values()), 3)
            for region, delay_ms in DELAYS_MS.items():
                relays.add(addr(nodes[region]), delay_ms, group="client")
            yield nodes, relays
        finally:
            for node in nodes.values():
                node.stop()


def test_calls_stay_home_fail_over_to_the_nearest_region_and_come_back(
    world: tuple[dict[str, ServerProcess], RelaySet], tmp_path: Path
) -> None:
    nodes, relays = world
    seeds = [addr(n) for n in nodes.values()]
    with Client(
        seeds, region="home", routes=relays.routes("client"), typed=True, topology_refresh_s=1.0
    ) as client:

        def requests() -> dict[str, int]:
            stats = client.stats()
            return {r: stats[addr(n)].requests if addr(n) in stats else 0 for r, n in nodes.items()}

        client.set_many({k: k for k in KEYS})
        poll(  # the background probes measure every node's round trip
            lambda: (
                client.get(KEYS[0]) == KEYS[0]
                and all(s.latency_ms is not None for s in client.stats().values())
            ),
            10,
            "round trips measured",
        )
        time.sleep(1.2)  # the client ranks regions by those round trips once a second
        before = requests()
        for k in KEYS:
            assert client.get(k) == k
        after = requests()
        assert after["home"] - before["home"] == len(KEYS)
        assert after["mid"] == before["mid"] and after["far"] == before["far"]

        home = nodes["home"]
        home.proc.send_signal(signal.SIGKILL)
        home.proc.wait(5)
        before = requests()
        started = time.monotonic()
        # Written at home, replicated: the nearer region has every value.
        assert client.get_many(KEYS) == {k: k for k in KEYS}
        for k in KEYS:
            assert client.get(k) == k
        took = time.monotonic() - started
        after = requests()
        assert after["far"] == before["far"]  # never the farther region
        assert after["mid"] - before["mid"] >= len(KEYS) + 1
        # 31 calls over a 20 ms round trip: failing over waited on no timeout.
        assert took < 3.0

        nodes["home"] = start_at(home.port, tmp_path, cluster_args("home", seeds[1], "home"))

        def back_home() -> bool:
            before = requests()
            client.get(KEYS[0])
            after = requests()
            return after["home"] > before["home"] and after["mid"] == before["mid"]

        poll(back_home, 20, "calls back in the home region")
        assert client.get_many(KEYS) == {k: k for k in KEYS}  # home warmed up from the others
