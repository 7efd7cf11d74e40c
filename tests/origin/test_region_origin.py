"""A 3-node region in front of one redis-server: a key is loaded once, by its primary,
however many clients miss it on however many nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess, start_redis
from support.cluster import client, poll, running_region

from .burst import burst

CLIENTS_PER_NODE = 20
DEADLINE_S = 30.0


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_redis(tmp_path / "origin")
    yield server
    server.stop()


@pytest.fixture
def region(tmp_path: Path, origin: ServerProcess) -> Iterator[list[ServerProcess]]:
    with running_region(tmp_path, extra=["--origin", origin.url]) as nodes:
        for node in nodes:  # warmed up: reads run at the owners, not elsewhere
            poll(lambda n=node: _info(n, "geocache")["cluster_ready"] == 1, DEADLINE_S, "ready")
        yield nodes


def test_concurrent_misses_through_every_node_load_once(
    origin: ServerProcess, region: list[ServerProcess]
) -> None:
    with client(origin) as o:
        o.set("shared", "from-origin")
        o.config_resetstat()
    addresses = [node.address for node in region for _ in range(CLIENTS_PER_NODE)]
    replies = burst(addresses, [b"GET", b"shared"])
    assert replies == [b"$11\r\nfrom-origin\r\n"] * len(addresses)
    with client(origin) as o:
        assert o.info("commandstats")["cmdstat_get"]["calls"] == 1
    loads = [_info(node, "origin")["origin_loads"] for node in region]
    assert sorted(loads) == [0, 0, 1]
    with client(region[0]) as c:
        primary = c.execute_command("GC.OWNERS", "shared")[0].decode()
    assert loads[int(primary.removeprefix("n")) - 1] == 1  # the primary loaded it
    # Stored through the write path: both owners hold it.
    poll(lambda: sum(_dbsize(n) for n in region) == 2, DEADLINE_S, "both owners to hold it")


def _info(node: ServerProcess, section: str) -> dict[str, object]:
    with client(node) as c:
        info: dict[str, object] = c.info(section)
        return info


def _dbsize(node: ServerProcess) -> int:
    with client(node) as c:
        size: int = c.dbsize()
        return size
