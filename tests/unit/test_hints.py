"""Hints: bounded in bytes as well as count, replayed in batches paced by size."""

from __future__ import annotations

from geocache.cluster.hints import (
    BASE_TIMEOUT_MS,
    HINT_OVERHEAD_BYTES,
    Hints,
    Pacer,
    hint_bytes,
)

MB = 1 << 20


def entry(value: bytes, version: int = 1) -> tuple[bytes, int, int, str]:
    return (value, 0, version, "n1")


def test_hints_past_their_byte_bound_drop_the_oldest_and_count_it() -> None:
    hints = Hints(max_bytes=3 * MB)
    for i in range(10):
        hints.add("b", [(b"k%d" % i, entry(b"v" * MB))], now_ms=i)
    assert hints.bytes <= 3 * MB
    assert len(hints) == 2
    assert hints.dropped == 8 and hints.needs_repair == {"b"}
    assert [k for k, _ in hints.batch("b", 100, now_ms=10)] == [b"k8", b"k9"]


def test_a_newer_hint_of_a_key_replaces_the_older_in_bytes_too() -> None:
    hints = Hints(max_bytes=10 * MB)
    hints.add("b", [(b"k", entry(b"v" * MB))], now_ms=0)
    hints.add("b", [(b"k", entry(b"w" * 10, version=2))], now_ms=1)
    assert hints.bytes == hint_bytes(b"k", entry(b"w" * 10))
    assert hints.bytes == 1 + 10 + HINT_OVERHEAD_BYTES


def test_batches_are_bounded_in_bytes_but_hold_at_least_one_record() -> None:
    hints = Hints(max_bytes=0)
    hints.add("b", [(b"k%d" % i, entry(b"v" * MB)) for i in range(5)], now_ms=0)
    assert len(hints.batch("b", 1000, now_ms=0, max_bytes=2 * MB + 2 * 1000)) == 2
    assert len(hints.batch("b", 1000, now_ms=0, max_bytes=1)) == 1
    delivered = hints.batch("b", 1000, now_ms=0, max_bytes=1)
    hints.done("b", delivered)
    assert len(hints) == 4 and hints.bytes == 4 * hint_bytes(b"k0", entry(b"v" * MB))


def test_a_batch_that_times_out_makes_the_next_one_half_and_slower_to_time_out() -> None:
    pacer = Pacer()
    first = pacer.batch_bytes
    quick = pacer.timeout_ms(first)
    pacer.timed_out()
    assert pacer.batch_bytes == first // 2
    assert pacer.timeout_ms(first) > quick  # throughput halved: the same size may take longer
    for _ in range(40):
        pacer.timed_out()
    assert pacer.batch_bytes == 1  # down to a single record, never resent whole


def test_a_batch_timeout_follows_its_size_and_measured_throughput() -> None:
    pacer = Pacer()
    assert pacer.timeout_ms(0) == BASE_TIMEOUT_MS
    assert pacer.timeout_ms(8 * MB) > pacer.timeout_ms(MB)
    pacer.delivered(4 * MB, elapsed_s=4.0)  # 1 MB/s measured
    slow = pacer.timeout_ms(4 * MB)
    pacer.delivered(4 * MB, elapsed_s=0.04)  # 100 MB/s measured
    assert pacer.timeout_ms(4 * MB) < slow
