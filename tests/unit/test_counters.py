"""INCR family arithmetic: Redis's parsing, bounds, error texts and INCRBYFLOAT formatting.

Every expected value and error here was checked against redis-server 7.0 (INCRBY and
INCRBYFLOAT on a key holding the first argument).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geocache.clock import ManualClock
from geocache.store import Store, StoreError
from geocache.store.counters import INT64_MAX, INT64_MIN, add_float, add_int, parse_int
from geocache.store.errors import NanOrInfinity, NotAFloat, NotAnInteger, Overflow

NOT_AN_INTEGER = "ERR value is not an integer or out of range"
OVERFLOW = "ERR increment or decrement would overflow"
NOT_A_FLOAT = "ERR value is not a valid float"
NAN_OR_INF = "ERR increment would produce NaN or Infinity"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"0", 0),
        (b"1", 1),
        (b"-1", -1),
        (b"9223372036854775807", INT64_MAX),
        (b"-9223372036854775808", INT64_MIN),
        (b"-1234567890123456789", -1234567890123456789),
    ],
)
def test_parse_int_accepts_canonical_int64(raw: bytes, value: int) -> None:
    assert parse_int(raw) == value


@pytest.mark.parametrize(
    "raw",
    [
        b"-0",
        b"+1",
        b" 1",
        b"1 ",
        b"01",
        b"00",
        b"-01",
        b"-",
        b"",
        b"1e3",
        b"1.0",
        b"0x10",
        b"1_000",
        "\u0661".encode(),  # ARABIC-INDIC DIGIT ONE: int() takes it, Redis does not
        b"9223372036854775808",  # INT64_MAX + 1
        b"-9223372036854775809",  # INT64_MIN - 1
        b"12345678901234567890",  # 20 digits
        b"99999999999999999999",
        b"123456789012345678901",  # 21 digits
    ],
)
def test_parse_int_refuses_what_redis_refuses(raw: bytes) -> None:
    with pytest.raises(NotAnInteger) as error:
        parse_int(raw)
    assert str(error.value) == NOT_AN_INTEGER


# Redis's string2ll as a pattern and a range: what parse_int's digit loop must agree with.
_CANONICAL = re.compile(rb"-?[1-9][0-9]{0,19}|0")


@given(
    st.one_of(
        st.binary(max_size=22),
        st.integers(min_value=-(10**20), max_value=10**20).map(lambda n: str(n).encode()),
        st.text(alphabet="-0123456789 +", max_size=21).map(str.encode),
    )
)
def test_parse_int_agrees_with_redis_pattern(raw: bytes) -> None:
    expected = int(raw) if _CANONICAL.fullmatch(raw) else None
    if expected is not None and not INT64_MIN <= expected <= INT64_MAX:
        expected = None
    try:
        got: int | None = parse_int(raw)
    except NotAnInteger:
        got = None
    assert got == expected


def test_add_int_overflow_is_an_error_with_redis_text() -> None:
    assert add_int(INT64_MAX - 1, 1) == INT64_MAX
    assert add_int(INT64_MIN + 1, -1) == INT64_MIN
    for current, delta in [(INT64_MAX, 1), (INT64_MIN, -1), (0, 1 << 63), (-1, -(1 << 64))]:
        with pytest.raises(Overflow) as error:
            add_int(current, delta)
        assert str(error.value) == OVERFLOW


@pytest.mark.parametrize(
    ("current", "increment", "result"),
    [
        # From the INCRBYFLOAT page of the Redis docs.
        (b"10.50", b"0.1", b"10.6"),
        (b"10.6", b"-5", b"5.6"),
        (b"5.0e3", b"2.0e2", b"5200"),
        (b"5.0e3", b"0", b"5000"),
        (b"3.0e3", b"2.0e2", b"3200"),
        # Checked against redis-server.
        (b"0", b"-0", b"0"),
        (b"-0.0", b"0", b"0"),
        (b"1", b"-1", b"0"),
        (b"0.1", b"0.2", b"0.3"),
        (b"1.5", b"-1.6", b"-0.1"),
        (b"1", b"+1", b"2"),
        (b"1", b".5", b"1.5"),
        (b"1", b"5.", b"6"),
        (b"1", b"1e-400", b"1"),
        (b"1", b"-1e-20", b"1"),
        (b"1e17", b"1", b"100000000000000001"),
        (b"1e20", b"0", b"100000000000000000000"),
        (b"9223372036854775807", b"1", b"9223372036854775808"),
        (b"3", b"1e-17", b"3.00000000000000001"),
        (b"3", b"5e-18", b"3"),
        (b"0", b"0.00000000000000001", b"0.00000000000000001"),
        (b"1.23456789012345678901", b"0", b"1.23456789012345679"),
        (b"7", b"2.5E1", b"32"),
        (b"0", b"1e-4950", b"0"),  # a long double subnormal: accepted, prints as 0
    ],
)
def test_add_float_formats_as_redis(current: bytes, increment: bytes, result: bytes) -> None:
    assert add_float(current, increment) == result


@pytest.mark.parametrize(
    ("current", "increment", "error", "text"),
    [
        (b"1", b"nan", NotAFloat, NOT_A_FLOAT),
        (b"1", b" 1", NotAFloat, NOT_A_FLOAT),
        (b"1", b"1 ", NotAFloat, NOT_A_FLOAT),
        (b"1", b"", NotAFloat, NOT_A_FLOAT),
        (b"abc", b"1", NotAFloat, NOT_A_FLOAT),
        (b"1", b"1,5", NotAFloat, NOT_A_FLOAT),
        (b"inf", b"1", NanOrInfinity, NAN_OR_INF),
        (b"1", b"inf", NanOrInfinity, NAN_OR_INF),
        (b"1", b"-infinity", NanOrInfinity, NAN_OR_INF),
        # Past the long double range: strtold gives infinity or zero, and Redis refuses.
        (b"1", b"1e5000", NotAFloat, NOT_A_FLOAT),
        (b"1", b"1.2e4932", NotAFloat, NOT_A_FLOAT),
        (b"1", b"-1e999999999", NotAFloat, NOT_A_FLOAT),
        (b"1", b"1e-5000", NotAFloat, NOT_A_FLOAT),
        (b"1", b"1e-4951", NotAFloat, NOT_A_FLOAT),
        (b"1e5000", b"1", NotAFloat, NOT_A_FLOAT),
        (b"1e4932", b"1e4932", NanOrInfinity, NAN_OR_INF),
    ],
)
def test_add_float_errors_as_redis(
    current: bytes, increment: bytes, error: type[StoreError], text: str
) -> None:
    with pytest.raises(error) as raised:
        add_float(current, increment)
    assert str(raised.value) == text


def test_add_float_results_stay_within_the_long_double_range() -> None:
    """Was: "1e999999" made a value of a million digits, "1e1000000" a decimal.Overflow."""
    assert len(add_float(b"0", b"1e4932")) == 4933  # as long as Redis's
    with pytest.raises(NotAFloat):
        add_float(b"0", b"1e999999")
    with pytest.raises(NotAFloat):
        add_float(b"0", b"1e1000000")


# Where geocache deliberately differs from redis-server (long double arithmetic):
# Redis prints the binary rounding noise of 80-bit floats ("123456789.123456789" + 0
# gives "123456789.12345678899873747", 1e308 prints 309 noisy digits), and its strtold
# accepts hex ("0x10"); geocache computes in decimal and refuses hex.


NOW_MS = 1_700_000_000_000


@pytest.fixture
def store() -> Store:
    return Store(ManualClock(NOW_MS))


def test_incr_by_keeps_the_expiry_and_counts_a_missing_key_as_zero(store: Store) -> None:
    assert store.incr_by(b"new", 5) == 5
    assert store.get(b"new") == b"5"
    store.set(b"timed", b"10", NOW_MS + 5000)
    assert store.incr_by(b"timed", -11) == -1
    assert store.get(b"timed") == b"-1"
    assert store.ttl_ms(b"timed") == 5000
    assert store.incr_by_float(b"timed", b"0.5") == b"-0.5"
    assert store.ttl_ms(b"timed") == 5000
    assert store.incr_by_float(b"f", b"2.5") == b"2.5"


@pytest.mark.parametrize(
    ("value", "call"),
    [
        (b"01", lambda s: s.incr_by(b"k", 1)),
        (b"abc", lambda s: s.incr_by(b"k", 1)),
        (str(INT64_MAX).encode(), lambda s: s.incr_by(b"k", 1)),
        (b"1", lambda s: s.incr_by(b"k", INT64_MAX)),
        (b"abc", lambda s: s.incr_by_float(b"k", b"1")),
        (b"1", lambda s: s.incr_by_float(b"k", b"x")),
        (b"1", lambda s: s.incr_by_float(b"k", b"inf")),
    ],
)
def test_errors_change_nothing(store: Store, value: bytes, call: Callable[[Store], object]) -> None:
    entry = store.set(b"k", value, NOW_MS + 5000)
    stats = store.stats()
    with pytest.raises(StoreError):
        call(store)
    assert store.peek(b"k") == entry
    assert store.stats() == stats


def test_an_error_on_a_missing_key_creates_nothing(store: Store) -> None:
    with pytest.raises(NotAFloat):
        store.incr_by_float(b"missing", b"1x")
    with pytest.raises(Overflow):
        store.incr_by(b"missing", 1 << 63)
    assert len(store) == 0
