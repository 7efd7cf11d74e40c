"""INFO's sections, as Redis names and orders them, plus a `geocache` section of our own.

Each section is a function from the node to an ordered `field -> value` dict; INFO
(commands/server.py) picks sections and formats them. Sections Redis has but a cache
without persistence or replicas has little to say in (persistence, replication) carry
the fields tools probe for (`loading:0`, `role:master`), so monitoring written for
Redis reads them unchanged. Everything is read at call time from plain counters;
nothing here is on the hot path.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from geocache.observability.metrics import percentile_s
from geocache.store.keyspace import Store

if TYPE_CHECKING:
    from geocache.server.node import Node

Section = dict[str, object]
# The percentiles Redis's latencystats reports by default (latency-tracking-info-percentiles).
LATENCY_PERCENTILES = (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))


def info_sections(node: Node) -> dict[str, Section]:
    """Every section, in Redis's order; the `geocache` section comes last."""
    return {name: build(node) for name, build in SECTIONS.items()}


def _server(node: Node) -> Section:
    from geocache.server.node import server_facts

    server = server_facts()
    server.update(
        {
            "tcp_port": node.resp_port,
            "uptime_in_seconds": node.uptime_s(),
            "uptime_in_days": node.uptime_s() // 86400,
            "hz": 10,
            "executable": sys.argv[0],
        }
    )
    return server


def _clients(node: Node) -> Section:
    return {
        "connected_clients": node.connection_count(),
        "maxclients": node.config.max_clients,
        "client_connections": node.client_count(),
        "http_connections": node.http_count(),
        "peer_connections": node.peer_connections,
        "max_peer_connections": node.config.max_peer_connections,
        "client_memory": node.budget.used,
        "maxmemory_clients": node.budget.limit,
        "client_largest_buffers": ",".join(map(str, node.largest_client_buffers())),
        "blocked_clients": 0,
        # max_concurrent_commands: commands with a reply pending, connections queued.
        "commands_in_flight": node.gate.in_flight,
        "commands_waiting": len(node.gate.waiting),
    }


def _stores(node: Node) -> list[Store]:
    """Every database made so far (SELECT): 0 is the node's store."""
    return [store for _index, store in node.databases.held()]


def _memory(node: Node) -> Section:
    config = node.config
    used = sum(store.used_bytes for store in _stores(node))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # ru_maxrss is KiB
    return {
        "used_memory": used,
        "used_memory_human": human_bytes(used),
        "used_memory_rss": _rss_bytes(),
        "used_memory_peak_rss": peak_rss,
        "maxmemory": config.max_bytes,
        "maxmemory_human": human_bytes(config.max_bytes),
        "maxmemory_policy": "allkeys-lru",
        "mem_clients_normal": node.budget.used,
        "maxmemory_clients": node.budget.limit,
        "hint_bytes": node.cluster.hints.bytes if node.cluster is not None else 0,
    }


def _persistence(node: Node) -> Section:
    return {
        "loading": 0,
        "async_loading": 0,
        "rdb_bgsave_in_progress": 0,
        "aof_enabled": 0,
        "aof_rewrite_in_progress": 0,
    }


def _stats(node: Node) -> Section:
    stats, stores = node.stats, _stores(node)
    return {
        "total_connections_received": stats.connections_received,
        "total_commands_processed": stats.commands_processed,
        "total_net_input_bytes": stats.net_input_bytes,
        "total_net_output_bytes": stats.net_output_bytes,
        "rejected_connections": stats.rejected_connections,
        **{f"refused_{reason}": n for reason, n in node.refusals.counts.items()},
        "client_memory_evictions": node.budget.evictions,
        "handler_errors": stats.handler_errors,
        "expired_keys": sum(store.expirations for store in stores),
        "evicted_keys": sum(store.evictions for store in stores),
        "keyspace_hits": sum(store.hits for store in stores),
        "keyspace_misses": sum(store.misses for store in stores),
        "total_error_replies": stats.protocol_errors,
        "http_requests": sum(node.metrics.http_statuses.values()),
        **_tls(node),
    }


def _tls(node: Node) -> Section:
    """TLS listeners' counts (server/tls.py): handshakes begun and refused, plaintext
    sent to a TLS port, TLS sent to the plaintext port; none without a TLS port."""
    if node.tls_context is None:
        return {}
    tls = node.tls_counters
    return {
        "tls_handshakes": tls.handshakes,
        "tls_handshake_failures": tls.handshake_failures,
        "tls_plaintext_refused": tls.plaintext_refused,
        "tls_on_plaintext_port": tls.tls_on_plaintext,
    }


def _replication(node: Node) -> Section:
    return {"role": "master", "connected_slaves": 0}


def _cpu(node: Node) -> Section:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"used_cpu_sys": f"{usage.ru_stime:.6f}", "used_cpu_user": f"{usage.ru_utime:.6f}"}


def _commandstats(node: Node) -> Section:
    """Redis's `cmdstat_<name>:calls=..,usec=..,usec_per_call=..` from the RESP histograms."""
    section: Section = {}
    for name, slot in sorted(node.metrics.resp.by_name.items()):
        calls = sum(slot[:-1])
        if calls:
            usec = slot[-1] // 1000
            section[f"cmdstat_{name}"] = (
                f"calls={calls},usec={usec},usec_per_call={usec / calls:.2f},"
                "rejected_calls=0,failed_calls=0"
            )
    return section


def _latencystats(node: Node) -> Section:
    """Redis's `latency_percentiles_usec_<name>:p50=..,p99=..,p99.9=..`, to bucket precision."""
    section: Section = {}
    for name, slot in sorted(node.metrics.resp.by_name.items()):
        if sum(slot[:-1]):
            parts = (
                f"{label}={percentile_s(slot, q) * 1e6:.3f}" for label, q in LATENCY_PERCENTILES
            )
            section[f"latency_percentiles_usec_{name}"] = ",".join(parts)
    return section


def _keyspace(node: Node) -> Section:
    return {
        f"db{index}": line
        for index, store in node.databases.held()
        if (line := _keyspace_line(store))
    }


def _keyspace_line(store: Store) -> str:
    if not len(store):
        return ""
    # Keys filed in the expiry wheel are exactly the keys with a TTL (store/expiry.py),
    # counted without walking the keyspace.
    expires = len(store._wheel)
    return f"keys={len(store)},expires={expires},avg_ttl=0"


def _geocache(node: Node) -> Section:
    store, stats, config = node.store, node.stats, node.config
    return {
        "node_id": node.node_id,
        "region": config.region,
        "http_port": node.http_port,
        "tombstones": len(store.tombstones),
        "max_keys": config.max_keys,
        "output_limit_disconnects": stats.output_limit_disconnects,
        "idle_disconnects": stats.idle_disconnects,
        "protocol_errors": stats.protocol_errors,
        "expire_cycles": stats.expire_cycles,
        "auth_failures": stats.auth_failures,
        "auth_disconnects": stats.auth_disconnects,
        "http_auth_failures": stats.http_auth_failures,
        "command_latency_tracking": "yes" if node.metrics.resp_timed else "no",
        "cluster_enabled": 1 if node.cluster is not None else 0,
        **({f"cluster_{k}": v for k, v in node.cluster.status().items()} if node.cluster else {}),
    }


def _cluster(node: Node) -> Section:
    """As Redis: whether this node speaks the cluster protocol (commands/cluster.py)."""
    return {"cluster_enabled": 1 if node.cluster is not None else 0}


def _regions(node: Node) -> Section:
    """One line per other region, as Redis lists replicas: `region_<name>:k=v,...`."""
    if node.cluster is None:
        return {}
    return {
        f"region_{region}": ",".join(f"{k}={v}" for k, v in status.items())
        for region, status in node.cluster.streams.status().items()
    }


def _origin(node: Node) -> Section:
    """The read-through origin's counters (origin/readthrough.py); empty without one."""
    from geocache.origin.readthrough import ReadThrough

    through = node.origin
    if not isinstance(through, ReadThrough):
        return {}
    latency = ",".join(
        f"{label}={percentile_s(through.latency, q) * 1e6:.3f}" for label, q in LATENCY_PERCENTILES
    )
    return {
        "origin": through.description,
        **{f"origin_{name}": value for name, value in through.counters().items()},
        "origin_loading": through.loading,
        "origin_load_latency_usec": latency,
        "origin_breaker": through.breaker.state,
        "origin_breaker_opened": through.breaker.opened,
        "origin_stale_keys": len(through.stale),
        "origin_stale_bytes": through.stale.used_bytes,
        "origin_negative_keys": len(through.negative),
        "origin_refresh_tracked": len(through.refresher) if through.refresher else 0,
    }


SECTIONS: dict[str, Callable[[Node], Section]] = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "persistence": _persistence,
    "stats": _stats,
    "replication": _replication,
    "cpu": _cpu,
    "commandstats": _commandstats,
    "latencystats": _latencystats,
    "cluster": _cluster,
    "keyspace": _keyspace,
    "regions": _regions,
    "origin": _origin,
    "geocache": _geocache,
}


def _rss_bytes() -> int:
    """Resident set size now (Linux /proc), or 0 where that is not available."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def human_bytes(n: int) -> str:
    """Redis's bytesToHuman: `512B`, `1.50K`, `2.00M`, `1.00G`."""
    if n < 1024:
        return f"{n}B"
    value = float(n)
    for unit in ("K", "M", "G", "T"):
        value /= 1024
        if value < 1024 or unit == "T":
            break
    return f"{value:.2f}{unit}"
