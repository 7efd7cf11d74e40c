"""What one node lets its connections hold: the doors, the client memory budget, the fds.

Doors, each with its own budget, so no crowd at one locks out another:
- RESP clients up to `max_clients`;
- HTTP connections up to `max_http_connections` (server/http.py), each closed if its
  request's headers do not arrive within `http_header_timeout_s` or its body within
  `http_body_timeout_s`;
- peers (connections that proved the cluster secret) up to `max_peer_connections`: a
  connection arriving while the client door is full is let in on probation as a would-be
  peer, may only run the handshake (GC.CHALLENGE, GC.AUTH), and is closed if it has not
  proven the secret within `auth_timeout_s`; so idle strangers cannot keep members from
  reaching each other (they would declare each other dead and split the region);
- a reserve of file descriptors for listeners, outgoing peer connections and logs.

One memory budget for clients, as Redis's `maxmemory-clients`: every client connection
reports what it holds (query buffer, unsent replies, MULTI queue, HTTP body) as it
changes, the budget keeps the sum, and past the limit the connection holding the most is
closed (`evict`). Peers are never evicted: they are the cluster's own traffic, bounded by
their own timeouts and queues.

A connection refused or closed for a limit gets an error reply where it can, is counted
by reason, and logged, at most one line per reason a second (`Refusals`), with how many
were not logged since, so a flood of refusals cannot flood the log.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("geocache.limits")

# File descriptors kept back from the client and peer doors: listeners, the node's own
# outgoing peer connections (3 per peer), origin connections, log files, the event loop.
FD_RESERVE = 256
# One log line per reason per this many seconds; the rest are counted.
REFUSAL_LOG_EVERY_S = 1.0

REASONS = (
    "max_clients",
    "max_peer_connections",
    "max_http_connections",
    "client_memory",
    "output_buffer",
    "output_stall",
    "auth_timeout",
    "http_timeout",
)


class Holder(Protocol):
    """A connection as the budget sees it."""

    @property
    def held_bytes(self) -> int: ...

    def evict(self, reason: str) -> None: ...


class Refusals:
    """Connections refused or closed for a limit: counted by reason, logged sparingly."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts = dict.fromkeys(REASONS, 0)
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def count(self, reason: str, client: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self._clock()
        if now - self._logged_at.get(reason, -REFUSAL_LOG_EVERY_S) < REFUSAL_LOG_EVERY_S:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        self._logged_at[reason] = now
        log.warning(
            "connection refused or closed at a limit",
            extra={"reason": reason, "client": client, "not_logged": self._unlogged.pop(reason, 0)},
        )

    def reset(self) -> None:
        self.counts = dict.fromkeys(REASONS, 0)


class ClientBudget:
    """The sum of what client connections hold, and who to close past `limit` (0: none)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.evictions = 0

    def change(self, delta: int) -> bool:
        """Add `delta` bytes; True when the sum is now over the limit."""
        self.used += delta
        return 0 < self.limit < self.used

    def enforce(self, holders: Iterable[Holder]) -> None:
        """Close the biggest holders until the sum is within the limit again."""
        if not 0 < self.limit < self.used:
            return
        ranked = sorted(holders, key=lambda h: h.held_bytes, reverse=True)
        for holder in ranked:
            if self.used <= self.limit or holder.held_bytes == 0:
                break
            self.evictions += 1
            holder.evict("client_memory")  # its bytes leave the sum as it goes


def largest(holders: Iterable[Holder], n: int = 3) -> list[int]:
    """The `n` largest buffers held, in bytes (INFO, /metrics)."""
    return sorted((h.held_bytes for h in holders), reverse=True)[:n]


@dataclass(frozen=True, slots=True)
class FdPlan:
    """The file descriptor limit the node runs with, and the client limit that fits it."""

    soft_limit: int
    max_clients: int
    lowered: bool


def plan_fds(max_clients: int, max_others: int, reserve: int = FD_RESERVE) -> FdPlan:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit lets, then fit max_clients
    under it (lowered, and said so, when max_clients + the other doors (peers, HTTP) +
    reserve does not fit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_clients + max_others + reserve
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return FdPlan(soft, max_clients, lowered=False)
    fitted = soft - max_others - reserve
    if fitted < 1:
        raise ValueError(
            f"the file descriptor limit ({soft}) leaves no room for clients beside"
            f" {max_others} peer and HTTP connections and a reserve of {reserve}:"
            " raise `ulimit -n` or lower max_peer_connections and max_http_connections"
        )
    return FdPlan(soft, fitted, lowered=True)
