"""Replies and commands to RESP bytes: `encode_into` for the server's hot path.

Handlers return plain values (the table in `types.py`); `encode_into(out, value, proto)`
appends the RESP2 or RESP3 encoding to `out` in pieces, and the server joins the pieces
of a whole batch once. `encode_command` builds a request, for clients and peers.

Theory of operation: one dispatch table per protocol, keyed by the exact type of the
value, so the common replies (bulk, integer, `+OK`, null) cost one dict lookup and one or
two appends. A subclass of a known type (say, an IntEnum) is resolved once by isinstance,
in a fixed order (bool before int, Raw before bytes, ...), and cached in the table.
Small integers, short bulk headers and nulls are encoded once at import. A plain `str`
is sent as a UTF-8 bulk string, and an int outside 64 bits as a big number.

Formats that follow Redis: an error or simple string never contains CR or LF (replaced by
spaces, as addReplyErrorLength does); a float is `%.17g` in a RESP2 bulk (addReplyDouble
of Redis <= 7.0; 7.2 prints the shortest form instead) and, in RESP3, `,inf`, `,-inf`,
`,nan`, an integer for an integral value within 2**62 (as Redis 7.2's d2string), else
Python's shortest round-tripping repr (Redis's fpconv may differ in exponent style, e.g.
`1.5e-7`; clients read both).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any, Final, cast

from geocache.protocol.types import BigNumber, Error, Raw, Simple, Verbatim, _NullArray

Encoder = Callable[[list[bytes], Any], None]

# Final throughout: the compiled module reads these as C statics, not from its globals.
CRLF: Final = b"\r\n"
# Precomputed: integers a reply is likely to carry (counts, TTLs, booleans, -1/-2).
_INT_MIN: Final = -2
_INT_MAX: Final = 1023
_INTS: Final = [b":%d\r\n" % i for i in range(_INT_MIN, _INT_MAX + 1)]
# Bulk headers for short values; longer ones are formatted (cost is dwarfed by the copy).
_BULK_HEADERS: Final = [b"$%d\r\n" % n for n in range(1024)]
# A value at least this long (bytes) is appended as is rather than copied into one piece
# with its header: the batch join copies it once anyway.
_SEPARATE_BYTES: Final = 512
_NULL2: Final = b"$-1\r\n"
_NULL3: Final = b"_\r\n"
_NULL_ARRAY2: Final = b"*-1\r\n"
# d2string prints an integral double within this bound as an integer (its double2ll).
_EXACT_INT_LIMIT: Final = float(2**62)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
# Raw (types.py is not compiled), for the fast path of encode_into.
_RAW_TYPE: Final = Raw


def encode(value: object, proto: int = 2) -> bytes:
    """The RESP encoding of one reply for protocol version `proto` (2 or 3)."""
    out: list[bytes] = []
    encode_into(out, value, proto)
    return b"".join(out)


def encode_into(out: list[bytes], value: object, proto: int) -> None:
    """Append the encoding of `value` to `out` (to be joined once per batch)."""
    # The commonest replies (GET's bulk, `+OK`, a counter) skip the table: compiled, these
    # are direct C calls, not calls through the table's function objects.
    cls = type(value)
    if cls is bytes:
        _bulk(out, cast(bytes, value))
        return
    if value is None:
        out.append(_NULL3 if proto == 3 else _NULL2)
        return
    if cls is _RAW_TYPE:
        out.append(cast(bytes, value))
        return
    if cls is int:
        if proto == 3:
            _int3(out, cast(int, value))
        else:
            _int2(out, cast(int, value))
        return
    table = _RESP3 if proto == 3 else _RESP2
    encoder = table.get(cls)
    if encoder is None:
        encoder = _resolve(table, value)
    encoder(out, value)


def encode_command(*args: bytes | str | int | float | bytearray | memoryview) -> bytes:
    """A request: an array of bulk strings. str is UTF-8; int and float their decimal text."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _arg_bytes(arg)
        parts += (b"$%d\r\n" % len(data), data, CRLF)
    return b"".join(parts)


def _arg_bytes(arg: object) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):
        raise TypeError("a bool is not a command argument: send 0 or 1")
    if isinstance(arg, int):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode()
    if isinstance(arg, bytearray | memoryview):
        return bytes(arg)
    raise TypeError(f"cannot send {type(arg).__name__} as a command argument")


# -- scalars -------------------------------------------------------------------------


def _bulk(out: list[bytes], value: bytes) -> None:
    size = len(value)
    if size < _SEPARATE_BYTES:
        out.append(_BULK_HEADERS[size] + value + CRLF)
    else:
        out += (b"$%d\r\n" % size, value, CRLF)


def _bytes_like(out: list[bytes], value: bytearray | memoryview) -> None:
    _bulk(out, bytes(value))


def _text_bulk(out: list[bytes], value: str) -> None:
    _bulk(out, _utf8(value))


def _int2(out: list[bytes], value: int) -> None:
    if _INT_MIN <= value <= _INT_MAX:
        out.append(_INTS[value - _INT_MIN])
    elif _INT64_MIN <= value <= _INT64_MAX:
        out.append(b":%d\r\n" % value)
    else:
        _big_number2(out, value)  # a RESP integer is 64-bit: clients reject longer ones


def _int3(out: list[bytes], value: int) -> None:
    if _INT_MIN <= value <= _INT_MAX:
        out.append(_INTS[value - _INT_MIN])
    elif _INT64_MIN <= value <= _INT64_MAX:
        out.append(b":%d\r\n" % value)
    else:
        _big_number3(out, value)


def _raw(out: list[bytes], value: bytes) -> None:
    out.append(value)


def _simple(out: list[bytes], value: str) -> None:
    out.append(b"+" + _one_line(value) + CRLF)


def _error(out: list[bytes], value: str) -> None:
    out.append(b"-" + _one_line(value) + CRLF)


def _null2(out: list[bytes], value: object) -> None:
    out.append(_NULL2)


def _null3(out: list[bytes], value: object) -> None:
    out.append(_NULL3)


def _null_array2(out: list[bytes], value: object) -> None:
    out.append(_NULL_ARRAY2)


def _bool2(out: list[bytes], value: bool) -> None:
    out.append(_INTS[1 - _INT_MIN] if value else _INTS[0 - _INT_MIN])


def _bool3(out: list[bytes], value: bool) -> None:
    out.append(b"#t\r\n" if value else b"#f\r\n")


def _float2(out: list[bytes], value: float) -> None:
    _bulk(out, b"%.17g" % value)


def _float3(out: list[bytes], value: float) -> None:
    out.append(b"," + _double_text(value) + CRLF)


def _verbatim3(out: list[bytes], value: str) -> None:
    data = _utf8(value)
    out += (b"=%d\r\ntxt:" % (len(data) + 4), data, CRLF)


def _big_number2(out: list[bytes], value: int) -> None:
    _bulk(out, b"%d" % value)


def _big_number3(out: list[bytes], value: int) -> None:
    out.append(b"(%d\r\n" % value)


def _utf8(text: str) -> bytes:
    # surrogateescape: text decoded from arbitrary client bytes goes back unchanged.
    return text.encode("utf-8", "surrogateescape")


def _one_line(text: str) -> bytes:
    data = _utf8(text)
    if b"\r" in data or b"\n" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return data


def _double_text(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value == 0:
        return b"-0" if math.copysign(1.0, value) < 0 else b"0"
    if value.is_integer() and abs(value) <= _EXACT_INT_LIMIT:
        return b"%d" % value
    return repr(value).encode()


# -- aggregates ----------------------------------------------------------------------


def _items(table: dict[type, Encoder], out: list[bytes], items: Any) -> None:
    for item in items:
        encoder = table.get(type(item))
        if encoder is None:
            encoder = _resolve(table, item)
        encoder(out, item)


def _array2(out: list[bytes], value: Collection[object]) -> None:
    # RESP2 has no set type: sets travel as arrays too.
    out.append(b"*%d\r\n" % len(value))
    _items(_RESP2, out, value)


def _array3(out: list[bytes], value: Collection[object]) -> None:
    out.append(b"*%d\r\n" % len(value))
    _items(_RESP3, out, value)


def _map2(out: list[bytes], value: dict[object, object]) -> None:
    out.append(b"*%d\r\n" % (2 * len(value)))
    for key, item in value.items():
        _items(_RESP2, out, (key, item))


def _map3(out: list[bytes], value: dict[object, object]) -> None:
    out.append(b"%%%d\r\n" % len(value))
    for key, item in value.items():
        _items(_RESP3, out, (key, item))


def _set3(out: list[bytes], value: set[object] | frozenset[object]) -> None:
    out.append(b"~%d\r\n" % len(value))
    _items(_RESP3, out, value)


_COMMON: Final[dict[type, Encoder]] = {
    bytes: _bulk,
    Raw: _raw,
    Simple: _simple,
    Error: _error,
    str: _text_bulk,
    bytearray: _bytes_like,
    memoryview: _bytes_like,
}
_RESP2: Final[dict[type, Encoder]] = {
    **_COMMON,
    type(None): _null2,
    _NullArray: _null_array2,
    int: _int2,
    list: _array2,
    tuple: _array2,
    dict: _map2,
    set: _array2,
    frozenset: _array2,
    float: _float2,
    bool: _bool2,
    Verbatim: _text_bulk,
    BigNumber: _big_number2,
}
_RESP3: Final[dict[type, Encoder]] = {
    **_COMMON,
    type(None): _null3,
    _NullArray: _null3,
    int: _int3,
    list: _array3,
    tuple: _array3,
    dict: _map3,
    set: _set3,
    frozenset: _set3,
    float: _float3,
    bool: _bool3,
    Verbatim: _verbatim3,
    BigNumber: _big_number3,
}
# For subclasses: the first base in this order that the value is an instance of.
_BASES = (
    Raw,
    bytes,
    bytearray,
    memoryview,
    bool,
    BigNumber,
    int,
    float,
    Simple,
    Error,
    Verbatim,
    str,
    list,
    tuple,
    dict,
    frozenset,
    set,
)


def _resolve(table: dict[type, Encoder], value: object) -> Encoder:
    """The encoder for a subclass of a known type, remembered for next time."""
    for base in _BASES:
        if isinstance(value, base):
            encoder = table[base]
            table[type(value)] = encoder
            return encoder
    raise TypeError(f"cannot encode {type(value).__name__} as a RESP reply")
