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

At scrape time `server/prometheus.py` (a prometheus_client custom collector) reads all
of them and builds metric families; cumulative buckets, sums in seconds and gauges are
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
from collections.abc import Container

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
