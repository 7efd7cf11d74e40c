"""Metrics without sockets: the hot-path histograms and the scrape-time exporter."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from geocache.clock import ManualClock
from geocache.commands.table import build_table
from geocache.config import NodeConfig
from geocache.observability.metrics import (
    INF_INDEX,
    LATENCY_BOUNDS_NS,
    LATENCY_BOUNDS_S,
    MAX_SPELLINGS,
    UNKNOWN,
    CommandLatency,
    Metrics,
    percentile_s,
)
from geocache.server.node import Node
from geocache.server.prometheus import NodeCollector

US = 1_000
SECOND = 1_000_000_000


def record_raw(latency: CommandLatency, raw: bytes, elapsed_ns: int) -> None:
    """What RespConnection._run does per command."""
    slot = latency.by_raw.get(raw) or latency.slot_for(raw)
    slot[bisect_left(LATENCY_BOUNDS_NS, elapsed_ns)] += 1
    slot[-1] += elapsed_ns


def test_bounds_span_10_us_to_1_s_increasing() -> None:
    assert LATENCY_BOUNDS_S[0] == 0.00001 and LATENCY_BOUNDS_S[-1] == 1.0
    assert LATENCY_BOUNDS_NS[0] == 10 * US and LATENCY_BOUNDS_NS[-1] == SECOND
    assert list(LATENCY_BOUNDS_NS) == sorted(set(LATENCY_BOUNDS_NS))


def test_bucket_edges_are_inclusive_upper_bounds() -> None:
    latency = CommandLatency()
    latency.record("get", 10 * US)  # exactly le=1e-05
    latency.record("get", 10 * US + 1)  # just over: le=2.5e-05
    latency.record("get", SECOND)  # le=1.0
    latency.record("get", SECOND + 1)  # +Inf
    slot = latency.by_name["get"]
    assert slot[0] == 1 and slot[1] == 1
    assert slot[INF_INDEX - 1] == 1 and slot[INF_INDEX] == 1
    assert slot[-1] == 10 * US + 10 * US + 1 + SECOND + SECOND + 1
    assert latency.calls("get") == 4 and latency.calls("set") == 0


def test_spellings_share_the_table_name_and_unknown_is_one_slot() -> None:
    latency = CommandLatency(build_table())
    for raw in (b"get", b"GET", b"gEt"):
        record_raw(latency, raw, 5 * US)
    for i in range(5):
        record_raw(latency, b"nosuch%d" % i, 5 * US)
    assert latency.calls("get") == 3
    assert latency.calls(UNKNOWN) == 5
    assert set(latency.by_name) == {"get", UNKNOWN}
    # Unknown names are not remembered as spellings: garbage cannot grow the dict.
    assert set(latency.by_raw) == {b"get", b"GET", b"gEt"}


def test_spellings_remembered_are_bounded() -> None:
    latency = CommandLatency(build_table())
    name = "incrbyfloat"  # 11 letters: 2048 spellings by letter case
    spellings = [
        "".join(c.upper() if (i >> n) & 1 else c for n, c in enumerate(name)).encode()
        for i in range(MAX_SPELLINGS + 100)
    ]
    for raw in spellings:
        record_raw(latency, raw, US)
    assert len(latency.by_raw) == MAX_SPELLINGS
    assert latency.calls("incrbyfloat") == MAX_SPELLINGS + 100


def test_reset_zeroes_in_place_so_cached_slots_keep_counting() -> None:
    latency = CommandLatency(build_table())
    record_raw(latency, b"set", 3 * US)
    cached = latency.by_raw[b"set"]
    latency.reset()
    assert latency.calls("set") == 0 and cached[-1] == 0
    record_raw(latency, b"set", 3 * US)
    assert latency.calls("set") == 1


def test_percentile_is_the_bucket_upper_bound() -> None:
    latency = CommandLatency()
    assert percentile_s(latency.slot("get"), 0.99) == 0.0
    for _ in range(98):
        latency.record("get", 5 * US)
    latency.record("get", 200 * US)
    latency.record("get", 2 * SECOND)
    slot = latency.by_name["get"]
    assert percentile_s(slot, 0.5) == 0.00001
    assert percentile_s(slot, 0.99) == 0.00025
    assert percentile_s(slot, 1.0) == float("inf")


def scrape(node: Node) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """name -> [(sample name, labels, value)] from the exporter's text, as Prometheus parses it."""
    registry = CollectorRegistry()
    registry.register(NodeCollector(node, lambda: 7))
    text = generate_latest(registry).decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def new_node() -> Node:
    return Node(NodeConfig(port=0, http_port=0, region="eu"), clock=ManualClock())


@given(st.lists(st.integers(min_value=0, max_value=3 * SECOND), max_size=50))
def test_exported_histogram_is_cumulative_and_adds_up(durations_ns: list[int]) -> None:
    node = new_node()
    for ns in durations_ns:
        node.metrics.resp.record("get", ns)
    families = scrape(node)
    samples = families["geocache_command_duration_seconds"]
    if not durations_ns:
        assert samples == []
        return
    buckets = [v for name, labels, v in samples if name.endswith("_bucket")]
    assert buckets == sorted(buckets)
    assert len(buckets) == len(LATENCY_BOUNDS_S) + 1
    by_name = {name: v for name, labels, v in samples if not name.endswith("_bucket")}
    count = by_name["geocache_command_duration_seconds_count"]
    assert count == buckets[-1] == len(durations_ns)
    assert abs(by_name["geocache_command_duration_seconds_sum"] - sum(durations_ns) / 1e9) < 1e-6
    for bound, cumulative in zip(LATENCY_BOUNDS_NS, buckets, strict=False):
        assert cumulative == sum(1 for ns in durations_ns if ns <= bound)


def test_exporter_reads_counters_at_scrape_time() -> None:
    node = new_node()
    node.store.set(b"a", b"1")
    node.store.get(b"a")
    node.store.get(b"missing")
    node.metrics.resp.record("get", 4 * US)
    node.metrics.http.record("put_key", 40 * US)
    node.metrics.count_status(201)
    node.stats.connections_received = 3
    families = scrape(node)

    def value(name: str, **labels: str) -> float:
        found = [v for sample, lab, v in families[name] if lab == labels]
        assert len(found) == 1, (name, labels, families[name])
        return found[0]

    assert value("geocache_keyspace_hits") == 1
    assert value("geocache_keyspace_misses") == 1
    assert value("geocache_keys") == 1
    assert value("geocache_memory_used_bytes") == node.store.used_bytes > 0
    assert value("geocache_connections_received") == 3
    assert value("geocache_http_connections") == 7
    assert value("geocache_commands", interface="resp", command="get") == 1
    assert value("geocache_commands", interface="http", command="put_key") == 1
    assert value("geocache_http_responses", code="201") == 1
    info = families["geocache_node_info"][0]
    assert info[1]["region"] == "eu" and info[1]["node_id"] == node.node_id

    node.store.get(b"a")
    assert scrape(node)["geocache_keyspace_hits"][0][2] == 2


def test_metrics_reset_clears_everything() -> None:
    metrics = Metrics(build_table(), resp_timed=True)
    metrics.resp.record("get", US)
    metrics.http.record("get_key", US)
    metrics.count_status(200)
    metrics.reset()
    assert metrics.resp.calls("get") == 0 and metrics.http.calls("get_key") == 0
    assert metrics.http_statuses == {}


def test_latency_switch_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOCACHE_COMMAND_LATENCY", "off")
    assert Metrics(build_table()).resp_timed is False
    monkeypatch.setenv("GEOCACHE_COMMAND_LATENCY", "on")
    assert Metrics(build_table()).resp_timed is True
