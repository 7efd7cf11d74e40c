"""Differential tests of the commands caches use beyond GET/SET (issue 18), against a
real redis-server, byte for byte in RESP2 and RESP3 (see test_differential.py).

Where a reply legitimately differs (MEMORY USAGE's byte count, slow log timings and
ports, DUMP's payload format) the step compares the reply's shape only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from support import RawClient, Reply, decode
from support.differential import Arg, Step, unordered

from .test_differential import arity_steps, pair, run_case

__all__ = ["pair"]  # the fixture, shared with test_differential

I64_MAX = "9223372036854775807"


def _shape(reply: Reply) -> object:
    if isinstance(reply.value, tuple):
        return (reply.kind, tuple(_shape(item) for item in reply.items))
    return reply.kind


def check_shape(node: bytes, redis: bytes) -> None:
    """Same RESP types all the way down (values may differ); errors must be equal."""
    if redis[:1] == b"-":
        assert node == redis
        return
    assert _shape(decode(node)) == _shape(decode(redis)), (node, redis)


def shape(*argv: Arg) -> Step:
    return Step(tuple(argv), check_shape)


ARITY: dict[str, int] = {
    "rename": 3,
    "renamenx": 3,
    "copy": -3,
    "touch": -2,
    "randomkey": 1,
    "expiretime": 2,
    "pexpiretime": 2,
    "object": -2,
    "memory": -2,
    "setbit": 4,
    "getbit": 3,
    "bitcount": -2,
    "bitpos": -3,
    "lcs": -3,
    "substr": 4,
    "slowlog": -2,
    "latency": -2,
    "wait": 3,
    "dump": 2,
    "restore": -4,
    "function": -2,
    "swapdb": 3,
    "move": 3,
}

CASES: dict[str, list[Step | Sequence[Arg]]] = {
    f"arity-{name}": list(arity_steps(name, arity)) for name, arity in ARITY.items()
}
CASES["arity-subcommands"] = [
    ["OBJECT", "ENCODING"],
    ["OBJECT", "ENCODING", "a", "b"],
    ["OBJECT", "FREQ"],
    ["MEMORY", "USAGE"],
    ["SLOWLOG", "LEN", "x"],
    ["SLOWLOG", "GET", "1", "2"],
    ["SLOWLOG", "RESET", "x"],
    ["LATENCY", "HISTORY"],
    ["LATENCY", "LATEST", "x"],
    ["CLIENT", "PAUSE"],
    ["CLIENT", "UNPAUSE", "x"],
    ["CLIENT", "NO-EVICT"],
    ["CLIENT", "KILL"],
    ["FUNCTION", "FLUSH", "a", "b"],
]
CASES.update(
    {
        "expire-overflow": [
            ["EXPIRE", "k", "-9223372036854776"],
            ["SET", "k", "v"],
            ["EXPIRE", "k", "-9223372036854776"],
            ["EXPIREAT", "k", "-9223372036854776"],
            ["EXPIRE", "k", "9223372036854775"],
            ["EXPIRE", "k", "9223372036854776"],
            ["PEXPIRE", "k", I64_MAX],
            ["PEXPIREAT", "k", I64_MAX],
            ["EXISTS", "k"],
            ["SET", "k", "v", "EX", "9223372036854775"],
            ["SET", "k", "v", "EX", "9223372036854776"],
            ["SET", "k", "v", "PX", I64_MAX],
            ["SET", "k", "v", "EXAT", "9223372036854775"],
            ["SET", "k", "v", "EXAT", "9223372036854776"],
            ["SET", "k", "v", "PXAT", I64_MAX],
            ["GETEX", "k", "EX", "9223372036854776"],
            ["GETEX", "k", "PX", I64_MAX],
            ["GETEX", "k", "EX", "9223372036854775"],
            ["GETEX", "k", "EXAT", "9223372036854775"],
            ["SETEX", "k", "9223372036854776", "v"],
            ["PSETEX", "k", I64_MAX, "v"],
            ["EXPIRE", "k", "-9223372036854775"],
            ["EXISTS", "k"],
            ["SET", "k", "v"],
            ["PEXPIRE", "k", "-9223372036854775808"],
            ["EXISTS", "k"],
        ],
        "rename": [
            ["RENAME", "a", "b"],
            ["RENAMENX", "a", "b"],
            ["SET", "a", "1"],
            ["RENAME", "a", "a"],
            ["RENAMENX", "a", "a"],
            ["RENAME", "a", "b"],
            ["EXISTS", "a", "b"],
            ["SET", "c", "2"],
            ["RENAMENX", "b", "c"],
            ["RENAMENX", "b", "d"],
            ["GET", "d"],
            ["PEXPIREAT", "d", "99999999999999"],
            ["RENAME", "d", "c"],
            ["GET", "c"],
            ["PEXPIRETIME", "c"],
            ["RENAME", "c", b"k\x00\r\n"],
            ["GET", b"k\x00\r\n"],
        ],
        "copy": [
            ["COPY", "s", "t"],
            ["SET", "s", "v"],
            ["PEXPIREAT", "s", "99999999999999"],
            ["COPY", "s", "t"],
            ["COPY", "s", "t"],
            ["PEXPIRETIME", "t"],
            ["SET", "t", "other"],
            ["COPY", "s", "t", "REPLACE"],
            ["GET", "t"],
            ["COPY", "s", "s"],
            ["COPY", "s", "t", "DB", "1"],
            ["COPY", "s", "t", "DB", "1"],
            ["COPY", "s", "s", "DB", "1", "REPLACE"],
            ["COPY", "s", "t", "DB", "x"],
            ["COPY", "s", "t", "DB", "16"],
            ["COPY", "s", "t", "DB", "-1"],
            ["COPY", "s", "t", "DB", "99999999999"],
            ["COPY", "s", "t", "DB"],
            ["COPY", "s", "t", "FOO"],
            ["SELECT", "1"],
            ["GET", "t"],
            ["GET", "s"],
            ["PEXPIRETIME", "t"],
        ],
        "touch-randomkey-expiretime": [
            ["RANDOMKEY"],
            ["TOUCH", "a", "b"],
            ["SET", "a", "1"],
            ["RANDOMKEY"],
            ["TOUCH", "a", "b", "a"],
            ["EXPIRETIME", "a"],
            ["PEXPIRETIME", "a"],
            ["EXPIRETIME", "nokey"],
            ["PEXPIRETIME", "nokey"],
            ["PEXPIREAT", "a", "99999999999499"],
            ["EXPIRETIME", "a"],
            ["PEXPIREAT", "a", "99999999999500"],
            ["EXPIRETIME", "a"],
            ["PEXPIRETIME", "a"],
        ],
        "select-swapdb-move": [
            ["SELECT", "1"],
            ["SET", "k", "one"],
            ["SELECT", "15"],
            ["GET", "k"],
            ["SELECT", "16"],
            ["SELECT", "-1"],
            ["SELECT", "99999999999"],
            ["SELECT", "1"],
            ["DBSIZE"],
            ["MOVE", "k", "0"],
            ["MOVE", "k", "0"],
            ["MOVE", "k", "1"],
            ["MOVE", "k", "16"],
            ["MOVE", "k", "x"],
            ["SELECT", "0"],
            ["GET", "k"],
            ["SET", "k", "zero"],
            ["SELECT", "1"],
            ["SET", "k", "one"],
            ["MOVE", "k", "0"],
            ["SWAPDB", "0", "1"],
            ["GET", "k"],
            ["SWAPDB", "0", "x"],
            ["SWAPDB", "x", "0"],
            ["SWAPDB", "0", "16"],
            ["SWAPDB", "-1", "0"],
            ["SWAPDB", "1", "1"],
            ["FLUSHDB"],
            ["SELECT", "0"],
            ["GET", "k"],
            ["FLUSHALL"],
            ["SELECT", "1"],
            ["DBSIZE"],
            ["SET", "a", "1"],
            ["SELECT", "12"],
            ["SET", "a", "1"],
            ["SET", "b", "1"],
            ["INFO", "keyspace"],
            ["CONFIG", "GET", "databases"],
            ["CONFIG", "SET", "databases", "16"],
        ],
        "object": [
            ["OBJECT", "ENCODING", "nokey"],
            ["OBJECT", "FREQ", "nokey"],
            ["OBJECT", "IDLETIME", "nokey"],
            ["OBJECT", "REFCOUNT", "nokey"],
            ["SET", "n", "12345"],
            ["SET", "neg", "-12345"],
            ["SET", "lead", "012"],
            ["SET", "big", "99999999999999999999"],
            ["SET", "e", "x" * 44],
            ["SET", "r", "x" * 45],
            ["SET", "empty", ""],
            ["OBJECT", "ENCODING", "n"],
            ["OBJECT", "ENCODING", "neg"],
            ["OBJECT", "ENCODING", "lead"],
            ["OBJECT", "ENCODING", "big"],
            ["OBJECT", "ENCODING", "e"],
            ["OBJECT", "ENCODING", "r"],
            ["OBJECT", "ENCODING", "empty"],
            ["OBJECT", "REFCOUNT", "n"],
            ["OBJECT", "REFCOUNT", "e"],
            ["OBJECT", "IDLETIME", "n"],
            ["OBJECT", "FREQ", "n"],
            ["OBJECT", "FOO"],
            ["OBJECT", "foo", "n"],
            ["OBJECT", "HELP"],
            ["object", "help"],
        ],
        "memory": [
            ["MEMORY", "USAGE", "nokey"],
            ["SET", "a", "hello"],
            shape("MEMORY", "USAGE", "a"),
            shape("MEMORY", "USAGE", "a", "SAMPLES", "5"),
            shape("MEMORY", "USAGE", "a", "SAMPLES", "0"),
            ["MEMORY", "USAGE", "a", "SAMPLES", "x"],
            ["MEMORY", "USAGE", "a", "SAMPLES", "-1"],
            ["MEMORY", "USAGE", "a", "SAMPLES"],
            ["MEMORY", "USAGE", "a", "FOO"],
            ["MEMORY", "USAGE", "nokey", "FOO"],
            ["MEMORY", "FOO"],
            ["MEMORY", "HELP"],
        ],
        "setbit-getbit": [
            ["SETBIT", "b", "7", "1"],
            ["SETBIT", "b", "7", "0"],
            ["SETBIT", "b", "100", "1"],
            ["GETBIT", "b", "100"],
            ["GETBIT", "b", "99"],
            ["GETBIT", "b", "1000000"],
            ["GETBIT", "nokey", "3"],
            ["GET", "b"],
            ["STRLEN", "b"],
            ["SETBIT", "b", "-1", "1"],
            ["SETBIT", "b", "1", "2"],
            ["SETBIT", "b", "x", "1"],
            ["SETBIT", "b", "1", "x"],
            ["SETBIT", "b", "3", "-1"],
            ["SETBIT", "b", "3", "01"],
            ["GETBIT", "b", "x"],
            ["GETBIT", "b", "-1"],
            ["SET", "s", "abc"],
            ["PEXPIREAT", "s", "99999999999999"],
            ["SETBIT", "s", "2", "1"],
            ["GET", "s"],
            ["PEXPIRETIME", "s"],
        ],
        "bitcount": [
            ["BITCOUNT", "nokey"],
            ["BITCOUNT", "nokey", "0"],
            ["BITCOUNT", "nokey", "a", "b"],
            ["SET", "s", "foobar"],
            ["BITCOUNT", "s"],
            ["BITCOUNT", "s", "0", "0"],
            ["BITCOUNT", "s", "1", "1"],
            ["BITCOUNT", "s", "1", "1", "BYTE"],
            ["BITCOUNT", "s", "5", "30", "BIT"],
            ["BITCOUNT", "s", "5", "30", "bit"],
            ["BITCOUNT", "s", "-2", "-1"],
            ["BITCOUNT", "s", "-1", "-2"],
            ["BITCOUNT", "s", "-1", "-2", "FOO"],
            ["BITCOUNT", "s", "-100", "-1", "BIT"],
            ["BITCOUNT", "s", "3", "1"],
            ["BITCOUNT", "s", "0", "1000"],
            ["BITCOUNT", "s", "47", "47", "BIT"],
            ["BITCOUNT", "s", "0"],
            ["BITCOUNT", "s", "0", "1", "FOO"],
            ["BITCOUNT", "s", "a", "b"],
            ["BITCOUNT", "s", "0", "b"],
            ["BITCOUNT", "s", "0", "1", "BYTE", "x"],
            ["BITCOUNT", "s", "0", "99999999999999999999"],
            ["SET", "empty", ""],
            ["BITCOUNT", "empty"],
            ["BITCOUNT", "empty", "0", "-1"],
        ],
        "bitpos": [
            ["BITPOS", "nokey", "0"],
            ["BITPOS", "nokey", "1"],
            ["BITPOS", "nokey", "1", "x"],
            ["BITPOS", "nokey", "2"],
            ["SET", "p", b"\xff\xf0\x00"],
            ["BITPOS", "p", "0"],
            ["BITPOS", "p", "1"],
            ["BITPOS", "p", "1", "2"],
            ["BITPOS", "p", "0", "0", "-1"],
            ["BITPOS", "p", "0", "0"],
            ["BITPOS", "p", "1", "7", "15", "BIT"],
            ["BITPOS", "p", "1", "1", "1", "BIT"],
            ["BITPOS", "p", "0", "5", "14", "BIT"],
            ["BITPOS", "p", "0", "1", "1", "BYTE"],
            ["BITPOS", "p", "1", "2", "1"],
            ["BITPOS", "p", "0", "-1"],
            ["BITPOS", "p", "2"],
            ["BITPOS", "p", "x"],
            ["BITPOS", "p", "1", "a"],
            ["BITPOS", "p", "1", "0", "a"],
            ["BITPOS", "p", "1", "0", "a", "FOO"],
            ["BITPOS", "p", "1", "0", "1", "FOO"],
            ["BITPOS", "p", "1", "0", "1", "BIT", "x"],
            ["SET", "z", b"\xff\xff\xff"],
            ["BITPOS", "z", "0"],
            ["BITPOS", "z", "0", "1"],
            ["BITPOS", "z", "0", "0", "-1"],
            ["BITPOS", "z", "0", "0", "-1", "BIT"],
            ["BITPOS", "z", "0", "3", "BIT"],
            ["BITPOS", "z", "1", "5"],
            ["SET", "empty", ""],
            ["BITPOS", "empty", "0"],
            ["BITPOS", "empty", "1"],
        ],
        "lcs-substr": [
            ["LCS", "nokey", "key2"],
            ["LCS", "nokey", "nokey2", "IDX"],
            ["LCS", "nokey", "nokey2", "LEN"],
            ["MSET", "key1", "ohmytext", "key2", "mynewtext"],
            ["LCS", "key1", "key2"],
            ["LCS", "key1", "key2", "LEN"],
            ["LCS", "key1", "key2", "IDX"],
            ["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4"],
            ["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
            ["LCS", "key1", "key2", "IDX", "WITHMATCHLEN"],
            ["LCS", "key1", "key2", "idx", "withmatchlen", "minmatchlen", "-5"],
            ["LCS", "key2", "key1", "IDX", "WITHMATCHLEN"],
            ["LCS", "key1", "key2", "LEN", "IDX"],
            ["LCS", "key1", "key2", "FOO"],
            ["LCS", "key1", "key2", "MINMATCHLEN"],
            ["LCS", "key1", "key2", "MINMATCHLEN", "x"],
            ["LCS", "key1", "key2", "LEN", "WITHMATCHLEN"],
            ["LCS", "key1", "key2", "WITHMATCHLEN"],
            ["MSET", "x", "GTAAGCTTACGGATCCGATTACAGGATCC", "y", "TTAGGACCGATTAGCAGGCATTAAGGC"],
            ["LCS", "x", "y"],
            ["LCS", "x", "y", "IDX", "WITHMATCHLEN"],
            ["LCS", "y", "x", "IDX", "MINMATCHLEN", "2"],
            ["MSET", "same", "aaaa", "other", "aa"],
            ["LCS", "same", "other", "IDX", "WITHMATCHLEN"],
            ["SUBSTR", "key1", "0", "3"],
            ["SUBSTR", "key1", "-3", "-1"],
            ["SUBSTR", "key1", "5", "2"],
            ["SUBSTR", "key1", "a", "1"],
            ["SUBSTR", "nokey", "0", "1"],
        ],
        "dump-restore-errors": [
            ["DUMP", "nokey"],
            ["RESTORE", "b", "0", "garbage"],
            ["SET", "a", "hello"],
            ["RESTORE", "a", "0", "garbage"],
            ["RESTORE", "b", "x", "garbage"],
            ["RESTORE", "b", "-1", "garbage"],
            ["RESTORE", "b", "0", "garbage", "FOO"],
            ["RESTORE", "b", "0", "garbage", "IDLETIME"],
            ["RESTORE", "b", "0", "garbage", "IDLETIME", "-1"],
            ["RESTORE", "b", "0", "garbage", "IDLETIME", "x"],
            ["RESTORE", "b", "0", "garbage", "IDLETIME", "5", "FREQ", "3"],
            ["RESTORE", "b", "0", "garbage", "FREQ", "3", "IDLETIME", "5"],
            ["RESTORE", "b", "0", "garbage", "IDLETIME", "5", "IDLETIME", "6"],
            ["RESTORE", "b", "0", "garbage", "FREQ", "300"],
            ["RESTORE", "b", "0", "garbage", "FREQ", "-1"],
            ["RESTORE", "b", "0", "garbage", "FREQ", "x"],
            ["RESTORE", "a", "0", "garbage", "REPLACE", "ABSTTL"],
            ["RESTORE", "a", "0", ""],
            ["RESTORE", "a", "x", "garbage", "BADOPTION"],
            ["EXISTS", "b"],
        ],
        "slowlog": [
            ["SLOWLOG", "RESET"],
            ["SLOWLOG", "LEN"],
            ["SLOWLOG", "GET"],
            ["SLOWLOG", "GET", "-1"],
            ["SLOWLOG", "GET", "x"],
            ["SLOWLOG", "GET", "-2"],
            ["SLOWLOG", "FOO"],
            ["SLOWLOG", "HELP"],
            unordered("CONFIG", "GET", "slowlog*"),
            ["CONFIG", "SET", "slowlog-max-len", "x"],
            ["CONFIG", "SET", "slowlog-max-len", "-1"],
            ["CONFIG", "SET", "slowlog-log-slower-than", "-2"],
            ["CONFIG", "SET", "slowlog-log-slower-than", "0", "slowlog-max-len", "2"],
            ["SET", "a", "b"],
            ["GET", "a"],
            shape("SLOWLOG", "GET"),
            shape("SLOWLOG", "GET", "1"),
            ["SLOWLOG", "LEN"],
            ["CONFIG", "SET", "slowlog-log-slower-than", "-1"],
            ["CONFIG", "GET", "slowlog-log-slower-than"],
            ["SLOWLOG", "RESET"],
            ["SET", "a", "b"],
            ["SLOWLOG", "LEN"],
            ["CONFIG", "SET", "slowlog-log-slower-than", "10000", "slowlog-max-len", "128"],
        ],
        "latency": [
            ["LATENCY", "LATEST"],
            ["LATENCY", "HISTORY", "command"],
            ["LATENCY", "RESET"],
            ["LATENCY", "RESET", "command", "fork"],
            ["LATENCY", "DOCTOR"],
            ["LATENCY", "GRAPH", "command"],
            ["LATENCY", "FOO"],
            ["latency", "latest"],
        ],
        "client-admin": [
            ["CLIENT", "KILL", "1.2.3.4:5"],
            ["CLIENT", "KILL", "ID", "99999"],
            ["CLIENT", "KILL", "ID", "x"],
            ["CLIENT", "KILL", "ID", "0"],
            ["CLIENT", "KILL", "ADDR", "1.2.3.4:5"],
            ["CLIENT", "KILL", "LADDR", "1.2.3.4:5"],
            ["CLIENT", "KILL", "FOO", "bar"],
            ["CLIENT", "KILL", "ID"],
            ["CLIENT", "KILL", "ID", "1", "TYPE"],
            ["CLIENT", "KILL", "TYPE", "foo"],
            ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes", "ID", "99999"],
            ["CLIENT", "KILL", "TYPE", "master"],
            ["CLIENT", "KILL", "SKIPME", "maybe"],
            ["CLIENT", "KILL", "USER", "nobody"],
            ["CLIENT", "KILL", "USER", "default", "ID", "99999"],
            ["CLIENT", "PAUSE", "x"],
            ["CLIENT", "PAUSE", "-1"],
            ["CLIENT", "PAUSE", "10", "FOO"],
            ["CLIENT", "PAUSE", "0", "WRITE"],
            ["CLIENT", "PAUSE", "0"],
            ["CLIENT", "UNPAUSE"],
            ["CLIENT", "NO-EVICT", "on"],
            ["CLIENT", "NO-EVICT", "OFF"],
            ["CLIENT", "NO-EVICT", "x"],
            ["CLIENT", "REPLY", "foo"],
            ["CLIENT", "REPLY", "ON"],
            ["PING"],
        ],
        "wait-function": [
            ["WAIT", "0", "0"],
            ["WAIT", "1", "10"],
            ["WAIT", "x", "0"],
            ["WAIT", "x", "-1"],
            ["WAIT", "0", "-1"],
            ["WAIT", "0", "x"],
            ["FUNCTION", "LIST"],
            ["FUNCTION", "FLUSH"],
            ["FUNCTION", "FLUSH", "ASYNC"],
            ["FUNCTION", "FLUSH", "sync"],
            ["FUNCTION", "FLUSH", "FOO"],
            ["FUNCTION", "LIST", "WITHCODE"],
            ["FUNCTION", "LIST", "LIBRARYNAME", "x", "WITHCODE"],
            ["FUNCTION", "LIST", "LIBRARYNAME"],
            ["FUNCTION", "LIST", "FOO"],
            ["FUNCTION", "LIST", "WITHCODE", "WITHCODE"],
            ["FUNCTION", "FOO"],
            ["MULTI"],
            ["WAIT", "1", "0"],
            ["EXEC"],
        ],
        "command-internal-hidden": [
            ["COMMAND", "INFO", "gc.apply", "gc.fwd"],
            ["COMMAND", "DOCS", "gc.swim"],
        ],
    }
)


@pytest.mark.parametrize("pair", [2, 3], indirect=True, ids=["resp2", "resp3"])
@pytest.mark.parametrize("name", list(CASES))
def test_same_replies_as_redis(name: str, pair: tuple[RawClient, RawClient]) -> None:
    run_case(CASES[name], pair)


@pytest.mark.parametrize("pair", [2, 3], indirect=True, ids=["resp2", "resp3"])
def test_client_reply_off_and_skip(pair: tuple[RawClient, RawClient]) -> None:
    """Replies that are not sent cannot be waited for one by one: send the whole
    sequence, and compare the replies that come back."""
    commands: list[list[Arg]] = [
        ["CLIENT", "REPLY", "OFF"],
        ["SET", "a", "1"],
        ["PING"],
        ["CLIENT", "REPLY", "SKIP"],
        ["CLIENT", "REPLY", "ON"],
        ["GET", "a"],
        ["CLIENT", "REPLY", "SKIP"],
        ["ECHO", "skipped"],
        ["ECHO", "sent"],
        ["CLIENT", "REPLY", "SKIP"],
        ["CLIENT", "REPLY", "SKIP"],
        ["ECHO", "skipped again"],
        ["ECHO", "last"],
        # A reply that comes later (WAIT waits for its timeout) is silenced too.
        ["CLIENT", "REPLY", "OFF"],
        ["WAIT", "1", "50"],
        ["CLIENT", "REPLY", "ON"],
        ["CLIENT", "REPLY", "SKIP"],
        ["WAIT", "1", "20"],
        ["ECHO", "after wait"],
    ]
    mine, theirs = pair
    for client in pair:
        client.send_many(commands)
    expected = [b"+OK\r\n", b"$1\r\n1\r\n", b"$4\r\nsent\r\n", b"$4\r\nlast\r\n"]
    expected += [b"+OK\r\n", b"$10\r\nafter wait\r\n"]
    assert theirs.read_replies(len(expected)) == expected
    assert mine.read_replies(len(expected)) == expected


@pytest.mark.parametrize("pair", [2], indirect=True, ids=["resp2"])
def test_dump_restore_round_trip_and_ttl(pair: tuple[RawClient, RawClient]) -> None:
    """Payloads differ between servers (ours is our own format): each restores its own."""
    for client in pair:
        client.call("SET", "src", b"\x00binary\r\nvalue")
        payload = decode(client.call("DUMP", "src")).value
        assert isinstance(payload, bytes)
        assert client.call("RESTORE", "dst", "0", payload) == b"+OK\r\n"
        assert client.call("GET", "dst") == b"$14\r\n\x00binary\r\nvalue\r\n"
        assert client.call("RESTORE", "dst", "0", payload).startswith(b"-BUSYKEY")
        assert client.call("RESTORE", "dst", "5000", payload, "REPLACE") == b"+OK\r\n"
        assert 4000 <= int(client.call("PTTL", "dst")[1:-2]) <= 5000
        reply = client.call("RESTORE", "dst", "1", payload, "REPLACE", "ABSTTL")
        assert reply == b"+OK\r\n"  # already expired: the old key is deleted, none made
        assert client.call("EXISTS", "dst") == b":0\r\n"
        bad = payload[:-1] + bytes([payload[-1] ^ 1])
        assert client.call("RESTORE", "x", "0", bad) == (
            b"-ERR DUMP payload version or checksum are wrong\r\n"
        )


def _random_commands(seed: int) -> list[list[Arg]]:
    """Random strings, ranges and options for the commands whose index arithmetic is
    easiest to get subtly wrong: BITCOUNT, BITPOS, GETBIT, SETBIT, LCS, SUBSTR."""
    rng = random.Random(seed)
    commands: list[list[Arg]] = []
    for _ in range(200):
        value = bytes(rng.choice(b"\x00\x0f\xf0\xff\x01\x80ab") for _ in range(rng.randrange(6)))
        other = bytes(rng.choice(b"abc") for _ in range(rng.randrange(12)))
        commands += [["SET", "v", value], ["SET", "w", other]]
        start, end = rng.randrange(-20, 20), rng.randrange(-20, 20)
        unit = [rng.choice(["BIT", "BYTE", "bit"])] if rng.random() < 0.5 else []
        commands += [
            ["BITCOUNT", "v", start, end, *unit],
            ["BITPOS", "v", rng.randrange(2), start, end, *unit],
            ["BITPOS", "v", rng.randrange(2), start],
            ["BITPOS", "v", rng.randrange(2)],
            ["GETBIT", "v", rng.randrange(50)],
            ["SETBIT", "v", rng.randrange(50), rng.randrange(2)],
            ["GET", "v"],
            ["SUBSTR", "w", start, end],
            ["LCS", "w", "v" if rng.random() < 0.2 else "w2"],
        ]
        commands += [
            ["SET", "w2", bytes(rng.choice(b"abc") for _ in range(rng.randrange(12)))],
            ["LCS", "w", "w2", "IDX", "WITHMATCHLEN", "MINMATCHLEN", rng.randrange(3)],
            ["LCS", "w2", "w", "IDX"],
            ["LCS", "w", "w2"],
        ]
    return commands


@pytest.mark.parametrize("pair", [2], indirect=True, ids=["resp2"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_bit_and_lcs_commands_match_redis(
    seed: int, pair: tuple[RawClient, RawClient]
) -> None:
    commands = _random_commands(seed)
    mine, theirs = pair
    mine.send_many(commands)
    theirs.send_many(commands)
    node_replies = mine.read_replies(len(commands))
    redis_replies = theirs.read_replies(len(commands))
    for argv, node_reply, redis_reply in zip(commands, node_replies, redis_replies, strict=True):
        assert node_reply == redis_reply, argv
