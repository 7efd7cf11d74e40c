"""Metrics: plain counters bumped on the hot path, turned into Prometheus text at scrape time.

Theory of operation. The hot path never touches a prometheus_client object (each of
those takes a lock and does float arithmetic per observation). It bumps plain ints:

- `CommandLatency` keeps, per command, one list of ints: a count per latency bucket
  (the last one +Inf) followed by the sum of all observed nanoseconds. Recording is
  one clock read, a dict lookup, a `bisect` over the precomputed bucket bounds (skipped
  for the first bucket, where most commands land) and two list-item increments; the
  RESP loop does it inline (server/resp.py), about 0.15 us a command. The call count
  is the sum of the buckets.
- The node's `NodeStats`, the store's hit/miss/eviction/expiration counters and the
  HTTP status counters here are plain attributes as well.

At scrape time `NodeCollector` (a prometheus_client custom collector) reads all of
them and builds metric families; cumulative buckets, sums in seconds and gauges are
computed then. The event loop runs both the hot path and the scrape, so a scrape sees
one consistent moment without any locking.

Command names are bounded: RESP commands are keyed by the name in the command table
(a client's `gEt` counts as `get`), an unknown command counts as `unknown`, and at
most `MAX_SPELLINGS` raw spellings are remembered, so a client sending random command
names cannot grow memory or label cardinality.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Container, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from geocache import __version__

if TYPE_CHECKING:
    from geocache.cluster.geo import Stream
    from geocache.server.node import Node

# Latency bucket upper bounds in seconds, 10 us to 1 s (the range) in 1-2.5-5
# steps: a cached GET takes a few microseconds in-process, a large value or a slow
# scrape takes milliseconds, and anything past a second is an incident, not a bucket.
LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005,
    0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0,
)  # fmt: skip
LATENCY_BOUNDS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in LATENCY_BOUNDS_S)
# Layout of one command's list: a count per bound, one for +Inf, then the sum in ns.
INF_INDEX = len(LATENCY_BOUNDS_NS)
SUM_INDEX = INF_INDEX + 1
SLOT_LEN = SUM_INDEX + 1
# Raw spellings of command names remembered for the fast lookup; past this, odd
# spellings still count (under their table name) but through the slower path.
MAX_SPELLINGS = 1024
UNKNOWN = "unknown"
# Set to "off" to run RESP without per-command timing (to measure its cost).
LATENCY_ENV = "GEOCACHE_COMMAND_LATENCY"


def new_slot() -> list[int]:
    return [0] * SLOT_LEN


class CommandLatency:
    """Per-command latency histograms for one interface (RESP or HTTP), as plain ints."""

    __slots__ = ("_known", "by_name", "by_raw")

    def __init__(self, known: Container[bytes] = ()) -> None:
        self._known = known
        # name -> slot; what the collector reads.
        self.by_name: dict[str, list[int]] = {}
        # raw command bytes -> the same slot objects; what the hot path reads.
        self.by_raw: dict[bytes, list[int]] = {}

    def slot_for(self, raw: bytes) -> list[int]:
        """The slot a raw command name counts in (the hot path's miss path)."""
        lowered = raw.lower()
        name = lowered.decode("ascii", "replace") if lowered in self._known else UNKNOWN
        slot = self.slot(name)
        if name != UNKNOWN and len(self.by_raw) < MAX_SPELLINGS:
            self.by_raw[raw] = slot
        return slot

    def slot(self, name: str) -> list[int]:
        """The slot of a command by its metric name, created on first use."""
        slot = self.by_name.get(name)
        if slot is None:
            slot = self.by_name[name] = new_slot()
        return slot

    def record(self, name: str, elapsed_ns: int) -> None:
        """Count one call of `name` that took `elapsed_ns` (for paths less hot than RESP)."""
        slot = self.by_name.get(name) or self.slot(name)
        slot[bisect_left(LATENCY_BOUNDS_NS, elapsed_ns)] += 1
        slot[SUM_INDEX] += elapsed_ns

    def reset(self) -> None:
        """Zero every count in place (the hot path holds references to the slots)."""
        for slot in self.by_name.values():
            slot[:] = [0] * SLOT_LEN

    def calls(self, name: str) -> int:
        slot = self.by_name.get(name)
        return sum(slot[:-1]) if slot is not None else 0


def percentile_s(slot: list[int], q: float) -> float:
    """The upper bound of the bucket holding quantile `q` (0 < q <= 1); 0.0 if empty.

    Bucket resolution only (the next bound up): good for INFO and dashboards, and what
    Prometheus's histogram_quantile would interpolate from the same buckets anyway.
    """
    total = sum(slot[:-1])
    if not total:
        return 0.0
    rank = q * total
    seen = 0
    for i, count in enumerate(slot[:INF_INDEX]):
        seen += count
        if seen >= rank:
            return LATENCY_BOUNDS_S[i]
    return float("inf")


class Metrics:
    """What the node records for /metrics and INFO besides its NodeStats and store counters."""

    __slots__ = ("http", "http_statuses", "resp", "resp_timed")

    def __init__(self, commands: Container[bytes], resp_timed: bool | None = None) -> None:
        self.resp = CommandLatency(commands)
        self.http = CommandLatency()
        self.http_statuses: dict[int, int] = {}
        if resp_timed is None:
            resp_timed = os.environ.get(LATENCY_ENV, "on").strip().lower() != "off"
        # False only for measuring the cost of timing: RESP then records nothing.
        self.resp_timed = resp_timed

    def count_status(self, status: int) -> None:
        self.http_statuses[status] = self.http_statuses.get(status, 0) + 1

    def reset(self) -> None:
        self.resp.reset()
        self.http.reset()
        self.http_statuses.clear()


# -- the exporter ----------------------------------------------------------------------


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
        yield _counter(
            "geocache_hints_dropped", "Hints dropped (overflow or age)", status["hints_dropped"]
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
        yield from _regions(cluster.geo.status())
        yield _lag_histogram(cluster.geo.streams)

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
            "RESP connections refused at max_clients",
            stats.rejected_connections,
        )
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


def _regions(streams: dict[str, dict[str, float | int]]) -> Iterator[Metric]:
    """This node's stream to each other region (cluster/geo.py)."""
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
    from geocache.origin.readthrough import ReadThrough  # here: it imports this module

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
