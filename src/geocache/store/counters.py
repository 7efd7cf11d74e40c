"""INCR and INCRBYFLOAT arithmetic on decimal string values, exactly as Redis parses them."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext
from typing import Final

from geocache.store.errors import NanOrInfinity, NotAFloat, NotAnInteger, Overflow

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
# Up to 18 digits a decimal always fits in 64 bits: parsed digit by digit, no range check.
_SHORT_DIGITS: Final = 18
_MINUS: Final = 0x2D
_ZERO: Final = 0x30

# Redis's string2ll: optional '-', then no leading zeros, no '+', no spaces; "-0" is
# rejected; at most 20 characters.
_INTEGER = re.compile(rb"-?[1-9][0-9]{0,19}|0")
# strtold as Redis uses it: no leading space, the whole string consumed, no NaN.
_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity)", re.I
)


def parse_int(raw: bytes) -> int:
    """A signed 64-bit integer from its canonical decimal form, or NotAnInteger."""
    size = len(raw)
    negative = size > 1 and raw[0] == _MINUS
    start = 1 if negative else 0
    if 0 < size - start <= _SHORT_DIGITS:  # every counter a client keeps, in practice
        if raw[start] == _ZERO and size != 1:
            raise NotAnInteger()  # "-0" and leading zeros are not canonical
        value = 0
        for i in range(start, size):
            digit = raw[i] - _ZERO
            if not 0 <= digit <= 9:
                raise NotAnInteger()
            value = value * 10 + digit
        return -value if negative else value
    if _INTEGER.fullmatch(raw) is None:
        raise NotAnInteger()
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise NotAnInteger()
    return value


def add_int(current: int, delta: int) -> int:
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise Overflow()
    return result


_SEVENTEEN_DECIMALS = Decimal("1e-17")
# Redis computes in x87 long double: strtold makes a larger magnitude infinite and a
# smaller one zero, and Redis refuses both; a sum past the maximum is infinite. Without
# these bounds "1e999999" would become a value of a million digits.
_LONG_DOUBLE_MAX = Decimal("1.18973149535723176502e4932")
_LONG_DOUBLE_ROUNDS_TO_ZERO = Decimal("1.8225997659412373e-4951")  # half the least subnormal


def parse_float(raw: bytes) -> Decimal:
    if _FLOAT.fullmatch(raw) is None:
        raise NotAFloat()
    try:
        value = Decimal(raw.decode("ascii"))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise NotAFloat() from None
    if (
        value.is_finite()
        and value
        and not (_LONG_DOUBLE_ROUNDS_TO_ZERO < value.copy_abs() <= _LONG_DOUBLE_MAX)
    ):
        raise NotAFloat()
    return value


def add_float(current: bytes, increment: bytes) -> bytes:
    """INCRBYFLOAT: the sum in Redis's human form ("10.5", "3000", "-0.1")."""
    value, incr = parse_float(current), parse_float(increment)
    if value.is_infinite() or incr.is_infinite():
        raise NanOrInfinity()
    # Redis adds in long double (about 19 significant digits) and prints with 17
    # decimals, trailing zeros removed; decimal arithmetic at that precision gives the
    # same text without the binary rounding noise.
    with localcontext() as ctx:
        ctx.prec = 19
        total = value + incr
        if total.copy_abs() > _LONG_DOUBLE_MAX:
            raise NanOrInfinity()
        ctx.prec = 60
        if int(total.as_tuple().exponent) < -17:
            total = total.quantize(_SEVENTEEN_DECIMALS)
        text = format(total, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.encode("ascii")
