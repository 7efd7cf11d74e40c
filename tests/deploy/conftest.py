"""Fixtures of the deploy tests: a DNS server of our own on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .dns_server import TestDnsServer, Zone


@pytest.fixture
def dns_server() -> Iterator[TestDnsServer]:
    server = TestDnsServer(Zone())
    try:
        yield server
    finally:
        server.stop()
