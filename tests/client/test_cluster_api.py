"""The API on a region of three node processes (two copies of each key): getver and cas
go to the key's primary, and a version read anywhere is the one CAS compares with;
clear() deletes the namespace's keys on every node, and the copies with them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from client.regions import addr, start_nodes, stop_all, wait_alive
from geocache import AsyncClient, Client
from support.procs import ServerProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    nodes = start_nodes(tmp_path_factory.mktemp("cluster-api"), ["c1", "c2", "c3"])
    try:
        wait_alive(nodes, 3)
        yield nodes
    finally:
        stop_all(nodes)


def test_cas_and_getver_across_the_region(region: list[ServerProcess]) -> None:
    with Client([addr(n) for n in region], typed=True) as client:
        keys = [f"cas{i}" for i in range(20)]  # primaries on every node
        versions = {k: client.cas(k, 0, "v1") for k in keys}
        assert all(v is not None for v in versions.values())
        for key in keys:
            for node in region:  # a node that does not own the key forwards
                with Client([addr(node)], region="local", typed=True) as one:
                    assert one.getver(key) == versions[key]
            assert client.cas(key, versions[key] + 1, "no") is None
            assert client.cas(key, versions[key], "v2") is not None
            assert client.get(key) == "v2"


def test_clear_reaches_every_node(region: list[ServerProcess]) -> None:
    with Client([addr(region[0])], key_prefix="wipe:") as client:
        client.set_many({f"k{i}": i for i in range(60)})
        with Client([addr(region[0])], key_prefix="keep:") as other:
            other.set("k", "kept")
            assert client.clear() == 60
            assert client.get_many([f"k{i}" for i in range(60)]) == {}
            assert other.get("k") == b"kept"
    for node in region:  # no copy left anywhere
        with redis.Redis(host=node.host, port=node.port) as r:
            assert list(r.scan_iter(match="wipe:*")) == []


async def test_async_clear_and_cas(region: list[ServerProcess]) -> None:
    async with AsyncClient([addr(region[1])], key_prefix="awipe:") as client:
        await client.set_many({f"k{i}": i for i in range(30)})
        version = await client.getver("k0")
        assert version is not None and await client.cas("k0", version, 5) is not None
        assert await client.clear() == 30
        assert await client.get_many([f"k{i}" for i in range(30)]) == {}
