"""The Prometheus exporter: a custom collector that reads a node's counters when scraped.

The hot path keeps plain ints (observability/metrics.py); this reads them, with the
store's, the cluster's and the origin's, and builds metric families at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from geocache._version import __version__
from geocache.observability.metrics import INF_INDEX, LATENCY_BOUNDS_S, SUM_INDEX, CommandLatency
from geocache.origin.readthrough import ReadThrough

if TYPE_CHECKING:
    from geocache.cluster.streams import Stream
    from geocache.server.node import Node


def _histogram(
    name: str, doc: str, latencies: dict[str, CommandLatency]
) -> tuple[CounterMetricFamily, HistogramMetricFamily]:
    calls = CounterMetricFamily(
        "geocache_commands",
        "Commands run, by interface and command",
        labels=("interface", "command"),
    )
    hist = HistogramMetricFamily(name, doc, labels=("interface", "command"))
    for interface, latency in latencies.items():
        for command, slot in sorted(latency.by_name.items()):
            buckets: list[tuple[str, float]] = []
            cumulative = 0
            for bound, count in zip(LATENCY_BOUNDS_S, slot, strict=False):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            cumulative += slot[INF_INDEX]
            buckets.append(("+Inf", cumulative))
            labels = (interface, command)
            calls.add_metric(labels, cumulative)
            hist.add_metric(labels, buckets, slot[-1] / 1e9)
    return calls, hist


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class NodeCollector:
    """A prometheus_client collector that reads a node's counters when scraped."""

    def __init__(self, node: Node, http_connections: Callable[[], int] = lambda: 0) -> None:
        self._node = node
        self._http_connections = http_connections

    def describe(self) -> list[Metric]:
        # Nothing up front: the families depend on which commands have run.
        return []

    def collect(self) -> Iterator[Metric]:
        node = self._node
        yield InfoMetricFamily(
            "geocache_node",
            "This node",
            value={"version": __version__, "node_id": node.node_id, "region": node.config.region},
        )
        yield _gauge("geocache_uptime_seconds", "Seconds since the node started", node.uptime_s())
        yield from _histogram(
            "geocache_command_duration_seconds",
            "Time to parse, run and encode one command (RESP) or serve one request (HTTP)",
            {"resp": node.metrics.resp, "http": node.metrics.http},
        )
        yield from self._store()
        yield from self._connections()
        yield from self._cluster()
        yield from _origin(node)
        statuses = CounterMetricFamily(
            "geocache_http_responses", "HTTP responses by status code", labels=("code",)
        )
        for code, count in sorted(node.metrics.http_statuses.items()):
            statuses.add_metric((str(code),), count)
        yield statuses

    def _store(self) -> Iterator[Metric]:
        store, config = self._node.store, self._node.config
        yield _counter("geocache_keyspace_hits", "Reads that found a live key", store.hits)
        yield _counter("geocache_keyspace_misses", "Reads that found no live key", store.misses)
        yield _counter(
            "geocache_evicted_keys", "Keys evicted (LRU) to stay in limits", store.evictions
        )
        yield _counter(
            "geocache_expired_keys", "Keys removed because their TTL passed", store.expirations
        )
        yield _gauge(
            "geocache_keys", "Keys held (expired but not yet reclaimed included)", len(store)
        )
        yield _gauge("geocache_memory_used_bytes", "Bytes accounted to entries", store.used_bytes)
        yield _gauge("geocache_memory_max_bytes", "max_bytes; 0 means no limit", config.max_bytes)
        yield _gauge(
            "geocache_tombstones", "Deletes remembered for replication", len(store.tombstones)
        )

    def _cluster(self) -> Iterator[Metric]:
        cluster = self._node.cluster
        if cluster is None:
            return
        status = cluster.status()
        members = GaugeMetricFamily(
            "geocache_cluster_members", "Members this node knows, by state", labels=("state",)
        )
        for state in ("alive", "suspect", "dead", "left"):
            members.add_metric((state,), status[f"members_{state}"])
        yield members
        yield _gauge("geocache_hints", "Writes kept for owners that missed them", status["hints"])
        yield _gauge(
            "geocache_hint_bytes", "Bytes held by hints (max_hint_bytes)", status["hint_bytes"]
        )
        yield _counter(
            "geocache_hints_dropped",
            "Hints dropped (over max_hint_bytes, the count per target, or age)",
            status["hints_dropped"],
        )
        yield _counter("geocache_hints_replayed", "Hints delivered late", status["hints_replayed"])
        yield _counter("geocache_forwarded", "Commands forwarded to an owner", status["forwarded"])
        yield _counter(
            "geocache_replicated_writes", "Writes applied by other owners", status["replicated"]
        )
        yield _counter(
            "geocache_replica_failures",
            "Replication batches an owner did not acknowledge",
            status["replica_failures"],
        )
        yield _gauge("geocache_ready", "1 when warmed up and serving", int(status["ready"]))
        repair = CounterMetricFamily(
            "geocache_repair", "Anti-entropy repair work, by kind", labels=("kind",)
        )
        for name, value in sorted(status.items()):
            if name.startswith("repair_"):
                repair.add_metric((name.removeprefix("repair_"),), value)
        yield repair
        warmup = CounterMetricFamily(
            "geocache_warmup", "Warm-up's pull at start, by kind", labels=("kind",)
        )
        for name, value in sorted(status.items()):
            if name.startswith("warmup_"):
                warmup.add_metric((name.removeprefix("warmup_"),), value)
        yield warmup
        yield from _trust(status)
        yield from _regions(cluster.streams.status())
        yield _lag_histogram(cluster.streams.streams)

    def _connections(self) -> Iterator[Metric]:
        node = self._node
        stats = node.stats
        yield _gauge("geocache_connected_clients", "RESP connections open", node.connection_count())
        yield _gauge("geocache_http_connections", "HTTP connections open", self._http_connections())
        yield _counter(
            "geocache_connections_received", "RESP connections accepted", stats.connections_received
        )
        yield _counter(
            "geocache_rejected_connections",
            "Connections refused at max_clients (RESP and HTTP)",
            stats.rejected_connections,
        )
        yield _gauge("geocache_peer_connections", "Peer connections open", node.peer_connections)
        yield _gauge(
            "geocache_client_memory_bytes", "Bytes client connections hold", node.budget.used
        )
        yield _gauge(
            "geocache_client_memory_limit_bytes", "max_client_memory (0: none)", node.budget.limit
        )
        largest = node.largest_client_buffers(1)
        yield _gauge(
            "geocache_largest_client_buffer_bytes",
            "Bytes the client holding the most holds",
            largest[0] if largest else 0,
        )
        refused = CounterMetricFamily(
            "geocache_refused_connections",
            "Connections refused or closed at a limit, by reason",
            labels=("reason",),
        )
        for reason, n in sorted(node.refusals.counts.items()):
            refused.add_metric((reason,), n)
        yield refused
        yield _counter(
            "geocache_net_input_bytes", "Bytes read from RESP clients", stats.net_input_bytes
        )
        yield _counter(
            "geocache_net_output_bytes", "Bytes written to RESP clients", stats.net_output_bytes
        )
        yield _counter(
            "geocache_protocol_errors",
            "RESP protocol errors (connection closed)",
            stats.protocol_errors,
        )
        yield _counter(
            "geocache_output_limit_disconnects",
            "Clients cut off over their output buffer limit",
            stats.output_limit_disconnects,
        )
        yield _counter(
            "geocache_idle_disconnects", "Clients closed for idling", stats.idle_disconnects
        )
        yield _counter("geocache_expire_cycles", "Active expiry cycles run", stats.expire_cycles)
        failures = CounterMetricFamily(
            "geocache_auth_failures",
            "Wrong passwords: AUTH and HELLO AUTH (resp), bearer tokens (http)",
            labels=("interface",),
        )
        failures.add_metric(("resp",), stats.auth_failures)
        failures.add_metric(("http",), stats.http_auth_failures)
        yield failures
        yield _counter(
            "geocache_auth_disconnects",
            "Connections closed after auth_max_failures wrong passwords in a row",
            stats.auth_disconnects,
        )


def _trust(status: dict[str, int]) -> Iterator[Metric]:
    """Peer handshakes, refused versions and clock skew (cluster/trust.py)."""
    handshakes = CounterMetricFamily(
        "geocache_peer_handshakes",
        "Peer handshakes: proven and failed as the dialing side, refused as the answering side",
        labels=("outcome",),
    )
    for outcome in ("proven", "failed", "refused"):
        handshakes.add_metric((outcome,), status[f"peer_handshakes_{outcome}"])
    yield handshakes
    yield _counter(
        "geocache_versions_refused",
        "Received versions refused: out of range or over max_clock_skew_ms ahead",
        status["versions_refused"],
    )
    yield _gauge(
        "geocache_clock_skew_seconds",
        "This node's wall clock less its alive peers' (median; from membership messages)",
        status["clock_skew_ms"] / 1000,
    )
    yield _gauge(
        "geocache_clock_skewed",
        "1 when the wall clock is off from the peers' by more than half max_clock_skew_ms",
        status["clock_skewed"],
    )


def _regions(streams: dict[str, dict[str, float | int]]) -> Iterator[Metric]:
    """This node's stream to each other region (cluster/streams.py)."""
    rtt = GaugeMetricFamily(
        "geocache_region_rtt_seconds", "Measured round trip to a region", labels=("region",)
    )
    queued = GaugeMetricFamily(
        "geocache_region_queued", "Writes waiting to go to a region", labels=("region",)
    )
    resync = GaugeMetricFamily(
        "geocache_region_resync", "1 while a region's stream waits for a resync", labels=("region",)
    )
    writes = CounterMetricFamily(
        "geocache_region_writes",
        "Writes to a region by outcome: sent, acked, coalesced, failures; resyncs run",
        labels=("region", "kind"),
    )
    for region, status in streams.items():
        if status["rtt_ms"] >= 0:
            rtt.add_metric((region,), status["rtt_ms"] / 1000)
        queued.add_metric((region,), status["queued"])
        resync.add_metric((region,), status["resync"])
        for kind in ("sent", "acked", "coalesced", "failures", "resyncs"):
            writes.add_metric((region, kind), status[kind])
    wire = CounterMetricFamily(
        "geocache_region_sent_bytes", "Bytes of write batches sent to a region", labels=("region",)
    )
    for region, status in streams.items():
        wire.add_metric((region,), status["bytes"])
    yield from (rtt, queued, resync, writes, wire)


def _lag_histogram(streams: Mapping[str, Stream]) -> HistogramMetricFamily:
    """Every write's lag to each region (write accepted here to applied there)."""
    hist = HistogramMetricFamily(
        "geocache_region_lag_seconds",
        "Replication lag of writes to a region: accepted here to applied there",
        labels=("region",),
    )
    for region, stream in sorted(streams.items()):
        lags = stream.lag_histogram
        buckets = [
            ("+Inf" if bound == float("inf") else repr(bound / 1000), float(count))
            for bound, count in lags.cumulative()
        ]
        hist.add_metric((region,), buckets, lags.total / 1000)
    return hist


def _origin(node: Node) -> Iterator[Metric]:
    """The command gate (server/resp.py) and the read-through origin (origin/)."""

    gate = node.gate
    yield _gauge(
        "geocache_commands_in_flight", "Client commands whose reply is pending", gate.in_flight
    )
    yield _gauge(
        "geocache_commands_waiting",
        "Connections waiting for a slot (max_concurrent_commands)",
        len(gate.waiting),
    )
    through = node.origin
    if not isinstance(through, ReadThrough):
        return
    counters = through.counters()
    loads = CounterMetricFamily(
        "geocache_origin_loads",
        "Loads from the origin by result (rejected: not tried, the breaker was open)",
        labels=("result",),
    )
    results = ("found", "not_found", "errors", "timeouts", "rejected")
    for result in results:
        loads.add_metric((result.removesuffix("s"),), counters[result])
    yield loads
    yield _load_histogram(through.latency)
    for name, doc in (
        ("stale_served", "Misses answered with a stale value because the origin failed"),
        ("failed_fills", "Misses answered with an error because the origin failed"),
        ("coalesced", "Misses that waited for another's load of the key instead of loading"),
        ("negative_hits", "Misses answered from a remembered 'no such key'"),
        ("refreshes", "Hot keys reloaded before they expired"),
        ("refresh_failures", "Reloads of hot keys that failed (tried again later)"),
    ):
        yield _counter(f"geocache_origin_{name}", doc, counters[name])
    yield _gauge("geocache_origin_loading", "Keys with a load in flight", through.loading)
    breaker = GaugeMetricFamily(
        "geocache_origin_breaker", "1 for the breaker's state", labels=("state",)
    )
    for state in ("closed", "open", "half_open"):
        breaker.add_metric((state,), int(through.breaker.state == state))
    yield breaker
    yield _counter(
        "geocache_origin_breaker_opened", "Times the breaker opened", through.breaker.opened
    )
    yield _gauge(
        "geocache_origin_stale_bytes", "Bytes kept for stale-if-error", through.stale.used_bytes
    )


def _load_histogram(slot: list[int]) -> HistogramMetricFamily:
    hist = HistogramMetricFamily(
        "geocache_origin_load_duration_seconds",
        "Time one load from the origin took, a wait for a load slot included",
    )
    cumulative, buckets = 0, []
    for bound, count in zip(LATENCY_BOUNDS_S, slot, strict=False):
        cumulative += count
        buckets.append((repr(bound), float(cumulative)))
    buckets.append(("+Inf", float(cumulative + slot[INF_INDEX])))
    hist.add_metric((), buckets, slot[SUM_INDEX] / 1e9)
    return hist
