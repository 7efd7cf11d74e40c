"""The cluster at a glance: members by region, per-node numbers, lag between regions.

Sans-IO: whoever gathers the facts (the node's `/v1/dashboard` over its peer
connections, `geocache status` over plain connections) feeds `ClusterView.update` the
membership and each member's INFO text (None for a member that did not answer), and
gets back one JSON-ready snapshot. The view keeps each node's previous sample, so rates
(ops/s) come from two samples of `total_commands_processed`, and a member that stops
answering keeps its last numbers, marked `stale`.

Lag from region A to region B is read from A's nodes (each node's stream to B, INFO's
`# Regions` section): the latest batch's lag (`lag_ms`) and the p50 and p99 of recent
writes, the worst among A's nodes that shipped anything; queued writes are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Info = dict[str, dict[str, str]]
Snapshot = dict[str, Any]

# Membership states as the HTTP API names them (GC.TOPOLOGY's alive/suspect/dead/left).
STATES = {"alive": "up", "suspect": "suspect", "dead": "down", "left": "left"}
_LAG_FIELDS = ("lag_ms", "lag_p50_ms", "lag_p99_ms", "rtt_ms", "queued", "resync", "acked")


def parse_info(text: str) -> Info:
    """INFO text as {section: {field: value}} (section names lower case)."""
    sections: Info = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            current = sections.setdefault(line[2:].strip().lower(), {})
        elif ":" in line:
            name, _, value = line.partition(":")
            current[name] = value
    return sections


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _streams(regions: dict[str, str]) -> dict[str, dict[str, float]]:
    """`region_<name>:k=v,...` lines as {remote region: {k: v}} (numbers only)."""
    streams = {}
    for name, line in regions.items():
        if not name.startswith("region_"):
            continue
        pairs = (item.partition("=") for item in line.split(","))
        streams[name.removeprefix("region_")] = {
            k: n for k, _, v in pairs if (n := _number(v)) is not None
        }
    return streams


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    region: str
    addr: str
    state: str  # up, suspect, down, left
    is_self: bool = False


@dataclass(slots=True)
class _Seen:
    at_s: float
    commands: int
    ops_per_s: float | None
    info: Info


@dataclass
class ClusterView:
    """Turns membership and INFO samples into snapshots; remembers the last sample per node."""

    _seen: dict[str, _Seen] = field(default_factory=dict)

    def update(
        self, members: list[Member], infos: dict[str, Info | None], now_s: float
    ) -> Snapshot:
        """A snapshot: `infos` maps node id to its INFO (parse_info), None if it did not
        answer; `now_s` is a monotonic time, for rates."""
        for node_id, info in infos.items():
            if info is not None:
                self._remember(node_id, info, now_s)
        known = {m.node_id for m in members}
        for gone in [n for n in self._seen if n not in known]:  # forgotten by membership
            del self._seen[gone]
        nodes = [self._node(m, infos.get(m.node_id) is not None) for m in members]
        regions = sorted({m.region for m in members})
        return {
            "regions": [
                {"name": r, "nodes": [n for n in nodes if n["region"] == r]} for r in regions
            ],
            "lag": [self._lag(a, b, members) for a in regions for b in regions if a != b],
        }

    def _remember(self, node_id: str, info: Info, now_s: float) -> None:
        commands = int(_number(info.get("stats", {}).get("total_commands_processed")) or 0)
        before = self._seen.get(node_id)
        rate = None
        if before is not None and now_s > before.at_s and commands >= before.commands:
            rate = (commands - before.commands) / (now_s - before.at_s)
        elif before is not None:
            rate = before.ops_per_s  # sampled twice at once, or restarted: keep the last
        self._seen[node_id] = _Seen(now_s, commands, rate, info)

    def _node(self, member: Member, fresh: bool) -> dict[str, object]:
        seen = self._seen.get(member.node_id)
        node: dict[str, object] = {
            "node_id": member.node_id,
            "region": member.region,
            "addr": member.addr,
            "state": member.state,
            "self": member.is_self,
            "stale": not fresh,
        }
        if seen is None:
            return node
        info = seen.info
        stats, memory, geo = info.get("stats", {}), info.get("memory", {}), info.get("geocache", {})
        hits = int(_number(stats.get("keyspace_hits")) or 0)
        misses = int(_number(stats.get("keyspace_misses")) or 0)
        keyspace = info.get("keyspace", {}).get("db0", "keys=0")
        origin = info.get("origin", {})
        node.update(
            {
                "keys": int(_number(keyspace.split(",")[0].partition("=")[2]) or 0),
                "used_bytes": int(_number(memory.get("used_memory")) or 0),
                "max_bytes": int(_number(memory.get("maxmemory")) or 0),
                "ops_per_s": None if seen.ops_per_s is None else round(seen.ops_per_s, 1),
                "hits": hits,
                "misses": misses,
                "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
                "ready": geo.get("cluster_ready", "1") == "1",
                "http_port": int(_number(geo.get("http_port")) or 0),
                "origin": _origin(origin) if origin else None,
            }
        )
        return node

    def _lag(self, source: str, target: str, members: list[Member]) -> dict[str, object]:
        streams = []
        for m in members:
            seen = self._seen.get(m.node_id)
            if m.region != source or seen is None or m.state != "up":
                continue
            stream = _streams(seen.info.get("regions", {})).get(target)
            if stream is not None:
                streams.append(stream)
        shipped = [s for s in streams if s.get("acked", 0) > 0]
        lag: dict[str, object] = {"from": source, "to": target}
        for name in ("lag_ms", "lag_p50_ms", "lag_p99_ms"):
            lag[name] = max((s[name] for s in shipped if name in s), default=None)
        rtts = [s["rtt_ms"] for s in streams if s.get("rtt_ms", -1) >= 0]
        lag["rtt_ms"] = round(sum(rtts) / len(rtts), 1) if rtts else None
        lag["queued"] = int(sum(s.get("queued", 0) for s in streams))
        lag["resync"] = any(s.get("resync", 0) for s in streams)
        return lag


def _origin(origin: dict[str, str]) -> dict[str, object]:
    return {
        "origin": origin.get("origin", ""),
        "breaker": origin.get("origin_breaker", "closed"),
        "loads": int(_number(origin.get("origin_loads")) or 0),
        "errors": int(_number(origin.get("origin_errors")) or 0)
        + int(_number(origin.get("origin_timeouts")) or 0),
        "stale_served": int(_number(origin.get("origin_stale_served")) or 0),
        "breaker_opened": int(_number(origin.get("origin_breaker_opened")) or 0),
    }
