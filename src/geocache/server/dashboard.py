"""The live dashboard: a page on the HTTP port, and the JSON it polls.

`/` (and `/dashboard`) is a static page with its script and style, shipped in the
package (server/static/) so it works offline; they hold no data and need no token. The
page polls `/v1/dashboard?since=<seq>` once a second, which needs the node's bearer
token when requirepass is set (the page asks for it, or takes it from `#token=` in its
URL: a fragment never reaches a server or its logs).

`/v1/dashboard` is the cluster as the node serving it sees it: its membership (every
member's state), every answering member's INFO (asked over the peer connections the
node already has, on a channel of their own so a slow answer never marks a peer down
for writes), turned into per-node numbers and region-to-region lag by
observability/clusterview.py, plus the timeline's events after `since` (this node's,
and the resyncs and breaker events of the members serving HTTP: timeline.py). One
gathering serves every request for MIN_REFRESH_S, so many open pages cost one round.
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import TYPE_CHECKING

from geocache.cluster.peers import PeerError
from geocache.observability.clusterview import (
    STATES,
    ClusterView,
    Info,
    Member,
    Snapshot,
    parse_info,
)
from geocache.server.timeline import Source, Timeline

if TYPE_CHECKING:
    from geocache.server.node import Node

# The peer-connection channel INFO is asked on (cluster/peers.py channels).
STATS_CHANNEL = "stats"
INFO_SECTIONS = ("stats", "memory", "keyspace", "geocache", "regions", "origin")
# A member that takes longer than this to answer INFO is shown with its last numbers.
PEER_INFO_TIMEOUT_MS = 1000
# Requests within this long of a gathering share it (s); the page polls every second.
MIN_REFRESH_S = 0.5
# Events sent at most per answer (the page asks again from the last one it got).
EVENTS_PER_ANSWER = 200
ASSETS = {
    "dashboard.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


def asset(name: str) -> bytes:
    """A file of the page, from the package's static/ folder."""
    return (resources.files("geocache.server") / "static" / name).read_bytes()


class Dashboard:
    def __init__(self, node: Node) -> None:
        self._node = node
        self._view = ClusterView()
        self._last: tuple[float, Snapshot] | None = None
        self._gathering: asyncio.Task[Snapshot] | None = None
        self._assets: dict[str, bytes] = {}
        self._timeline = Timeline(node)

    def asset(self, name: str) -> bytes:
        cached = self._assets.get(name)
        if cached is None:
            cached = self._assets[name] = asset(name)
        return cached

    async def state(self, since: int) -> Snapshot:
        """The latest snapshot and this node's events after `since`."""
        snapshot = await self.snapshot()
        timeline = self._timeline
        return {
            **snapshot,
            "events": timeline.since(since, EVENTS_PER_ANSWER),
            "last_seq": timeline.last_seq,
        }

    async def snapshot(self) -> Snapshot:
        last = self._last
        if last is not None and time.monotonic() - last[0] < MIN_REFRESH_S:
            return last[1]
        if self._gathering is None or self._gathering.done():
            self._gathering = asyncio.ensure_future(self._gather())
        # Shielded: a page closed mid-request must not cancel the others' gathering.
        return await asyncio.shield(self._gathering)

    async def _gather(self) -> Snapshot:
        node = self._node
        members = self._members()
        asked = [m for m in members if not m.is_self and m.state in ("up", "suspect")]
        answers = await asyncio.gather(*(self._peer_info(m.addr) for m in asked))
        infos: dict[str, Info | None] = {m.node_id: a for m, a in zip(asked, answers, strict=True)}
        infos[node.node_id] = self._own_info()
        await self._timeline.fetch(_sources(asked, infos))
        snapshot = self._view.update(members, infos, time.monotonic())
        snapshot.update(
            {
                "node_id": node.node_id,
                "region": node.config.region,
                "at_ms": node.clock.wall_ms(),
                "started_ms": node.started_ms,
                "clustered": node.cluster is not None,
            }
        )
        self._last = (time.monotonic(), snapshot)
        return snapshot

    def _members(self) -> list[Member]:
        node = self._node
        config = node.config
        me = Member(node.node_id, config.region, f"{config.bind}:{node.resp_port}", "up", True)
        if node.cluster is None:
            return [me]
        others = [
            Member(m.node_id, m.region, m.addr, STATES[m.state.name.lower()])
            for m in node.cluster.members()
            if m.node_id != node.node_id
        ]
        return [me, *sorted(others, key=lambda m: (m.region, m.node_id))]

    def _own_info(self) -> Info:
        sections = self._node.info_sections()
        return {
            name: {k: str(v) for k, v in fields.items()}
            for name, fields in sections.items()
            if name in INFO_SECTIONS
        }

    async def close(self) -> None:
        await self._timeline.close()

    async def _peer_info(self, addr: str) -> Info | None:
        cluster = self._node.cluster
        if cluster is None:
            return None
        try:
            reply = await cluster.peers.get(addr, STATS_CHANNEL).call(
                "INFO", *INFO_SECTIONS, timeout_ms=PEER_INFO_TIMEOUT_MS
            )
        except PeerError:
            return None
        if not isinstance(reply, bytes):
            return None  # an error reply
        return parse_info(reply.decode("utf-8", "replace"))


def _sources(members: list[Member], infos: dict[str, Info | None]) -> list[Source]:
    """The members that answered and serve HTTP: where their own events are."""
    sources = []
    for member in members:
        info = infos.get(member.node_id)
        port = info.get("geocache", {}).get("http_port", "0") if info else "0"
        if port.isdigit() and int(port):
            host = member.addr.rpartition(":")[0].strip("[]")
            sources.append(Source(member.node_id, host, int(port)))
    return sources
