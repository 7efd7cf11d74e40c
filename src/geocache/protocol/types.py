"""Reply values that need more than a Python builtin to say how they are encoded.

Handlers return plain values and the writer encodes them for the connection's protocol
version (RESP2 or RESP3):

| handler returns | RESP2 | RESP3 |
|---|---|---|
| `bytes` | bulk string | bulk string |
| `int` | integer | integer |
| `None` | null bulk `$-1` | null `_` |
| `list` / `tuple` | array (`*-1` for `NULL_ARRAY`) | array (`_` for `NULL_ARRAY`) |
| `dict` | flat array of key, value | map |
| `set` / `frozenset` | array | set |
| `float` | bulk string | double |
| `bool` | integer 0/1 | boolean |
| `Simple` | simple string | simple string |
| `Error` | error | error |
| `Raw` | written as is (pre-encoded, e.g. `+OK`) | written as is |
| `Verbatim` | bulk string | verbatim string (`txt:`) |
| `BigNumber` | bulk string | big number |
"""

from __future__ import annotations


class Simple(str):
    """A simple string reply: `+text`. Must not contain CR or LF."""

    __slots__ = ()


class Error(str):
    """An error reply: `-PREFIX message`. The text includes the prefix (ERR, WRONGTYPE...)."""

    __slots__ = ()


class Raw(bytes):
    """Bytes already encoded as RESP, written unchanged (the same in RESP2 and RESP3)."""

    __slots__ = ()


class Verbatim(str):
    """Text shown to a person (INFO, CLIENT LIST): bulk in RESP2, verbatim `txt` in RESP3."""

    __slots__ = ()


class BigNumber(int):
    """An integer outside 64 bits: bulk in RESP2, big number `(` in RESP3."""

    __slots__ = ()


class _NullArray:
    """The null array: `*-1` in RESP2 (e.g. a timed-out blocking reply), `_` in RESP3."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = _NullArray()

OK = Raw(b"+OK\r\n")
PONG = Raw(b"+PONG\r\n")
QUEUED = Raw(b"+QUEUED\r\n")
