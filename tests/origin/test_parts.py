"""The small parts of origin/: the spec parser, the breaker, the shelf, the settings."""

from __future__ import annotations

import pytest

from geocache.clock import ManualClock
from geocache.config import NodeConfig
from geocache.origin.breaker import Breaker
from geocache.origin.loaders import HttpLoader
from geocache.origin.shelf import SHELF_ENTRY_OVERHEAD_BYTES, Shelf
from geocache.origin.spec import parse_origin

# -- spec ----------------------------------------------------------------------------------


def test_redis_origins() -> None:
    spec = parse_origin("redis://:s3cret@cache.internal:6380/2")
    assert (spec.kind, spec.host, spec.port, spec.db, spec.password) == (
        "redis",
        "cache.internal",
        6380,
        2,
        "s3cret",
    )
    assert spec.shown == "redis://cache.internal:6380/2"  # never the password
    assert parse_origin("redis://127.0.0.1").port == 6379
    assert parse_origin("redis://u:p@h:1/0").username == "u"


def test_http_and_python_origins() -> None:
    assert parse_origin("https://api.example.com/v1/items/{key}?full=1").kind == "http"
    assert parse_origin("myapp.loaders:load_user").kind == "python"


@pytest.mark.parametrize(
    "text, message",
    [
        ("http://api.example.com/items", "{key}"),
        ("http:///{key}", "needs a host"),
        ("redis://h:1/zero", "redis://"),
        ("redis://h:99999/0", "bad port"),
        ("ftp://h/{key}", "origin must be"),
        ("not an origin", "origin must be"),
    ],
)
def test_bad_origins_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{")):
        parse_origin(text)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"origin": "nope"}, "origin must be"),
        ({"refresh_keys": "hot:*"}, "refresh_keys needs an origin"),
        ({"origin": "redis://h:1/0", "origin_ttl_s": 0, "refresh_keys": "a"}, "origin_ttl_s"),
        ({"max_stale_s": -1}, "max_stale_s must be 0 or more"),
        ({"origin_timeout_s": 0}, "origin_timeout_s"),
        ({"origin_concurrency": 0}, "origin_concurrency must be at least 1"),
        ({"max_concurrent_commands": -1}, "max_concurrent_commands"),
    ],
)
def test_config_refuses_bad_origin_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeConfig(**settings)  # type: ignore[arg-type]


def test_http_keys_are_percent_encoded_into_one_path_segment() -> None:
    loader = HttpLoader("http://o.test/items/{key}?v=1", 4, 1 << 20)
    assert str(loader.url(b"a b/../c?d")) == "http://o.test/items/a%20b%2F..%2Fc%3Fd?v=1"
    assert str(loader.url(b"\xff")) == "http://o.test/items/%FF?v=1"


# -- breaker ---------------------------------------------------------------------------------


def test_breaker_half_open_lets_one_trial_through() -> None:
    clock = ManualClock()
    breaker = Breaker(clock, failures_to_open=3, reset_ms=500)
    for _ in range(2):
        breaker.failure()
    breaker.success()  # a success resets the count
    for _ in range(2):
        breaker.failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_in_ms() == 500
    clock.advance(500)
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # one trial at a time
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_breaker_with_zero_failures_never_opens() -> None:
    breaker = Breaker(ManualClock(), failures_to_open=0, reset_ms=500)
    for _ in range(1000):
        breaker.failure()
    assert breaker.allow() and breaker.opened == 0


def test_a_late_failure_does_not_extend_an_open_breaker() -> None:
    clock = ManualClock()
    breaker = Breaker(clock, failures_to_open=1, reset_ms=500)
    breaker.failure()
    clock.advance(400)
    breaker.failure()  # a load that began before it opened
    clock.advance(100)
    assert breaker.allow()


# -- shelf -----------------------------------------------------------------------------------


def test_shelf_forgets_at_the_deadline() -> None:
    shelf: Shelf[bytes] = Shelf(1 << 20, len)
    shelf.put(b"k", b"v", until_ms=100, now_ms=0)
    assert shelf.get(b"k", 99) == b"v"
    assert shelf.get(b"k", 100) is None
    assert len(shelf) == 0 and shelf.used_bytes == 0


def test_shelf_stays_within_its_bytes_dropping_the_oldest() -> None:
    cost = 1 + 10 + SHELF_ENTRY_OVERHEAD_BYTES
    shelf: Shelf[bytes] = Shelf(3 * cost, len)
    for i in range(5):
        shelf.put(b"%d" % i, b"x" * 10, until_ms=1_000 + i, now_ms=i)
    assert shelf.used_bytes == 3 * cost and shelf.dropped == 2
    assert shelf.get(b"0", 10) is None and shelf.get(b"4", 10) == b"x" * 10
    shelf.put(b"big", b"x" * 4 * cost, until_ms=2_000, now_ms=10)  # could never fit
    assert shelf.get(b"big", 10) is None and len(shelf) == 3


def test_shelf_drops_expired_answers_as_new_ones_come() -> None:
    shelf: Shelf[bytes] = Shelf(1 << 20, len)
    for i in range(100):
        shelf.put(b"%d" % i, b"v", until_ms=i + 10, now_ms=i)
    assert len(shelf) == 10  # the ten not yet past their deadline
    shelf.put(b"1", b"again", until_ms=300, now_ms=200)
    assert len(shelf) == 1 and shelf.get(b"1", 250) == b"again"
