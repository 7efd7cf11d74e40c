"""Region lag in /metrics: a Prometheus histogram per region of every shipped write."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from geocache.observability.histogram import REGION_LAG_BOUNDS_MS, Histogram
from geocache.server.prometheus import _lag_histogram


def test_bucket_edges_are_inclusive_upper_bounds() -> None:
    hist = Histogram((10, 100))
    for lag_ms in (0, 10, 11, 100, 101, 5000):
        hist.observe(lag_ms)
    assert hist.counts == [2, 2, 2]
    assert hist.cumulative() == [(10.0, 2), (100.0, 4), (float("inf"), 6)]
    assert hist.count == 6 and hist.total == 5222
    hist.reset()
    assert hist.count == 0 and hist.total == 0


@given(st.lists(st.integers(min_value=0, max_value=200_000), max_size=200))
def test_cumulative_counts_never_decrease_and_end_at_the_count(lags: list[int]) -> None:
    hist = Histogram(REGION_LAG_BOUNDS_MS)
    for lag in lags:
        hist.observe(lag)
    counts = [count for _, count in hist.cumulative()]
    assert counts == sorted(counts) and counts[-1] == len(lags)
    for bound, count in hist.cumulative():
        assert count == sum(1 for lag in lags if lag <= bound)


class _Collector:
    def __init__(self, streams: dict[str, Any]) -> None:
        self._streams = streams

    def collect(self) -> Iterator[Metric]:
        yield _lag_histogram(self._streams)


def scrape(streams: dict[str, Any]) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(cast(Any, _Collector(streams)))
    text = generate_latest(registry).decode()
    (family,) = text_string_to_metric_families(text)
    assert family.type == "histogram" and family.name == "geocache_region_lag_seconds"
    return {(s.name, s.labels.get("region"), s.labels.get("le")): s.value for s in family.samples}


def test_exported_per_region_in_seconds() -> None:
    us, ap = Histogram(REGION_LAG_BOUNDS_MS), Histogram(REGION_LAG_BOUNDS_MS)
    for lag_ms in (40, 45, 52, 900):
        us.observe(lag_ms)
    ap.observe(70_000)  # past the last bound: +Inf only
    samples = scrape(
        {"us": SimpleNamespace(lag_histogram=us), "ap": SimpleNamespace(lag_histogram=ap)}
    )
    bucket = "geocache_region_lag_seconds_bucket"
    assert samples[bucket, "us", "0.03"] == 0
    assert samples[bucket, "us", "0.05"] == 2
    assert samples[bucket, "us", "0.075"] == 3
    assert samples[bucket, "us", "1.0"] == 4
    assert samples[bucket, "us", "+Inf"] == 4
    assert samples["geocache_region_lag_seconds_count", "us", None] == 4
    assert abs(samples["geocache_region_lag_seconds_sum", "us", None] - 1.037) < 1e-9
    assert samples[bucket, "ap", "60.0"] == 0 and samples[bucket, "ap", "+Inf"] == 1
