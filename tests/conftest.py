"""Shared fixtures: real redis-server and geocache processes on 127.0.0.1.

| fixture | scope | what |
|---|---|---|
| `redis_server` | session | a reference redis-server (no persistence) |
| `node` | module | the node under test, default flags |
| `node_factory` | function | `node_factory(**flags)` starts a node; all stopped at teardown |
| `redis_cli` | session | path of the redis-cli binary |
| `target_name` | session | "geocache" or "redis" (`GEOCACHE_TEST_TARGET`) |

With `GEOCACHE_TEST_TARGET=redis`, every node is another redis-server, so the suite can
be validated against Redis itself; tests marked `geocache_only` are then skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `support` lives next to this file; pytest's default import mode puts this directory on
# sys.path, and this line keeps that true under --import-mode=importlib too.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from support import NodeFactory, ServerProcess, require_tool, start_node, start_redis, target


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "geocache_only: checks geocache behaviour that redis-server lacks or does differently",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if target() != "redis":
        return
    skip = pytest.mark.skip(reason="geocache_only: GEOCACHE_TEST_TARGET=redis")
    for item in items:
        if item.get_closest_marker("geocache_only") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target_name() -> str:
    return target()


@pytest.fixture(scope="session")
def redis_cli() -> str:
    return require_tool("redis-cli")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_redis(tmp_path_factory.mktemp("redis-reference"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_node(tmp_path_factory.mktemp("node"))
    yield server
    server.stop()


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    factory = NodeFactory(tmp_path)
    yield factory
    factory.stop_all()
