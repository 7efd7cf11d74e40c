"""Fixtures shared by the client tests: one standalone node per module, and a Client on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from client.regions import addr
from geocache import Client
from support.procs import ServerProcess, start_geocache


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_geocache(tmp_path_factory.mktemp("client-solo"), ["--log-level", "warning"])
    yield server
    server.stop()


@pytest.fixture
def client(solo: ServerProcess) -> Iterator[Client]:
    with Client([addr(solo)]) as c:
        yield c
