"""INFO's sections from a real (not started) node on a ManualClock, and their selection."""

from __future__ import annotations

import pytest

from geocache.clock import ManualClock
from geocache.commands.context import Session
from geocache.commands.server import cmd_info
from geocache.config import NodeConfig
from geocache.protocol.types import Verbatim
from geocache.server.info import SECTIONS, human_bytes, info_sections
from geocache.server.node import Node

US = 1_000

# Sections of geocache's own, after Redis's: `geocache` last.
OURS = ["regions", "origin", "geocache"]
REDIS_ORDER = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "commandstats",
    "latencystats",
    "cluster",
    "keyspace",
]


@pytest.fixture
def node() -> Node:
    return Node(NodeConfig(port=0, http_port=0, region="eu-west"), clock=ManualClock())


def info(node: Node, *sections: str) -> dict[str, dict[str, str]]:
    """Run INFO as a client would and parse its text: `# Name` headers, `k:v` lines."""
    reply = cmd_info(Session(node, 1), [b"INFO", *(s.encode() for s in sections)])
    assert isinstance(reply, Verbatim)
    parsed: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in reply.split("\r\n"):
        if line.startswith("# "):
            current = parsed.setdefault(line[2:].lower(), {})
        elif line:
            field, _, value = line.partition(":")
            current[field] = value
    return parsed


def test_sections_follow_redis_order_then_geocache(node: Node) -> None:
    assert list(info_sections(node)) == [*REDIS_ORDER, *OURS]
    assert list(SECTIONS) == [*REDIS_ORDER, *OURS]


def test_keyspace_counts_keys_and_keys_with_a_ttl(node: Node) -> None:
    assert info_sections(node)["keyspace"] == {}
    now = node.clock.wall_ms()
    node.store.set(b"a", b"1")
    node.store.set(b"b", b"2", now + 10_000)
    node.store.set(b"c", b"3", now + 20_000)
    assert info_sections(node)["keyspace"] == {"db0": "keys=3,expires=2,avg_ttl=0"}
    node.store.set(b"b", b"2")  # PERSIST-like rewrite drops the TTL
    assert info_sections(node)["keyspace"]["db0"].startswith("keys=3,expires=1,")


def test_stats_read_the_store_and_node_counters(node: Node) -> None:
    node.store.set(b"k", b"v")
    node.store.get(b"k")
    node.store.get(b"nope")
    node.stats.commands_processed = 42
    stats = info_sections(node)["stats"]
    assert stats["keyspace_hits"] == 1 and stats["keyspace_misses"] == 1
    assert stats["total_commands_processed"] == 42
    assert info_sections(node)["memory"]["used_memory"] == node.store.used_bytes


def test_commandstats_and_latencystats_come_from_the_histograms(node: Node) -> None:
    for _ in range(3):
        node.metrics.resp.record("set", 4 * US)
    node.metrics.resp.record("get", 30 * US)
    sections = info_sections(node)
    assert sections["commandstats"] == {
        "cmdstat_get": "calls=1,usec=30,usec_per_call=30.00,rejected_calls=0,failed_calls=0",
        "cmdstat_set": "calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0",
    }
    assert sections["latencystats"] == {
        "latency_percentiles_usec_get": "p50=50.000,p99=50.000,p99.9=50.000",
        "latency_percentiles_usec_set": "p50=10.000,p99=10.000,p99.9=10.000",
    }


def test_geocache_section_names_node_and_region(node: Node) -> None:
    section = info_sections(node)["geocache"]
    assert section["node_id"] == node.node_id and section["region"] == "eu-west"


def test_info_without_arguments_gives_the_default_sections(node: Node) -> None:
    sections = info(node)
    for name in ("server", "clients", "memory", "stats", "keyspace"):
        assert name in sections, sorted(sections)
    assert "commandstats" not in sections and "geocache" not in sections
    assert set(info(node, "default")) == set(sections)


@pytest.mark.parametrize("word", ["all", "everything", "ALL"])
def test_info_all_and_everything_give_every_section(node: Node, word: str) -> None:
    node.metrics.resp.record("get", US)
    sections = info(node, word)
    assert set(sections) == {*REDIS_ORDER, *OURS}
    assert "cmdstat_get" in sections["commandstats"]


def test_info_with_several_section_names(node: Node) -> None:
    sections = info(node, "keyspace", "GEOCACHE", "server", "nosuchsection")
    assert list(sections) == ["server", "keyspace", "geocache"]


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (1023, "1023B"), (1024, "1.00K"), (1536, "1.50K"), (5 << 20, "5.00M"),
     (1 << 30, "1.00G")],
)  # fmt: skip
def test_human_bytes_as_redis(n: int, text: str) -> None:
    assert human_bytes(n) == text
