"""Region preference with two regions on loopback (no delay relay: "far" is only a label;
test_locality.py puts a relay in between).

A client in eu sends every call to eu nodes; with every eu node down its calls go to us
at once and find what was written in eu (replicated); when eu returns, they come back
to eu, and eu has what was written in us meanwhile.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.regions import addr, cluster_args, poll, start_at, start_nodes, stop_all, wait_alive
from geocache import Client
from support.procs import ServerProcess

pytestmark = pytest.mark.timeout(30)

Regions = tuple[list[ServerProcess], list[ServerProcess]]
EU_IDS, US_IDS = ["eu1", "eu2"], ["us1", "us2"]
KEYS = [f"r{i}" for i in range(50)]


@pytest.fixture
def regions(tmp_path: Path) -> Iterator[Regions]:
    eu = start_nodes(tmp_path, EU_IDS, region="eu")
    us: list[ServerProcess] = []
    try:
        us = start_nodes(tmp_path, US_IDS, region="us", seed=addr(eu[0]))
        wait_alive(eu + us, 4)
        yield eu, us
    finally:
        stop_all(eu + us)


def requests(client: Client, nodes: list[ServerProcess]) -> int:
    stats = client.stats()
    return sum(stats[addr(n)].requests for n in nodes if addr(n) in stats)


def test_without_a_region_the_seed_region_is_home(regions: Regions) -> None:
    _, us = regions
    with Client([addr(us[1])], typed=True) as client:
        client.get("x")
        assert client.region == "us"
        assert set(client.owners("x")) == {addr(n) for n in us}


def test_reads_stay_in_region_fall_back_and_come_back(regions: Regions, tmp_path: Path) -> None:
    eu, us = regions
    seeds = [addr(n) for n in us + eu]
    with Client(seeds, region="eu", typed=True, topology_refresh_s=1.0) as client:
        client.set_many({k: k for k in KEYS})
        eu_before, us_before = requests(client, eu), requests(client, us)
        assert client.get_many(KEYS) == {k: k for k in KEYS}
        for k in KEYS:
            assert client.get(k) == k
        assert requests(client, eu) - eu_before == 2 * len(KEYS)
        assert requests(client, us) == us_before  # nothing crossed regions

        for node in eu:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(5)
        us_before = requests(client, us)
        # What was written in eu had reached us (cross-region replication): no miss.
        assert client.get_many(KEYS) == {k: k for k in KEYS}
        for k in KEYS:
            client.set(k, f"us-{k}")  # written where it can be
            assert client.get(k) == f"us-{k}"
        assert requests(client, us) - us_before == 3 * len(KEYS)
        assert all(client.stats()[addr(n)].down for n in eu)

        for i, node in enumerate(eu):
            eu[i] = start_at(node.port, tmp_path, cluster_args(EU_IDS[i], addr(us[0]), "eu"))

        def back_in_eu() -> bool:
            eu_before, us_before = requests(client, eu), requests(client, us)
            client.get(KEYS[0])
            return requests(client, eu) > eu_before and requests(client, us) == us_before

        poll(back_in_eu, 15, "reads back in eu")
        poll(
            lambda: client.get_many(KEYS) == {k: f"us-{k}" for k in KEYS},
            15,
            "eu caught up with the writes made in us",
        )
