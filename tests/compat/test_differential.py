"""Differential tests: the same command sequences against the node and a real redis-server.

Each case runs on a fresh connection to each server after FLUSHALL, step by step
(node, then redis), in RESP2 and again after `HELLO 3`; replies are compared as raw
bytes. Where Redis itself is not deterministic (hash order, elapsed milliseconds,
cursor values) the step says how it is compared (see `support.differential`).

Sequences are data: add a case by adding a list of commands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from support import RawClient, ServerProcess, decode
from support.differential import Arg, Step, as_step, near, scan, unordered

I64_MAX = "9223372036854775807"
I64_MIN = "-9223372036854775808"
BIN_KEY = b"k\x00\r\n\xff key"
BIN_VALUE = b"\x00\r\n$3\r\n\xfe\xff*1\r\n"

# Redis arity per command: n means exactly n words (name included), -n at least n.
ARITY: dict[str, int] = {
    "echo": 2,
    "auth": -2,
    "select": 2,
    "get": 2,
    "set": -3,
    "setex": 4,
    "psetex": 4,
    "setnx": 3,
    "getset": 3,
    "getdel": 2,
    "getex": -2,
    "mget": -2,
    "mset": -3,
    "msetnx": -3,
    "del": -2,
    "unlink": -2,
    "exists": -2,
    "expire": -3,
    "pexpire": -3,
    "expireat": -3,
    "pexpireat": -3,
    "ttl": 2,
    "pttl": 2,
    "persist": 2,
    "type": 2,
    "incr": 2,
    "decr": 2,
    "incrby": 3,
    "decrby": 3,
    "incrbyfloat": 3,
    "append": 3,
    "strlen": 2,
    "getrange": 4,
    "setrange": 4,
    "keys": 2,
    "scan": -2,
    "dbsize": 1,
    "time": 1,
    "config": -2,
    "client": -2,
}


def arity_steps(name: str, arity: int) -> list[list[Arg]]:
    """Too few arguments, and too many for fixed-arity commands; "k" fills the slots."""
    words = abs(arity)
    steps: list[list[Arg]] = []
    if words >= 2:
        steps.append([name.upper(), *["k"] * (words - 2)])
    if arity > 0:
        steps.append([name.upper(), *["k"] * words])
    return steps


ARITY_CASES: dict[str, list[list[Arg]]] = {
    f"arity-{name}": arity_steps(name, arity) for name, arity in ARITY.items()
}

ARITY_CASES["arity-misc"] = [
    ["PING", "a", "b"],
    ["GeT"],  # the error names the command in lower case, whatever the client sent
    ["gEt", "a", "b"],
    ["Mset", "a"],
    ["MSET", "a", "1", "b"],
    ["MSETNX", "a", "1", "b"],
    ["CONFIG", "GET"],
    ["CONFIG", "SET", "maxmemory"],
    ["CLIENT", "SETNAME"],
    ["CLIENT", "SETNAME", "a", "b"],
    ["CLIENT", "GETNAME", "x"],
    ["CLIENT", "ID", "x"],
    ["COMMAND", "COUNT", "x"],
    ["EXPIRE", "k"],
    ["GETEX"],
]

CASES: dict[str, list[Step | Sequence[Arg]]] = {
    "ping-echo": [
        ["PING"],
        ["ping"],
        ["PING", "hello"],
        ["PING", ""],
        ["PING", "a\r\nb"],
        ["ECHO", "hello world"],
        ["ECHO", ""],
        ["ECHO", BIN_VALUE],
    ],
    "select": [
        ["SELECT", "0"],
        ["SELECT", "16"],
        ["SELECT", "-1"],
        ["SELECT", "x"],
        ["SELECT", "99999999999999999999"],
        ["SELECT", "0"],
        ["SET", "k", "v"],
        ["GET", "k"],
    ],
    "unknown-commands": [
        ["FOO"],
        ["foo", "a", "b"],
        ["FOO", "a b", "c"],
        ["FOO", "a\r\nb"],  # CR and LF become spaces in error texts
        ["FOO", "it's"],
        ["FOO", b"\xff\xfe"],
        ["X" * 200, "a"],  # the name is cut at 128 bytes
        ["FOO", "a" * 200, "b"],  # the argument list is cut at 128 bytes
        ["FOO", *["abcdefghijklmnopqrst"] * 10],
        ["", "a"],
        ["PING"],
    ],
    "set-get-basic": [
        ["GET", "k"],
        ["SET", "k", "v"],
        ["GET", "k"],
        ["set", "k", "v2"],
        ["GET", "k"],
        ["STRLEN", "k"],
        ["TYPE", "k"],
        ["TYPE", "missing"],
        ["EXISTS", "k"],
        ["DBSIZE"],
        ["SET", "k", ""],
        ["GET", "k"],
        ["STRLEN", "k"],
        ["EXISTS", "k"],
    ],
    "set-nx-xx-get": [
        ["SET", "k", "v", "XX"],
        ["EXISTS", "k"],
        ["SET", "k", "v", "NX"],
        ["SET", "k", "v2", "NX"],
        ["GET", "k"],
        ["SET", "k", "v3", "XX"],
        ["GET", "k"],
        ["SET", "k", "v4", "XX", "GET"],
        ["SET", "k", "v5", "GET"],
        ["SET", "k2", "v", "GET"],
        ["SET", "k3", "v", "NX", "GET"],
        ["SET", "k3", "other", "NX", "GET"],
        ["GET", "k3"],
        ["SET", "k4", "v", "XX", "GET"],
        ["EXISTS", "k4"],
        ["SET", "k", "v6", "nx", "get"],
        ["SET", "k", "v7", "GET", "GET"],
        ["SET", "k", "v8", "NX", "NX"],
        ["SET", "k", "v9", "XX", "PX", "100000", "GET"],
        ["GET", "k"],
    ],
    "set-syntax-errors": [
        ["SET", "k", "v", "NX", "XX"],
        ["SET", "k", "v", "XX", "NX"],
        ["SET", "k", "v", "EX", "10", "PX", "10"],
        ["SET", "k", "v", "PX", "10", "EX", "10"],
        ["SET", "k", "v", "EXAT", "4102444800", "PXAT", "4102444800000"],
        ["SET", "k", "v", "EX", "10", "EXAT", "4102444800"],
        ["SET", "k", "v", "KEEPTTL", "EX", "10"],
        ["SET", "k", "v", "EX", "10", "KEEPTTL"],
        ["SET", "k", "v", "PXAT", "4102444800000", "KEEPTTL"],
        ["SET", "k", "v", "FOO"],
        ["SET", "k", "v", "EX"],
        ["SET", "k", "v", "NX", "EX"],
        ["SET", "k", "v", "EX", "abc"],
        ["SET", "k", "v", "EX", "1.5"],
        ["SET", "k", "v", "PX", "1.5"],
        ["SET", "k", "v", "EX", " 10"],
        ["SET", "k", "v", "EX", "99999999999999999999"],
        ["EXISTS", "k"],
        ["SET", "k", "v", "EX", "10", "EX", "20"],
        ["SET", "k", "v", "KEEPTTL", "KEEPTTL"],
        ["SET", "k", "v", "ex", "10"],
        ["TTL", "k"],
    ],
    "set-invalid-expire": [
        ["SET", "k", "v", "EX", "0"],
        ["SET", "k", "v", "EX", "-1"],
        ["SET", "k", "v", "PX", "0"],
        ["SET", "k", "v", "PX", "-1"],
        ["SET", "k", "v", "EXAT", "0"],
        ["SET", "k", "v", "EXAT", "-1"],
        ["SET", "k", "v", "PXAT", "0"],
        ["SET", "k", "v", "EX", "9999999999999999"],
        ["SET", "k", "v", "EX", I64_MAX],
        ["SET", "k", "v", "PX", I64_MAX],
        ["SET", "k", "v", "EX", I64_MIN],
        ["EXISTS", "k"],
        ["SETEX", "k", "0", "v"],
        ["SETEX", "k", "-1", "v"],
        ["SETEX", "k", "abc", "v"],
        ["SETEX", "k", I64_MAX, "v"],
        ["PSETEX", "k", "0", "v"],
        ["PSETEX", "k", "-5", "v"],
        ["PSETEX", "k", I64_MAX, "v"],
        ["EXISTS", "k"],
    ],
    "set-expire-valid": [
        ["SET", "k", "v", "EX", "100"],
        ["TTL", "k"],
        near("PTTL", "k", tolerance=1000),
        ["SET", "k", "v", "PX", "100000"],
        ["TTL", "k"],
        ["SET", "k", "v", "EXAT", "4102444800"],
        near("TTL", "k", tolerance=2),
        ["SET", "k", "v", "KEEPTTL"],
        near("TTL", "k", tolerance=2),
        ["SET", "k", "v2", "XX", "KEEPTTL", "GET"],
        near("PTTL", "k", tolerance=2000),
        ["SET", "k", "v", "PXAT", "4102444800000"],
        near("PTTL", "k", tolerance=2000),
        ["SET", "k", "v"],
        ["TTL", "k"],
        ["SET", "k", "v", "EX", "922337203685477"],
        near("TTL", "k", tolerance=2),
        ["SET", "gone", "v", "EXAT", "1"],
        ["EXISTS", "gone"],
        ["GET", "gone"],
        ["SET", "gone", "v", "PXAT", "1"],
        ["EXISTS", "gone"],
        ["TTL", "gone"],
        ["DBSIZE"],
    ],
    "setex-psetex-setnx": [
        ["SETEX", "k", "10", "v"],
        ["TTL", "k"],
        ["GET", "k"],
        ["PSETEX", "p", "100000", "v"],
        ["TTL", "p"],
        ["SETNX", "n", "1"],
        ["SETNX", "n", "2"],
        ["GET", "n"],
        ["TTL", "n"],
    ],
    "getset-getdel": [
        ["GETSET", "k", "a"],
        ["GETSET", "k", "b"],
        ["GET", "k"],
        ["SET", "t", "v", "EX", "100"],
        ["GETSET", "t", "w"],
        ["TTL", "t"],  # GETSET drops the TTL
        ["GETDEL", "k"],
        ["GETDEL", "k"],
        ["EXISTS", "k"],
        ["GETDEL", "missing"],
    ],
    "getex": [
        ["GETEX", "missing"],
        ["GETEX", "missing", "EX", "10"],
        ["GETEX", "missing", "PX", "0"],  # the key is looked up before the option
        ["SET", "k", "v"],
        ["GETEX", "k"],
        ["GETEX", "k", "EX", "100"],
        ["TTL", "k"],
        ["GETEX", "k", "PERSIST"],
        ["TTL", "k"],
        ["GETEX", "k", "PX", "100000"],
        ["TTL", "k"],
        ["GETEX", "k", "EXAT", "4102444800"],
        near("TTL", "k", tolerance=2),
        ["GETEX", "k", "PXAT", "4102444800000"],
        near("TTL", "k", tolerance=2),
        ["GETEX", "k", "EX", "0"],
        ["GETEX", "k", "PX", "-1"],
        ["GETEX", "k", "EX", "abc"],
        ["GETEX", "k", "EX", "10", "PX", "10"],
        ["GETEX", "k", "PERSIST", "EX", "10"],
        ["GETEX", "k", "EX", "10", "PERSIST"],
        ["GETEX", "k", "FOO"],
        ["GETEX", "k", "EX"],
        ["GETEX", "k", "PX", I64_MAX],
        ["GETEX", "k", "EX", "9223372036854775"],
        ["GETEX", "k", "PERSIST", "PERSIST"],
        ["GETEX", "k", "EX", "100", "EX", "100"],
        ["GETEX", "k", "EXAT", "1"],  # in the past: returns the value, then deletes
        ["EXISTS", "k"],
    ],
    "mset-mget-msetnx": [
        ["MSET", "a", "1", "b", "2"],
        ["MGET", "a", "b", "c", "a"],
        ["MSET", "a", "x", "a", "y"],
        ["GET", "a"],
        ["MSETNX", "a", "1", "c", "3"],
        ["EXISTS", "c"],
        ["MSETNX", "c", "3", "d", "4"],
        ["MGET", "c", "d"],
        ["MSETNX", "e", "1", "e", "2"],
        ["GET", "e"],
        ["SET", "t", "v", "EX", "100"],
        ["MSET", "t", "w"],
        ["TTL", "t"],  # MSET drops the TTL
        ["MGET", "missing"],
        ["DBSIZE"],
    ],
    "del-exists-unlink": [
        ["MSET", "a", "1", "b", "2", "c", "3"],
        ["DEL", "a", "a", "a"],
        ["EXISTS", "b", "b", "b", "missing"],
        ["EXISTS", "missing"],
        ["DEL", "missing"],
        ["UNLINK", "b", "c", "b"],
        ["UNLINK", "b"],
        ["DBSIZE"],
    ],
    "incr-decr": [
        ["INCR", "n"],
        ["INCR", "n"],
        ["DECR", "n"],
        ["INCRBY", "n", "10"],
        ["INCRBY", "n", "-20"],
        ["DECRBY", "n", "5"],
        ["DECRBY", "n", "-5"],
        ["GET", "n"],
        ["TYPE", "n"],
        ["DECR", "new"],
        ["INCRBY", "new2", "-5"],
        ["INCRBY", "n", "abc"],
        ["INCRBY", "n", "1.5"],
        ["INCRBY", "n", " 1"],
        ["INCRBY", "n", "9223372036854775808"],
        ["SET", "t", "5", "EX", "100"],
        ["INCR", "t"],
        ["TTL", "t"],  # INCR keeps the TTL
        ["SET", "n", "-1"],
        ["INCR", "n"],
        ["INCRBY", "min", I64_MIN],
        ["DECR", "min"],
        ["SET", "max", I64_MAX],
        ["INCR", "max"],
        ["INCRBY", "max", "1"],
        ["DECRBY", "max", "-1"],
        ["DECRBY", "zero", I64_MIN],
        ["GET", "max"],
    ],
    "incr-not-integer": [
        ["SET", "s", "abc"],
        ["INCR", "s"],
        ["SET", "s", "1.5"],
        ["INCR", "s"],
        ["SET", "s", " 1"],
        ["INCR", "s"],
        ["SET", "s", "1 "],
        ["INCR", "s"],
        ["SET", "s", "+1"],
        ["INCR", "s"],
        ["SET", "s", "007"],
        ["DECR", "s"],
        ["SET", "s", "-0"],
        ["INCR", "s"],
        ["SET", "s", ""],
        ["INCR", "s"],
        ["SET", "s", "99999999999999999999"],
        ["INCR", "s"],
        ["SET", "s", b"1\x00"],
        ["INCRBY", "s", "1"],
        ["GET", "s"],
    ],
    "incrbyfloat": [
        ["INCRBYFLOAT", "f", "10.5"],
        ["INCRBYFLOAT", "f", "3.0e3"],
        ["GET", "f"],
        ["INCRBYFLOAT", "g", "5.0e3"],
        ["INCRBYFLOAT", "h", "1.0"],
        ["INCRBYFLOAT", "i", "0.1"],
        ["INCRBYFLOAT", "i", "0.2"],
        ["INCRBYFLOAT", "j", "-0"],
        ["INCRBYFLOAT", "k", "1e-5"],
        ["INCRBYFLOAT", "l", "1."],
        ["INCRBYFLOAT", "m", ".5"],
        ["INCRBYFLOAT", "m", "-1.5"],
        ["INCRBYFLOAT", "m", "-0.5"],
        ["SET", "n", "10"],
        ["INCRBYFLOAT", "n", "1.5"],
        ["INCR", "n"],
        ["SET", "o", "1e3"],
        ["INCRBYFLOAT", "o", "0"],
        ["GET", "o"],
        ["SET", "t", "1", "EX", "100"],
        ["INCRBYFLOAT", "t", "1"],
        ["TTL", "t"],
    ],
    "incrbyfloat-errors": [
        ["INCRBYFLOAT", "f", "inf"],
        ["INCRBYFLOAT", "f", "-inf"],
        ["INCRBYFLOAT", "f", "nan"],
        ["INCRBYFLOAT", "f", "abc"],
        ["INCRBYFLOAT", "f", ""],
        ["INCRBYFLOAT", "f", " 1"],
        ["INCRBYFLOAT", "f", "1 "],
        ["EXISTS", "f"],
        ["SET", "s", "abc"],
        ["INCRBYFLOAT", "s", "1"],
        ["SET", "s", " 1"],
        ["INCRBYFLOAT", "s", "1"],
        ["SET", "s", ""],
        ["INCRBYFLOAT", "s", "1"],
        ["GET", "s"],
    ],
    "append-strlen": [
        ["APPEND", "k", "abc"],
        ["APPEND", "k", "def"],
        ["APPEND", "k", ""],
        ["APPEND", "k", BIN_VALUE],
        ["GET", "k"],
        ["STRLEN", "k"],
        ["STRLEN", "missing"],
        ["APPEND", "e", ""],
        ["EXISTS", "e"],
        ["SET", "n", "10"],
        ["APPEND", "n", "5"],
        ["INCR", "n"],
        ["SET", "t", "v", "EX", "100"],
        ["APPEND", "t", "w"],
        ["TTL", "t"],
    ],
    "getrange": [
        ["SET", "s", "Hello"],
        ["GETRANGE", "s", "0", "-1"],
        ["GETRANGE", "s", "0", "0"],
        ["GETRANGE", "s", "-3", "-1"],
        ["GETRANGE", "s", "1", "3"],
        ["GETRANGE", "s", "5", "10"],
        ["GETRANGE", "s", "4", "100"],
        ["GETRANGE", "s", "-100", "-50"],
        ["GETRANGE", "s", "-100", "100"],
        ["GETRANGE", "s", "3", "1"],
        ["GETRANGE", "s", "-1", "-5"],
        ["GETRANGE", "s", "0", I64_MAX],
        ["GETRANGE", "s", I64_MIN, "-1"],
        ["GETRANGE", "s", "a", "b"],
        ["GETRANGE", "s", "0", "99999999999999999999"],
        ["GETRANGE", "missing", "0", "-1"],
        ["SET", "e", ""],
        ["GETRANGE", "e", "0", "-1"],
        ["GETRANGE", "e", "-1", "0"],
    ],
    "setrange": [
        ["SET", "s", "Hello"],
        ["SETRANGE", "s", "1", "EL"],
        ["GET", "s"],
        ["SETRANGE", "s", "10", "X"],
        ["GET", "s"],
        ["SETRANGE", "s", "-1", "X"],
        ["SETRANGE", "s", "abc", "X"],
        ["SETRANGE", "s", "536870912", "X"],
        ["SETRANGE", "s", "999999999999", "x"],
        ["SETRANGE", "s", "536870911", ""],
        ["SETRANGE", "new", "0", ""],
        ["EXISTS", "new"],
        ["SETRANGE", "new", "536870912", ""],
        ["SETRANGE", "new2", "3", "ab"],
        ["GET", "new2"],
        ["SETRANGE", "new3", "0", BIN_VALUE],
        ["GET", "new3"],
        ["SET", "t", "v", "EX", "100"],
        ["SETRANGE", "t", "0", "w"],
        ["TTL", "t"],
    ],
    "binary-keys-values": [
        ["SET", BIN_KEY, BIN_VALUE],
        ["GET", BIN_KEY],
        ["STRLEN", BIN_KEY],
        ["EXISTS", BIN_KEY],
        ["SET", "", "empty key"],
        ["GET", ""],
        ["SET", "empty", ""],
        ["GET", "empty"],
        ["MGET", BIN_KEY, "", "empty", b"\x00"],
        ["SET", "big", b"\x00\xff" * 50_000],
        ["GET", "big"],
        ["GETRANGE", "big", "99998", "-1"],
        ["SET", "utf8", "héllo wörld ✓"],
        ["GET", "utf8"],
        ["STRLEN", "utf8"],
        ["APPEND", BIN_KEY, b"\r\n"],
        ["GETDEL", BIN_KEY],
        ["DEL", BIN_KEY, ""],
        ["DBSIZE"],
    ],
    "expire-options": [
        ["SET", "s", "v"],
        ["EXPIRE", "s", "100", "XX"],
        ["EXPIRE", "s", "10", "GT"],
        ["TTL", "s"],
        ["EXPIRE", "s", "100", "NX"],
        ["EXPIRE", "s", "100", "NX"],
        ["EXPIRE", "s", "200", "XX"],
        ["TTL", "s"],
        ["EXPIRE", "s", "50", "GT"],
        ["EXPIRE", "s", "500", "GT"],
        ["TTL", "s"],
        ["EXPIRE", "s", "1000", "LT"],
        ["EXPIRE", "s", "10", "LT"],
        ["TTL", "s"],
        ["EXPIRE", "s", "100", "gt"],
        ["PERSIST", "s"],
        ["EXPIRE", "s", "100", "LT"],  # no TTL counts as infinite: LT applies
        ["TTL", "s"],
        ["EXPIRE", "s", "10", "NX", "XX"],
        ["EXPIRE", "s", "10", "NX", "GT"],
        ["EXPIRE", "s", "10", "NX", "LT"],
        ["EXPIRE", "s", "10", "GT", "LT"],
        ["EXPIRE", "s", "10", "FOO"],
        ["EXPIRE", "s", "10", "1"],
        ["PEXPIRE", "s", "100000", "XX"],
        ["TTL", "s"],
        ["EXPIRE", "missing", "10"],
        ["EXPIRE", "missing", "10", "XX"],
        ["PEXPIRE", "missing", "10"],
        ["EXPIREAT", "missing", "4102444800", "NX"],
    ],
    "expire-delete": [
        ["MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6", "h", "8"],
        ["EXPIRE", "a", "0"],
        ["EXPIRE", "b", "-5"],
        ["PEXPIRE", "c", "0"],
        ["EXPIREAT", "d", "1"],
        ["PEXPIREAT", "e", "0"],
        ["EXPIRE", "f", "-1", "GT"],  # -1 is not greater than "no TTL": nothing happens
        ["EXISTS", "f"],
        ["EXPIRE", "f", "-1", "NX"],
        ["MGET", "a", "b", "c", "d", "e", "f"],
        ["TTL", "a"],
        ["DBSIZE"],
        ["EXPIRE", "h", "-1", "LT"],  # no TTL counts as infinite: LT applies, and deletes
        ["EXISTS", "h"],
        ["SET", "g", "v", "EX", "100"],
        ["EXPIRE", "g", "0", "GT"],
        ["EXPIRE", "g", "0", "XX"],
        ["EXISTS", "g"],
    ],
    "expire-invalid": [
        ["SET", "s", "v"],
        ["EXPIRE", "s", "abc"],
        ["EXPIRE", "s", "1.5"],
        ["EXPIRE", "s", I64_MAX],
        ["EXPIRE", "s", "9223372036854775"],
        ["EXPIRE", "s", I64_MIN],
        ["PEXPIRE", "s", I64_MAX],
        ["EXPIREAT", "s", I64_MAX],
        ["TTL", "s"],
        ["PEXPIREAT", "s", I64_MAX],
        near("TTL", "s", tolerance=2),
        ["EXPIRE", "s", "99999999999999999999"],
    ],
    "ttl-pttl-persist": [
        ["TTL", "missing"],
        ["PTTL", "missing"],
        ["SET", "p", "v"],
        ["TTL", "p"],
        ["PTTL", "p"],
        ["PERSIST", "p"],
        ["PERSIST", "missing"],
        ["EXPIRE", "p", "100"],
        ["TTL", "p"],
        near("PTTL", "p", tolerance=1000),
        ["PEXPIRE", "p", "5700"],
        ["TTL", "p"],  # rounded to the nearest second, not truncated
        ["EXPIREAT", "p", "4102444800"],
        near("TTL", "p", tolerance=2),
        ["PERSIST", "p"],
        ["PERSIST", "p"],
        ["TTL", "p"],
        ["TYPE", "p"],
        ["DEL", "p"],
        ["TYPE", "p"],
        ["TTL", "p"],
    ],
    "keys-patterns": [
        ["KEYS", "*"],
        [
            "MSET",
            *("hello", "1", "hallo", "2", "hxllo", "3", "hllo", "4", "heeeello", "5"),
            *("h*llo", "6", "h\\llo", "7", "h?llo", "8", "[x]", "9", "a:b", "10"),
            *(BIN_KEY, "11", "", "12"),
        ],
        unordered("KEYS", "*"),
        unordered("KEYS", "h?llo"),
        unordered("KEYS", "h*llo"),
        unordered("KEYS", "h[ae]llo"),
        unordered("KEYS", "h[^e]llo"),
        unordered("KEYS", "h[a-e]llo"),
        unordered("KEYS", "h\\*llo"),
        unordered("KEYS", "h\\?llo"),
        unordered("KEYS", "h\\\\llo"),
        unordered("KEYS", "\\[x\\]"),
        unordered("KEYS", "[x]"),
        unordered("KEYS", "h[e"),
        unordered("KEYS", "h[a-"),
        unordered("KEYS", "a:*"),
        unordered("KEYS", "k*"),
        unordered("KEYS", ""),
        unordered("KEYS", "nomatch*"),
    ],
    "scan": [
        scan(),
        ["MSET", *(f"key:{i}" if n == 0 else str(i) for i in range(30) for n in range(2))],
        ["MSET", "hello", "1", "hallo", "2", "h*llo", "3", "other", "4", BIN_KEY, "5"],
        scan(),
        scan("COUNT", "1"),
        scan("COUNT", "7", "MATCH", "key:1*"),
        scan("MATCH", "h?llo"),
        scan("MATCH", "h\\*llo"),
        scan("match", "key:2?", "count", "3"),
        scan("TYPE", "string"),
        scan("TYPE", "STRING", "MATCH", "h*"),
        scan("TYPE", "list"),
        scan("TYPE", "nosuchtype"),
        scan("MATCH", "nomatch*", "COUNT", "5"),
        scan("MATCH", "a", "MATCH", "key:*"),
        ["SCAN", "abc"],
        ["SCAN", "18446744073709551616"],
        ["SCAN", "0", "COUNT", "0"],
        ["SCAN", "0", "COUNT", "-1"],
        ["SCAN", "0", "COUNT", "x"],
        ["SCAN", "0", "MATCH"],
        ["SCAN", "0", "TYPE"],
        ["SCAN", "0", "FOO"],
        ["SCAN", "0", "FOO", "bar"],
    ],
    "dbsize-flush": [
        ["DBSIZE"],
        ["MSET", "a", "1", "b", "2"],
        ["DBSIZE"],
        ["FLUSHDB"],
        ["DBSIZE"],
        ["GET", "a"],
        ["MSET", "a", "1", "b", "2"],
        ["FLUSHALL"],
        ["DBSIZE"],
        ["SET", "a", "1"],
        ["FLUSHDB", "ASYNC"],
        ["FLUSHDB", "SYNC"],
        ["FLUSHALL", "async"],
        ["FLUSHDB", "FOO"],
        ["FLUSHALL", "a", "b"],
        ["DBSIZE"],
    ],
    "client-names": [
        ["CLIENT", "GETNAME"],
        ["CLIENT", "SETNAME", "ok-name_1"],
        ["CLIENT", "GETNAME"],
        ["CLIENT", "SETNAME", "a b"],
        ["CLIENT", "SETNAME", "a\nb"],
        ["CLIENT", "SETNAME", "é"],
        ["CLIENT", "GETNAME"],
        ["CLIENT", "SETNAME", ""],  # an empty name clears the name
        ["CLIENT", "GETNAME"],
        ["client", "setname", "lower"],
        ["CLIENT", "GETNAME"],
        ["CLIENT", "FOO"],
        ["CLIENT", "foo", "bar"],
    ],
    "config-errors": [
        ["CONFIG", "GET", "nosuchparameter"],
        ["CONFIG", "SET", "nosuchparameter", "bar"],
        ["CONFIG", "FOO"],
    ],
    "command-errors": [
        ["COMMAND", "FOO"],
    ],
    "auth-without-password": [
        ["AUTH", "x"],
        ["AUTH", "a", "b", "c"],
        ["AUTH", "nosuchuser", "x"],
        ["PING"],
    ],
    "hello-errors": [
        ["HELLO", "4"],
        ["HELLO", "1"],
        ["HELLO", "0"],
        ["HELLO", "-1"],
        ["HELLO", "foo"],
        ["HELLO", "3", "FOO"],
        ["HELLO", "2", "AUTH"],
        ["HELLO", "3", "AUTH", "default"],
        ["HELLO", "3", "SETNAME"],
        ["HELLO", "3", "SETNAME", "a b"],
        ["CLIENT", "GETNAME"],
        ["GET", "missing"],  # the protocol did not change
    ],
}

ALL_CASES: dict[str, list[Step | Sequence[Arg]]] = {**CASES, **ARITY_CASES}

HELLO_KEYS = {b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"}


def check_hello_shape(node: bytes, redis: bytes, protocol: int) -> None:
    """HELLO differs in server name, version and id; compare everything else."""
    mine, theirs = decode(node), decode(redis)
    assert mine.kind == theirs.kind == ("%" if protocol == 3 else "*"), (node, redis)
    mine_fields, their_fields = mine.pairs, theirs.pairs
    assert set(mine_fields) == set(their_fields) == HELLO_KEYS
    assert mine_fields[b"proto"] == theirs.pairs[b"proto"]
    for field in HELLO_KEYS:
        assert mine_fields[field].kind == their_fields[field].kind, field
    assert mine_fields[b"role"] == their_fields[b"role"]
    assert mine_fields[b"modules"] == their_fields[b"modules"]


@pytest.fixture
def pair(
    node: ServerProcess, redis_server: ServerProcess, request: pytest.FixtureRequest
) -> Iterator[tuple[RawClient, RawClient]]:
    """Fresh connections to the node and to redis, both servers flushed."""
    protocol: int = request.param
    with node.raw() as mine, redis_server.raw() as theirs:
        for client in (mine, theirs):
            assert client.call("FLUSHALL") == b"+OK\r\n"
        if protocol == 3:
            check_hello_shape(mine.call("HELLO", "3"), theirs.call("HELLO", "3"), 3)
        yield mine, theirs


def run_case(steps: Sequence[Step | Sequence[Arg]], pair: tuple[RawClient, RawClient]) -> None:
    mine, theirs = pair
    for number, item in enumerate(steps, 1):
        step = as_step(item)
        node_reply, redis_reply = step.run(mine), step.run(theirs)
        try:
            step.check(node_reply, redis_reply)
        except AssertionError:
            pytest.fail(
                f"step {number}: {step}\n"
                f"  node:  {node_reply!r:.600}\n"
                f"  redis: {redis_reply!r:.600}"
            )


@pytest.mark.parametrize("pair", [2, 3], indirect=True, ids=["resp2", "resp3"])
@pytest.mark.parametrize("name", list(ALL_CASES))
def test_same_replies_as_redis(name: str, pair: tuple[RawClient, RawClient]) -> None:
    run_case(ALL_CASES[name], pair)


@pytest.mark.parametrize("pair", [2], indirect=True, ids=["resp2"])
def test_pipelined_sequence_matches_redis(pair: tuple[RawClient, RawClient]) -> None:
    """Every case's commands written in one go: the reply stream must be the same."""
    mine, theirs = pair
    commands = [
        as_step(item).argv
        for name in ("set-nx-xx-get", "incr-decr", "getrange", "unknown-commands", "arity-get")
        for item in ALL_CASES[name]
    ]
    mine.send_many(commands)
    theirs.send_many(commands)
    assert mine.read_replies(len(commands)) == theirs.read_replies(len(commands))


@pytest.mark.parametrize("pair", [2], indirect=True, ids=["resp2"])
def test_hello_switches_protocol_both_ways(pair: tuple[RawClient, RawClient]) -> None:
    mine, theirs = pair
    for protocol in (3, 2, 3):
        check_hello_shape(mine.call("HELLO", protocol), theirs.call("HELLO", protocol), protocol)
        for argv in (["GET", "missing"], ["CONFIG", "GET", "nosuchparameter"], ["PING"]):
            assert mine.call(*argv) == theirs.call(*argv), (protocol, argv)
    # HELLO with no version reports the current protocol without changing it.
    check_hello_shape(mine.call("HELLO"), theirs.call("HELLO"), 3)
    setname = ["HELLO", "2", "SETNAME", "named"]
    check_hello_shape(mine.call(*setname), theirs.call(*setname), 2)
    assert mine.call("CLIENT", "GETNAME") == theirs.call("CLIENT", "GETNAME") == b"$5\r\nnamed\r\n"
