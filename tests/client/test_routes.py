"""Client routes: a node's address dialed through a delay relay, as far regions are in the
demo. The map and stats keep the node's own address; the latency measured is the
relay's (one-way delay twice over), and regions are ranked by it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.regions import addr, poll, start_nodes, stop_all, wait_alive
from geocache import AsyncClient, Client
from geocache.relay import RelaySet
from support import cluster
from support.procs import ServerProcess

pytestmark = pytest.mark.timeout(40)

DELAY_MS = 30
NEAR_DELAY_MS = 2
# A round trip through the relay is two one-way delays; scheduling on a busy machine
# only ever adds to it.
RTT_LOW_MS, RTT_HIGH_MS = 2 * DELAY_MS - 1, 2 * DELAY_MS + 40


@pytest.fixture(scope="module")
def relays() -> Iterator[RelaySet]:
    with RelaySet() as relay_set:
        yield relay_set


@pytest.fixture(scope="module")
def solo_route(solo: ServerProcess, relays: RelaySet) -> dict[str, str]:
    relays.add(addr(solo), DELAY_MS, group="solo")
    return relays.routes("solo")


def test_calls_go_through_the_route_and_measure_its_latency(
    solo: ServerProcess, solo_route: dict[str, str], relays: RelaySet
) -> None:
    relay = relays.relay(addr(solo), "solo")
    accepted = relay.accepted
    with Client([addr(solo)], typed=True, routes=solo_route) as client:
        client.set("routed", "yes")
        started = time.monotonic()
        for _ in range(5):
            assert client.get("routed") == "yes"
        per_call_ms = (time.monotonic() - started) * 1000 / 5
        stats = client.stats()
    assert relay.accepted > accepted  # dialed the relay, not the node
    assert set(stats) == {addr(solo)}  # the node keeps its own address
    latency_ms = stats[addr(solo)].latency_ms
    assert latency_ms is not None and RTT_LOW_MS <= latency_ms <= RTT_HIGH_MS
    assert per_call_ms >= RTT_LOW_MS


async def test_the_async_client_takes_routes_too(
    solo: ServerProcess, solo_route: dict[str, str]
) -> None:
    async with AsyncClient([addr(solo)], typed=True, routes=solo_route) as client:
        await client.set("routed-async", 1)
        for _ in range(5):
            assert await client.get("routed-async") == 1
        latency_ms = client.stats()[addr(solo)].latency_ms
    assert latency_ms is not None and RTT_LOW_MS <= latency_ms <= RTT_HIGH_MS


def test_routes_are_checked() -> None:
    with pytest.raises(ValueError, match="host:port"):
        Client(["127.0.0.1:7379"], routes={"127.0.0.1:7379": "nowhere"})
    with pytest.raises(ValueError, match="host:port"):
        AsyncClient(["127.0.0.1:7379"], routes={"a-node": "127.0.0.1:1"})


Region = list[ServerProcess]


def ready(node: ServerProcess) -> bool:
    with cluster.client(node) as c:
        return bool(c.info("geocache")["cluster_ready"] == 1)


@pytest.fixture
def two_regions(tmp_path: Path) -> Iterator[tuple[Region, Region]]:
    """Two nodes a region: a node alone in its region, seeded through another, stays
    not ready (and unprobed by clients) until its warm-up's time bound."""
    far = start_nodes(tmp_path, ["far1", "far2"], region="a-far")
    near: Region = []
    try:
        near = start_nodes(tmp_path, ["near1", "near2"], region="b-near", seed=addr(far[0]))
        wait_alive(far + near, 4)
        # A warming node answers probes "not ready", and clients skip it: wait it out.
        for node in far + near:
            poll(lambda n=node: ready(n), 15, f"{node.port} ready")
        yield far, near
    finally:
        stop_all(far + near)


def test_regions_are_ranked_by_the_latency_of_their_routes(
    two_regions: tuple[Region, Region], relays: RelaySet
) -> None:
    """A client in a region without nodes: by name "a-far" comes first, by measured
    round trip (through the relays) "b-near" does, and calls go there."""
    far, near = two_regions
    for node in far:
        relays.add(addr(node), DELAY_MS, group="ranked")
    for node in near:
        relays.add(addr(node), NEAR_DELAY_MS, group="ranked")
    seeds = [addr(n) for n in far + near]
    with Client(seeds, region="elsewhere", typed=True, routes=relays.routes("ranked")) as client:

        def requests(region: Region) -> int:
            stats = client.stats()  # topology refreshes count too
            return sum(stats[addr(n)].requests for n in region)

        def calls_go_near() -> bool:
            far_before, near_before = requests(far), requests(near)
            client.get("ranked")
            return requests(far) == far_before and requests(near) > near_before

        def measured() -> bool:  # by the background probes, one node after another
            client.get("ranked")  # the first call starts them
            return all(s.latency_ms is not None for s in client.stats().values())

        poll(measured, 10, "every node's round trip measured")
        poll(calls_go_near, 10, "calls to go to the nearer region")
        far_requests = requests(far)
        for i in range(20):
            client.get(f"ranked-{i}")
        assert requests(far) == far_requests
        stats = client.stats()
    for node in far:
        far_ms = stats[addr(node)].latency_ms
        assert far_ms is not None and RTT_LOW_MS <= far_ms <= RTT_HIGH_MS
    for node in near:
        near_ms = stats[addr(node)].latency_ms
        assert near_ms is not None and 2 * NEAR_DELAY_MS - 1 <= near_ms <= RTT_HIGH_MS
