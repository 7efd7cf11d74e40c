"""Request framing over a real socket: inline commands, fragments, pipelines.

Expected bytes are what redis-server 7.0 answers (the suite runs against it with
GEOCACHE_TEST_TARGET=redis).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import RawClient, ServerProcess, encode_command


@pytest.fixture
def client(node: ServerProcess) -> Iterator[RawClient]:
    with node.raw() as raw:
        assert raw.call("FLUSHALL") == b"+OK\r\n"
        yield raw


INLINE = {
    "ping": (b"PING\r\n", [b"+PONG\r\n"]),
    "lf-only": (b"PING\n", [b"+PONG\r\n"]),
    "quoted": (b'SET k "a b"\r\nGET k\r\n', [b"+OK\r\n", b"$3\r\na b\r\n"]),
    "single-quoted": (
        b"SET k 'it''s'\r\n",
        [b"-ERR Protocol error: unbalanced quotes in request\r\n"],
    ),
    "escapes": (b'ECHO "a\\x41\\n\\t"\r\n', [b"$4\r\naA\n\t\r\n"]),
    "extra-spaces": (b"  SET   k    v  \r\nGET k\r\n", [b"+OK\r\n", b"$1\r\nv\r\n"]),
    "empty-lines": (b"\r\n\r\nPING\r\n", [b"+PONG\r\n"]),
    "unknown": (
        b"NOSUCH a\r\n",
        [b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n"],
    ),
}


@pytest.mark.parametrize(("data", "expected"), INLINE.values(), ids=INLINE)
def test_inline_commands(client: RawClient, data: bytes, expected: list[bytes]) -> None:
    client.send_raw(data)
    assert client.read_replies(len(expected)) == expected
    if not expected[-1].startswith(b"-ERR Protocol"):
        assert client.call("PING") == b"+PONG\r\n"


def test_empty_and_null_multibulk_are_ignored(client: RawClient) -> None:
    client.send_raw(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n")
    assert client.read_reply() == b"+PONG\r\n"


def test_request_sent_byte_by_byte(client: RawClient) -> None:
    request = encode_command(["SET", "frag", "x" * 100]) + encode_command(["GET", "frag"])
    for i in range(len(request)):
        client.send_raw(request[i : i + 1])
    assert client.read_replies(2) == [b"+OK\r\n", b"$100\r\n" + b"x" * 100 + b"\r\n"]


def test_request_split_at_every_boundary(client: RawClient) -> None:
    """One SET split in two at each offset: always exactly one reply."""
    request = encode_command(["SET", "k", "value"])
    for cut in range(1, len(request)):
        client.send_raw(request[:cut])
        client.send_raw(request[cut:])
        assert client.read_reply() == b"+OK\r\n", cut


def test_mixed_inline_and_multibulk_pipeline(client: RawClient) -> None:
    data = (
        b"SET a 1\r\n"
        + encode_command(["INCR", "a"])
        + b"INCR a\r\n"
        + encode_command(["GET", "a"])
    )
    client.send_raw(data)
    assert client.read_replies(4) == [b"+OK\r\n", b":2\r\n", b":3\r\n", b"$1\r\n3\r\n"]


def test_big_pipeline_in_one_write(client: RawClient) -> None:
    count = 20_000
    client.send_many([["INCR", "n"]] * count)
    assert client.read_replies(count) == [b":%d\r\n" % i for i in range(1, count + 1)]


def test_large_value_round_trip(client: RawClient) -> None:
    value = bytes(range(256)) * 16_384  # 4 MiB: many reads and writes on both sides
    assert client.call("SET", "large", value) == b"+OK\r\n"
    assert client.call("GET", "large") == b"$%d\r\n" % len(value) + value + b"\r\n"
    assert client.call("STRLEN", "large") == b":%d\r\n" % len(value)
