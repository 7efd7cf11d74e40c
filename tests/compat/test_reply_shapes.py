"""Replies whose content legitimately differs from Redis (ids, clocks, server facts):
their shape and the facts clients rely on are checked against the node alone.

Also the few places where geocache deliberately differs from Redis (strings only):
those tests are `geocache_only`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from support import RawClient, Reply, ServerProcess, decode

# Every command of DESIGN.md section 9 that Redis also has: COMMAND INFO must know them.
_CONTRACT = """
ping echo hello auth select quit get set setex psetex setnx getset getdel getex mget
mset msetnx del unlink exists expire pexpire expireat pexpireat ttl pttl persist type
incr decr incrby decrby incrbyfloat append strlen getrange setrange keys scan dbsize
flushdb flushall info config client command time
"""
CONTRACT_COMMANDS = tuple(_CONTRACT.split())

# (name, arity, first key, last key, key step) as Redis reports them; cluster-aware
# clients route commands by these positions.
KEY_POSITIONS = [
    ("get", 2, 1, 1, 1),
    ("set", -3, 1, 1, 1),
    ("mget", -2, 1, -1, 1),
    ("mset", -3, 1, -1, 2),
    ("del", -2, 1, -1, 1),
    ("expire", -3, 1, 1, 1),
    ("ping", -1, 0, 0, 0),
    ("rename", 3, 1, 2, 1),
    ("renamenx", 3, 1, 2, 1),
    ("copy", -3, 1, 2, 1),
    ("lcs", -3, 1, 2, 1),
    ("touch", -2, 1, -1, 1),
    ("move", 3, 1, 1, 1),
    ("restore", -4, 1, 1, 1),
    ("dump", 2, 1, 1, 1),
    ("setbit", 4, 1, 1, 1),
    ("bitpos", -3, 1, 1, 1),
    ("expiretime", 2, 1, 1, 1),
    ("select", 2, 0, 0, 0),
    ("swapdb", 3, 0, 0, 0),
    ("randomkey", 1, 0, 0, 0),
    ("wait", 3, 0, 0, 0),
]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def client(node: ServerProcess, request: pytest.FixtureRequest) -> Iterator[RawClient]:
    with node.raw() as raw:
        assert raw.call("FLUSHALL") == b"+OK\r\n"
        if request.param == 3:
            assert decode(raw.call("HELLO", "3")).pairs[b"proto"].value == 3
        yield raw


def text_of(reply: Reply) -> str:
    """INFO and CLIENT LIST: a bulk string in RESP2, a `txt` verbatim string in RESP3."""
    assert reply.kind in "$=", reply
    assert isinstance(reply.value, bytes)
    if reply.kind == "=":
        assert reply.value.startswith(b"txt:"), reply
        return reply.value[4:].decode()
    return reply.value.decode()


def info_sections(text: str) -> dict[str, dict[str, str]]:
    """Parse INFO text: `# Section` headers, `field:value` lines, CRLF line ends."""
    assert text.endswith("\r\n"), text[-20:]
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.split("\r\n"):
        if line.startswith("# "):
            current = sections.setdefault(line[2:], {})
        elif line:
            assert current is not None and ":" in line, line
            field, _, value = line.partition(":")
            current[field] = value
    return sections


def test_time_is_seconds_and_microseconds_now(client: RawClient) -> None:
    before = time.time()
    reply = decode(client.call("TIME"))
    after = time.time()
    assert reply.kind == "*" and len(reply.items) == 2
    seconds, micros = reply.items
    assert seconds.kind == micros.kind == "$"
    assert isinstance(seconds.value, bytes) and isinstance(micros.value, bytes)
    assert seconds.value.isdigit() and micros.value.isdigit()
    now = int(seconds.value) + int(micros.value) / 1e6
    assert 0 <= int(micros.value) < 1_000_000
    assert before - 1 <= now <= after + 1


@pytest.mark.parametrize("pexpire_ms", [5_900, 100_700, 2_400])
def test_ttl_rounds_to_the_nearest_second(client: RawClient, pexpire_ms: int) -> None:
    """TTL is (ms + 500) // 1000 in Redis, not ms // 1000."""
    assert client.call("SET", "k", "v") == b"+OK\r\n"
    assert client.call("PEXPIRE", "k", pexpire_ms) == b":1\r\n"
    before_ms = decode(client.call("PTTL", "k")).value
    ttl_s = decode(client.call("TTL", "k")).value
    after_ms = decode(client.call("PTTL", "k")).value
    assert isinstance(before_ms, int) and isinstance(ttl_s, int) and isinstance(after_ms, int)
    assert pexpire_ms >= before_ms >= after_ms > pexpire_ms - 2_000
    assert (after_ms + 500) // 1000 <= ttl_s <= (before_ms + 500) // 1000


def test_client_id_is_unique_and_listed(node: ServerProcess, client: RawClient) -> None:
    my_id = decode(client.call("CLIENT", "ID"))
    assert my_id.kind == ":" and isinstance(my_id.value, int) and my_id.value > 0
    with node.raw() as other:
        other_id = decode(other.call("CLIENT", "ID")).value
        assert isinstance(other_id, int) and other_id > my_id.value
        assert client.call("CLIENT", "SETNAME", "shape-test") == b"+OK\r\n"
        listing = text_of(decode(client.call("CLIENT", "LIST")))
    assert listing.endswith("\n")
    lines = [dict(f.split("=", 1) for f in line.split(" ")) for line in listing.splitlines()]
    mine = [line for line in lines if line.get("id") == str(my_id.value)]
    assert len(mine) == 1, listing
    assert mine[0]["name"] == "shape-test"
    assert mine[0]["addr"] == "{}:{}".format(*client.sock.getsockname())
    assert any(line.get("id") == str(other_id) for line in lines), listing


def test_info_has_redis_sections_and_keyspace(client: RawClient) -> None:
    assert client.call("MSET", "a", "1", "b", "2") == b"+OK\r\n"
    assert client.call("SET", "c", "3", "EX", "100") == b"+OK\r\n"
    sections = info_sections(text_of(decode(client.call("INFO"))))
    for name in ("Server", "Clients", "Memory", "Stats", "Keyspace"):
        assert name in sections, sorted(sections)
    assert sections["Server"]["redis_version"].count(".") == 2
    assert int(sections["Clients"]["connected_clients"]) >= 1
    assert int(sections["Memory"]["used_memory"]) > 0
    for field in ("total_commands_processed", "keyspace_hits", "keyspace_misses"):
        assert int(sections["Stats"][field]) >= 0
    assert sections["Keyspace"]["db0"].startswith("keys=3,expires=1,")


def test_info_section_argument(client: RawClient) -> None:
    empty = info_sections(text_of(decode(client.call("INFO", "keyspace"))))
    assert empty == {"Keyspace": {}}
    assert client.call("SET", "a", "1") == b"+OK\r\n"
    keyspace = info_sections(text_of(decode(client.call("INFO", "keyspace"))))
    assert list(keyspace) == ["Keyspace"]
    assert keyspace["Keyspace"]["db0"].startswith("keys=1,expires=0,")
    server = info_sections(text_of(decode(client.call("INFO", "server"))))
    assert list(server) == ["Server"]


def test_command_knows_every_contract_command(client: RawClient) -> None:
    count = decode(client.call("COMMAND", "COUNT"))
    assert count.kind == ":" and isinstance(count.value, int)
    assert count.value >= len(CONTRACT_COMMANDS)
    infos = decode(client.call("COMMAND", "INFO", *CONTRACT_COMMANDS, "nosuchcommand"))
    assert len(infos.items) == len(CONTRACT_COMMANDS) + 1
    for name, info in zip(CONTRACT_COMMANDS, infos.items, strict=False):
        assert info.kind == "*" and info.items[0].value == name.encode(), (name, info)
    assert infos.items[-1].kind in "_$*" and infos.items[-1].value is None


@pytest.mark.parametrize(("name", "arity", "first", "last", "step"), KEY_POSITIONS)
def test_command_info_arity_and_key_positions(
    client: RawClient, name: str, arity: int, first: int, last: int, step: int
) -> None:
    (info,) = decode(client.call("COMMAND", "INFO", name)).items
    fields = [item.value for item in info.items[:6]]
    assert fields[0] == name.encode()
    assert fields[1] == arity
    assert info.items[2].kind in "*~"  # flags: an array (RESP2) or a set (RESP3)
    assert fields[3:6] == [first, last, step]


def test_command_docs_describes_get(client: RawClient) -> None:
    docs = decode(client.call("COMMAND", "DOCS", "get"))
    assert docs.kind in "*%"
    assert b"summary" in docs.pairs[b"get"].pairs


@pytest.mark.parametrize("protocol", [2, 3])
def test_config_get_maxmemory_is_a_pair(node: ServerProcess, protocol: int) -> None:
    with node.raw() as raw:
        if protocol == 3:
            raw.call("HELLO", "3")
        reply = decode(raw.call("CONFIG", "GET", "maxmemory", "nosuchparameter"))
    assert reply.kind == ("%" if protocol == 3 else "*")
    fields = reply.pairs
    assert list(fields) == [b"maxmemory"]
    value = fields[b"maxmemory"].value
    assert isinstance(value, bytes) and value.isdigit()


@pytest.mark.parametrize("db", ["1", "15"])
def test_select_other_databases_keeps_keys_apart(client: RawClient, db: str) -> None:
    assert client.call("SELECT", db) == b"+OK\r\n"
    assert client.call("SET", "shapes:db", db) == b"+OK\r\n"
    assert client.call("SELECT", "0") == b"+OK\r\n"
    assert decode(client.call("GET", "shapes:db")).value is None
    assert client.call("SELECT", "16") == b"-ERR DB index is out of range\r\n"


@pytest.mark.geocache_only
@pytest.mark.parametrize(
    "argv",
    [
        ["LPUSH", "k", "v"],
        ["RPUSH", "k", "a", "b"],
        ["HSET", "h", "f", "v"],
        ["HGET", "h", "f"],
        ["SADD", "s", "m"],
        ["ZADD", "z", "1", "m"],
        ["XADD", "x", "*", "f", "v"],
    ],
)
def test_other_data_types_are_unknown_commands(client: RawClient, argv: list[str]) -> None:
    args = "".join(f"'{a}' " for a in argv[1:])
    expected = f"-ERR unknown command '{argv[0]}', with args beginning with: {args}\r\n"
    assert client.call(*argv) == expected.encode()
    assert client.call("PING") == b"+PONG\r\n"
