"""`geocache status`: the cluster at a glance, through any one node.

Asks the node for the membership (`GC.TOPOLOGY`), then every member that is not known
dead for its INFO (directly, at its advertised address, with the same password), twice
`--interval` apart so that ops/s is a rate; observability/clusterview.py turns that into
members by region and state, keys, memory, ops/s and hit ratio per node, and the lag
between every pair of regions. Shown as rich tables, or as JSON (`--json`: the same
object `/v1/dashboard` answers, less the events); `--watch` refreshes until Ctrl-C
(with `--json`, one object per line).
"""

from __future__ import annotations

import json
import ssl
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from geocache.client.connection import Connection, ReplyError
from geocache.observability.clusterview import (
    STATES,
    ClusterView,
    Info,
    Member,
    Snapshot,
    parse_info,
)

__all__ = ["parse_info", "run_status"]

INFO_SECTIONS = ("stats", "memory", "keyspace", "geocache", "regions", "origin")
# Each member gets this long to answer (s): a hung one must not hold the whole view.
MEMBER_TIMEOUT_S = 1.0


def fetch_info(
    host: str, port: int, password: str | None = None, tls: ssl.SSLContext | None = None
) -> Info:
    with Connection(host, port, MEMBER_TIMEOUT_S, tls=tls) as conn:
        if password:
            conn.execute("AUTH", password)
        raw = conn.execute("INFO", *INFO_SECTIONS)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return parse_info(text)


def fetch_members(
    host: str, port: int, password: str | None, tls: ssl.SSLContext | None = None
) -> list[Member]:
    """The membership as the node at host:port sees it (itself marked); just that node
    when it has no GC.TOPOLOGY (a Redis server)."""
    with Connection(host, port, MEMBER_TIMEOUT_S, tls=tls) as conn:
        if password:
            conn.execute("AUTH", password)
        try:
            topology = conn.execute("GC.TOPOLOGY")
        except ReplyError:
            return [Member(f"{host}:{port}", "-", f"{host}:{port}", "up", True)]
    members = []
    for item in topology if isinstance(topology, list) else []:
        record = item if isinstance(item, dict) else dict(zip(item[::2], item[1::2], strict=True))
        text = {_text(k): v for k, v in record.items()}
        members.append(
            Member(
                _text(text["id"]),
                _text(text["region"]),
                _text(text["addr"]),
                STATES.get(_text(text["state"]), _text(text["state"])),
                bool(text.get("self")),
            )
        )
    return sorted(members, key=lambda m: (m.region, m.node_id))


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _infos(
    members: list[Member], password: str | None, tls: ssl.SSLContext | None = None
) -> dict[str, Info | None]:
    infos: dict[str, Info | None] = {}
    for member in members:
        if member.state not in ("up", "suspect"):
            continue
        host, _, port = member.addr.rpartition(":")
        try:
            infos[member.node_id] = fetch_info(host.strip("[]"), int(port), password, tls)
        except (OSError, ReplyError, ValueError):
            infos[member.node_id] = None
    return infos


def sample(
    view: ClusterView,
    host: str,
    port: int,
    password: str | None,
    tls: ssl.SSLContext | None = None,
) -> Snapshot:
    members = fetch_members(host, port, password, tls)
    snapshot = view.update(members, _infos(members, password, tls), time.monotonic())
    me = next((m for m in members if m.is_self), None)
    snapshot.update(
        {
            "node_id": me.node_id if me else f"{host}:{port}",
            "region": me.region if me else "",
            "at_ms": int(time.time() * 1000),
        }
    )
    return snapshot


# -- tables -------------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _bytes(value: Any) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)  # pragma: no cover - the loop always returns


_STYLE = {"up": "green", "suspect": "yellow", "down": "red", "left": "dim"}


def members_table(snapshot: Snapshot) -> Table:
    table = Table(title=f"geocache cluster through {snapshot['node_id']}")
    for column in ("region", "node", "state", "keys", "memory", "ops/s", "hit ratio"):
        table.add_column(column, justify="left" if column in ("region", "node") else "right")
    for region in snapshot["regions"]:
        for node in region["nodes"]:
            state = node["state"]
            ratio = node.get("hit_ratio")
            table.add_row(
                region["name"],
                node["node_id"] + (" *" if node["self"] else ""),
                f"[{_STYLE.get(state, '')}]{state}[/]" + (" (stale)" if node["stale"] else ""),
                _num(node.get("keys")),
                _bytes(node.get("used_bytes")),
                _num(node.get("ops_per_s")),
                "-" if ratio is None else f"{ratio:.1%}",
            )
    table.caption = "* the node asked; stale: did not answer, its last numbers"
    return table


def lag_table(snapshot: Snapshot) -> Table:
    table = Table(title="replication lag between regions (ms)")
    for column in ("from", "to", "latest", "p50", "p99", "rtt", "queued", "resync"):
        table.add_column(column, justify="left" if column in ("from", "to") else "right")
    for lag in snapshot["lag"]:
        table.add_row(
            lag["from"],
            lag["to"],
            _num(lag["lag_ms"]),
            _num(lag["lag_p50_ms"]),
            _num(lag["lag_p99_ms"]),
            _num(lag["rtt_ms"], 1),
            _num(lag["queued"]),
            "yes" if lag["resync"] else "no",
        )
    return table


def render(snapshot: Snapshot) -> Group:
    parts: list[Table] = [members_table(snapshot)]
    if snapshot["lag"]:
        parts.append(lag_table(snapshot))
    return Group(*parts)


# -- the command ----------------------------------------------------------------------------


def run_status(
    host: str,
    port: int,
    password: str | None,
    as_json: bool = False,
    watch: bool = False,
    interval_s: float = 1.0,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Print the cluster once (two samples `interval_s` apart), or every `interval_s`
    with `watch` until Ctrl-C; 1 if the node cannot be read."""
    console = Console()
    view = ClusterView()
    try:
        sample(view, host, port, password, tls)  # the first sample: rates need two
        time.sleep(interval_s)
        snapshot = sample(view, host, port, password, tls)
        if not watch:
            _show(console, snapshot, as_json)
            return 0
        if as_json:
            while True:
                _show(console, snapshot, as_json)
                time.sleep(interval_s)
                snapshot = sample(view, host, port, password, tls)
        with Live(render(snapshot), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval_s)
                live.update(render(sample(view, host, port, password, tls)), refresh=True)
    except (OSError, ReplyError) as exc:
        print(f"geocache status: cannot read {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _show(console: Console, snapshot: Snapshot, as_json: bool) -> None:
    if as_json:
        print(json.dumps(snapshot), flush=True)
    else:
        console.print(render(snapshot))
