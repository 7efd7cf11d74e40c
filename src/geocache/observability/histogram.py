"""A histogram of integer observations in fixed buckets, as plain ints.

For values recorded off the hot path but exported as a Prometheus histogram (the
replication lag of each write shipped to another region): `observe` is one bisect and
two additions; the exporter reads `cumulative()` at scrape time. Counts only grow
(until `reset`, CONFIG RESETSTAT), as a Prometheus histogram's must.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

# Replication lag to another region (ms): a few ms between nearby regions, 50 to 200 ms
# across continents, seconds while a region is slow, up to a minute (geo_resync_after_s's
# default) while it is unreachable; a write that waited longer is in the +Inf bucket.
REGION_LAG_BOUNDS_MS: tuple[int, ...] = (
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 2000, 5000, 10000, 30000, 60000,
)  # fmt: skip


class Histogram:
    """Counts of values per bucket (`value <= bound`, then +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Iterable[int]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0

    def observe(self, value: int) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, values at or below it) per bucket, the last bound +Inf."""
        result, seen = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += count
            result.append((float(bound), seen))
        return result

    def reset(self) -> None:
        self.counts = [0] * len(self.counts)
        self.total = 0
