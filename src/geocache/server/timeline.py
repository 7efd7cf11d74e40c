"""The dashboard's timeline: this node's events and the other nodes' own, merged.

Membership events are this node's view: every node sees every member change, so taking
them from every node would repeat each one. A region stream's resyncs and an origin
breaker's state belong to the node they happen on, so those are fetched from every
member that serves HTTP (its `/v1/events` after the last one seen from it, with this
node's bearer token, if any), each time the dashboard gathers. A member that answers
with a different `started_ms` has restarted: its events are read again from its first.

Merged events get a sequence number of the timeline's own (what the page's `since`
counts), in the order they were learned; each keeps its `reporter` and `at_ms`. The
ring is bounded (CAPACITY), and so is each fetch (a member's own ring).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from geocache.server.node import Node

# Kinds every node reports alike (observability/events.py): taken from this node only.
MEMBERSHIP = frozenset({"joined", "suspected", "dead", "rejoined", "recovered", "left"})
# Events kept: this node's ring (500) and room for what the others report.
CAPACITY = 1000
# A member's /v1/events gets this long (s); past it, its events wait for the next round.
FETCH_TIMEOUT_S = 1.0

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    """A member serving HTTP: where to ask it for its events."""

    node_id: str
    host: str
    http_port: int


class Timeline:
    def __init__(self, node: Node) -> None:
        self._node = node
        self._events: deque[Event] = deque(maxlen=CAPACITY)
        self._seq = 0
        self._local_seen = 0
        # node id -> (its started_ms, the last of its sequence numbers taken).
        self._seen: dict[str, tuple[int, int]] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def last_seq(self) -> int:
        return self._seq

    def since(self, seq: int, limit: int) -> list[Event]:
        self._take_local()
        newer = [e for e in self._events if e["seq"] > seq]
        return newer[-limit:]

    def _take_local(self) -> None:
        events = self._node.events
        for event in events.since(self._local_seen):
            self._add(event.as_dict())
        self._local_seen = events.last_seq

    def _add(self, event: Event) -> None:
        self._seq += 1
        self._events.append({**event, "seq": self._seq})

    async def fetch(self, sources: list[Source]) -> None:
        """Take the new events of each source (its own kinds only)."""
        self._take_local()
        if sources:
            await asyncio.gather(*(self._fetch_one(s) for s in sources))

    async def _fetch_one(self, source: Source) -> None:
        started, seen = self._seen.get(source.node_id, (0, 0))
        url = f"http://{source.host}:{source.http_port}/v1/events?since={seen}"
        try:
            data = await self._get(url)
            if data["started_ms"] != started:  # restarted (or first asked): from its first
                started, seen = data["started_ms"], 0
                data = await self._get(url.rpartition("=")[0] + "=0")
            for event in data["events"]:
                if event["seq"] > seen and event["kind"] not in MEMBERSHIP:
                    self._add(event)
            self._seen[source.node_id] = (started, int(data["last_seq"]))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return  # not serving, or not in time: its events wait for the next round

    async def _get(self, url: str) -> Any:
        if self._session is None:  # made here: a session belongs to the running loop
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            self._session = aiohttp.ClientSession(timeout=timeout)
        token = self._node.config.requirepass  # read each time: CONFIG SET may change it
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._session.get(url, headers=headers) as reply:
            if reply.status != 200:
                raise ValueError(f"{url}: {reply.status}")
            return await reply.json()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
