"""Without `region=`, the client PINGs its seeds and takes the nearest seed's region.

Two regions of one node each; the client reaches `far` through a delay relay (40 ms one
way). The far node's address sorts first, which is the seed the client used to take
whatever the distance, so these tests fail on that rule: whichever order the seeds are
given in, the client must say `near`, and its calls must go there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from client.regions import addr, cluster_args, start_at, wait_alive
from geocache import AsyncClient, Client
from geocache.client.core import Core
from geocache.relay import RelaySet
from support.procs import ServerProcess, free_port

pytestmark = pytest.mark.timeout(60)
DELAY_MS = 40

World = tuple[dict[str, ServerProcess], dict[str, str]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("region-choice")
    # The lower address (as text) goes to `far`: the old rule would have picked it.
    far_port, near_port = sorted((free_port(), free_port()), key=lambda p: f"127.0.0.1:{p}")
    nodes: dict[str, ServerProcess] = {}
    with RelaySet() as relays:
        try:
            nodes["far"] = start_at(far_port, tmp, cluster_args("far", None, region="far"))
            seed = addr(nodes["far"])
            nodes["near"] = start_at(near_port, tmp, cluster_args("near", seed, region="near"))
            wait_alive(list(nodes.values()), 2)
            relays.add(addr(nodes["far"]), DELAY_MS, group="client")
            yield nodes, relays.routes("client")
        finally:
            for node in nodes.values():
                node.stop()


@pytest.mark.parametrize("order", ["far first", "near first"])
def test_client_takes_the_nearest_seeds_region(world: World, order: str) -> None:
    nodes, routes = world
    seeds = [addr(nodes["far"]), addr(nodes["near"])]
    if order == "near first":
        seeds.reverse()
    with Client(seeds, routes=routes) as client:
        assert client.region == "near"
        client.set("choice", "x")
        near = client.stats()[addr(nodes["near"])]
        assert near.requests >= 1 and near.latency_ms is not None
        far = client.stats()[addr(nodes["far"])]
        assert far.latency_ms is not None and far.latency_ms > near.latency_ms


async def test_async_client_takes_the_nearest_seeds_region(world: World) -> None:
    nodes, routes = world
    seeds = [addr(nodes["far"]), addr(nodes["near"])]
    async with AsyncClient(seeds, routes=routes) as client:
        assert client.region == ""  # not known before it has connected
        await client.connect()
        assert client.region == "near"


def test_a_given_region_is_kept(world: World) -> None:
    nodes, routes = world
    with Client([addr(nodes["near"])], region="far", routes=routes) as client:
        assert client.region == "far"


def reply(*nodes: tuple[str, str, str]) -> list[dict[bytes, object]]:
    return [
        {b"id": i.encode(), b"region": r.encode(), b"addr": a.encode(), b"state": b"alive"}
        for i, r, a in nodes
    ]


def test_core_measures_only_seeds_in_several_regions() -> None:
    core = Core(["h:1", "h:2", "h:9"])
    assert core.seeds_to_measure() == []  # no map yet: nothing to tell regions by
    core.apply_topology(reply(("a", "east", "h:1"), ("b", "west", "h:2")), "h:1", 0.0)
    assert core.home_region == "east"  # the seed that gave the map, until measured
    assert core.seeds_to_measure() == ["h:1", "h:2", "h:9"]
    core.seeds_measured({"h:1": [], "h:2": [], "h:9": []}, 0.5)  # nobody answered
    assert core.home_region == "east" and core.seeds_to_measure() != []  # try again later
    # h:9 is not in the map and h:1 did not answer: neither counts.
    core.seeds_measured({"h:1": [], "h:2": [0.030, 0.002, 0.004], "h:9": [0.0001]}, 1.0)
    assert core.home_region == "west"
    assert core.seeds_to_measure() == []  # chosen once
    one_region = Core(["h:1", "h:2"])
    one_region.apply_topology(reply(("a", "east", "h:1"), ("b", "east", "h:2")), "h:2", 0.0)
    assert one_region.seeds_to_measure() == []
    given = Core(["h:1", "h:2"], region="west")
    given.apply_topology(reply(("a", "east", "h:1"), ("b", "west", "h:2")), "h:1", 0.0)
    assert given.seeds_to_measure() == [] and given.home_region == "west"
