"""The reply writer, byte for byte in RESP2 and RESP3, and the client-side ReplyReader."""

from __future__ import annotations

import enum
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geocache.protocol.errors import ProtocolError
from geocache.protocol.replies import ReplyReader
from geocache.protocol.types import (
    NULL_ARRAY,
    OK,
    PONG,
    QUEUED,
    BigNumber,
    Error,
    Raw,
    Simple,
    Verbatim,
)
from geocache.protocol.writer import encode, encode_command, encode_into

# (value, RESP2, RESP3)
CASES: list[tuple[object, bytes, bytes]] = [
    (b"abc", b"$3\r\nabc\r\n", b"$3\r\nabc\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
    (b"x" * 600, b"$600\r\n" + b"x" * 600 + b"\r\n", b"$600\r\n" + b"x" * 600 + b"\r\n"),
    (bytearray(b"ab"), b"$2\r\nab\r\n", b"$2\r\nab\r\n"),
    (memoryview(b"ab"), b"$2\r\nab\r\n", b"$2\r\nab\r\n"),
    ("h\u00e9", b"$3\r\nh\xc3\xa9\r\n", b"$3\r\nh\xc3\xa9\r\n"),
    (0, b":0\r\n", b":0\r\n"),
    (1, b":1\r\n", b":1\r\n"),
    (-1, b":-1\r\n", b":-1\r\n"),
    (-2, b":-2\r\n", b":-2\r\n"),
    (-3, b":-3\r\n", b":-3\r\n"),
    (1023, b":1023\r\n", b":1023\r\n"),
    (1024, b":1024\r\n", b":1024\r\n"),
    (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
    (-(2**63), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n"),
    (2**64, b"$20\r\n18446744073709551616\r\n", b"(18446744073709551616\r\n"),
    (BigNumber(10**30), b"$31\r\n1" + b"0" * 30 + b"\r\n", b"(1" + b"0" * 30 + b"\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (0.1, b"$19\r\n0.10000000000000001\r\n", b",0.1\r\n"),
    (3.0, b"$1\r\n3\r\n", b",3\r\n"),
    (-0.0, b"$2\r\n-0\r\n", b",-0\r\n"),
    (2.0**53, b"$16\r\n9007199254740992\r\n", b",9007199254740992\r\n"),
    (2.0**62, b"$22\r\n4.6116860184273879e+18\r\n", b",4611686018427387904\r\n"),
    (2.0**63, b"$22\r\n9.2233720368547758e+18\r\n", b",9.223372036854776e+18\r\n"),
    (1e20, b"$5\r\n1e+20\r\n", b",1e+20\r\n"),
    (1.5e-7, b"$22\r\n1.4999999999999999e-07\r\n", b",1.5e-07\r\n"),
    (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
    (-math.inf, b"$4\r\n-inf\r\n", b",-inf\r\n"),
    (math.nan, b"$3\r\nnan\r\n", b",nan\r\n"),
    (Simple("OK"), b"+OK\r\n", b"+OK\r\n"),
    (Simple("a\r\nb"), b"+a  b\r\n", b"+a  b\r\n"),
    (Error("ERR no"), b"-ERR no\r\n", b"-ERR no\r\n"),
    (Error("ERR bad\r\nline\n"), b"-ERR bad  line \r\n", b"-ERR bad  line \r\n"),
    (OK, b"+OK\r\n", b"+OK\r\n"),
    (PONG, b"+PONG\r\n", b"+PONG\r\n"),
    (QUEUED, b"+QUEUED\r\n", b"+QUEUED\r\n"),
    (Raw(b":7\r\n"), b":7\r\n", b":7\r\n"),
    (Verbatim("a\r\nb"), b"$4\r\na\r\nb\r\n", b"=8\r\ntxt:a\r\nb\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n"),
    ((b"a", (True,)), b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", b"*2\r\n$1\r\na\r\n*1\r\n#t\r\n"),
    ({b"k": 1.5}, b"*2\r\n$1\r\nk\r\n$3\r\n1.5\r\n", b"%1\r\n$1\r\nk\r\n,1.5\r\n"),
    ({}, b"*0\r\n", b"%0\r\n"),
    ({b"x"}, b"*1\r\n$1\r\nx\r\n", b"~1\r\n$1\r\nx\r\n"),
    (frozenset({3}), b"*1\r\n:3\r\n", b"~1\r\n:3\r\n"),
    (
        [NULL_ARRAY, Error("E x"), Simple("s"), [[]]],
        b"*4\r\n*-1\r\n-E x\r\n+s\r\n*1\r\n*0\r\n",
        b"*4\r\n_\r\n-E x\r\n+s\r\n*1\r\n*0\r\n",
    ),
]


@pytest.mark.parametrize(("value", "resp2", "resp3"), CASES, ids=[repr(c[0])[:30] for c in CASES])
def test_encode(value: object, resp2: bytes, resp3: bytes) -> None:
    assert encode(value) == resp2
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3


def test_encode_into_appends_pieces_that_join_to_encode() -> None:
    out = [b"+first\r\n"]
    encode_into(out, [b"x" * 1000, 5], 2)
    assert out[0] == b"+first\r\n"
    assert b"".join(out[1:]) == encode([b"x" * 1000, 5])


def test_small_integers_and_nulls_are_shared_objects() -> None:
    first: list[bytes] = []
    second: list[bytes] = []
    for out in (first, second):
        encode_into(out, 42, 2)
        encode_into(out, None, 2)
    assert first[0] is second[0] and first[1] is second[1]


class Color(enum.IntEnum):
    RED = 1


class MyBytes(bytes):
    pass


class MyList(list[object]):
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [(Color.RED, b":1\r\n"), (MyBytes(b"ab"), b"$2\r\nab\r\n"), (MyList([1]), b"*1\r\n:1\r\n")],
)
def test_subclasses_encode_like_their_base(value: object, expected: bytes) -> None:
    assert encode(value) == expected
    assert encode(value) == expected  # the second time from the cached entry


def test_unsupported_type_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot encode object"):
        encode(object())


def test_encode_command() -> None:
    assert encode_command("SET", b"k", 10, -1.5, "\u00e9") == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n10\r\n$4\r\n-1.5\r\n$2\r\n\xc3\xa9\r\n"
    )
    assert encode_command(b"PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode_command(bytearray(b"a")) == b"*1\r\n$1\r\na\r\n"
    with pytest.raises(TypeError, match="bool"):
        encode_command(b"SET", True)
    with pytest.raises(TypeError, match="NoneType"):
        encode_command(b"SET", None)  # type: ignore[arg-type]


# -- the client side: ReplyReader --------------------------------------------------------


def read_all(data: bytes, **kwargs: object) -> list[object]:
    sentinel = kwargs.get("incomplete", False)
    reader = ReplyReader(**kwargs)
    replies = []
    for i in range(len(data)):  # byte by byte
        reader.feed(data[i : i + 1])
        while (reply := reader.gets()) is not sentinel:
            replies.append(reply)
    return replies


def test_reply_reader_values() -> None:
    data = b"+OK\r\n$3\r\nabc\r\n:-5\r\n$-1\r\n*2\r\n$1\r\na\r\n-ERR in\r\n-WRONGTYPE x\r\n"
    replies = read_all(data)
    assert replies == [b"OK", b"abc", -5, None, [b"a", "ERR in"], "WRONGTYPE x"]
    assert type(replies[4][1]) is Error and type(replies[5]) is Error  # type: ignore[index]


def test_reply_reader_resp3_needs_its_own_incomplete_marker() -> None:
    sentinel = object()
    data = b"#f\r\n#t\r\n,1.5\r\n%1\r\n+k\r\n:1\r\n~1\r\n:2\r\n_\r\n"
    assert read_all(data, incomplete=sentinel) == [False, True, 1.5, {b"k": 1}, [2], None]


def test_reply_reader_protocol_error() -> None:
    reader = ReplyReader()
    reader.feed(b"?what\r\n")
    with pytest.raises(ProtocolError, match="Protocol error"):
        reader.gets()


resp2_values = st.recursive(
    st.one_of(
        st.binary(max_size=30),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.none(),
        st.builds(Error, st.text(alphabet="ABCxyz \u00e9", min_size=1, max_size=10)),
    ),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


@given(value=resp2_values)
def test_writer_and_reply_reader_round_trip(value: object) -> None:
    assert read_all(encode(value, 2)) == [value]
    assert read_all(encode(value, 3), incomplete=Ellipsis) == [value]
