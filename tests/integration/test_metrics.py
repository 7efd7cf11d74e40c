"""/metrics and INFO of a real node: Prometheus's parser reads the text, and counters
and histograms move by exactly what redis-py and HTTP requests did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from integration.test_http import HttpNode, key_path, start_http_node

pytestmark = pytest.mark.geocache_only

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
N = 25
RESP_LATENCY = "geocache_command_duration_seconds"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    started = start_http_node(tmp_path_factory.mktemp("metrics"))
    yield started
    started.server.stop()


@pytest.fixture
def r(node: HttpNode) -> Iterator[redis.Redis]:
    client = node.redis()
    yield client
    client.close()


def scrape(node: HttpNode) -> Samples:
    response = node.request("GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def buckets(samples: Samples, interface: str, command: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of one command's latency histogram, by le."""
    found = []
    for (name, labels), count in samples.items():
        label = dict(labels)
        if (
            name == RESP_LATENCY + "_bucket"
            and label["interface"] == interface
            and label["command"] == command
        ):
            found.append((float(label["le"]), count))
    return sorted(found)


def test_metrics_text_parses_and_has_the_families(node: HttpNode) -> None:
    samples = scrape(node)
    names = {name for name, _ in samples}
    for expected in (
        "geocache_node_info",
        "geocache_keyspace_hits_total",
        "geocache_keyspace_misses_total",
        "geocache_evicted_keys_total",
        "geocache_expired_keys_total",
        "geocache_keys",
        "geocache_memory_used_bytes",
        "geocache_connected_clients",
        "geocache_connections_received_total",
        "process_resident_memory_bytes",
    ):
        assert expected in names, expected


def test_resp_commands_move_counters_and_histograms(node: HttpNode, r: redis.Redis) -> None:
    before = scrape(node)
    for i in range(N):
        r.set(f"m{i}", "v")
    for i in range(N):
        r.get(f"m{i}")
    r.get("metrics-miss")
    r.execute_command("gEt", "m0")  # any spelling counts as `get`
    after = scrape(node)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("geocache_commands_total", interface="resp", command="set") == N
    assert delta("geocache_commands_total", interface="resp", command="get") == N + 2
    assert delta(RESP_LATENCY + "_count", interface="resp", command="set") == N
    assert delta(RESP_LATENCY + "_sum", interface="resp", command="set") > 0
    assert delta("geocache_keyspace_hits_total") == N + 1
    assert delta("geocache_keyspace_misses_total") == 1
    assert value(after, "geocache_keys") >= N
    histogram = buckets(after, "resp", "set")
    assert histogram[0][0] == 0.00001 and histogram[-1][0] == float("inf")
    counts = [count for _, count in histogram]
    assert counts == sorted(counts)
    assert counts[-1] == value(after, RESP_LATENCY + "_count", interface="resp", command="set")
    assert value(after, "geocache_connected_clients") >= 1


def test_unknown_commands_count_under_one_label(node: HttpNode, r: redis.Redis) -> None:
    before = scrape(node)
    for i in range(3):
        with pytest.raises(redis.ResponseError):
            r.execute_command(f"NOSUCH{i}")
    after = scrape(node)
    commands = {
        dict(labels)["command"] for name, labels in after if name == "geocache_commands_total"
    }
    assert not any(c.startswith("nosuch") for c in commands)
    unknown = {"interface": "resp", "command": "unknown"}
    assert (
        value(after, "geocache_commands_total", **unknown)
        - value(before, "geocache_commands_total", **unknown)
        == 3
    )


def test_http_requests_move_their_histograms(node: HttpNode) -> None:
    before = scrape(node)
    for i in range(N):
        node.request("PUT", key_path(b"h%d" % i), b"v")
        node.request("GET", key_path(b"h%d" % i))
    node.request("GET", key_path(b"h-missing"))
    after = scrape(node)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(RESP_LATENCY + "_count", interface="http", command="put_key") == N
    assert delta(RESP_LATENCY + "_count", interface="http", command="get_key") == N + 1
    assert delta("geocache_http_responses_total", code="201") == N
    assert delta("geocache_http_responses_total", code="404") == 1
    # The scrape before this one counted itself once it had answered.
    assert delta(RESP_LATENCY + "_count", interface="http", command="metrics") == 1


def info(r: redis.Redis, *sections: str) -> dict[str, object]:
    result: dict[str, object] = r.info(*sections) if sections else r.info()
    return result


def test_info_sections_over_resp(node: HttpNode, r: redis.Redis) -> None:
    r.set("i1", "v", ex=100)
    r.set("i2", "v")
    default = info(r)
    assert default["redis_version"] and default["connected_clients"]
    assert "cmdstat_set" not in default
    everything = info(r, "everything")
    assert everything["region"] == "local" and "cmdstat_set" in everything
    cmdstat = everything["cmdstat_set"]
    assert isinstance(cmdstat, dict) and cmdstat["calls"] >= 2
    assert "latency_percentiles_usec_set" in everything
    assert set(info(r, "all")) >= set(default)
    keyspace = info(r, "keyspace")["db0"]
    assert isinstance(keyspace, dict) and keyspace["expires"] >= 1 and keyspace["keys"] >= 2
    several = info(r, "server", "geocache")
    assert "redis_version" in several and "node_id" in several and "used_memory" not in several


def test_config_resetstat_zeroes_commandstats(node: HttpNode, r: redis.Redis) -> None:
    r.set("reset-me", "v")
    r.config_resetstat()
    r.get("reset-me")
    stats = info(r, "commandstats")
    assert "cmdstat_set" not in stats
    get = stats["cmdstat_get"]
    assert isinstance(get, dict) and get["calls"] == 1
