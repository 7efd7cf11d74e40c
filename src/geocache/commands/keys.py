"""Keyspace commands (Redis's db.c and expire.c): DEL, EXISTS, expiry, TYPE, KEYS, SCAN."""

from __future__ import annotations

from random import Random

from geocache.commands.context import Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR
from geocache.commands.table import command
from geocache.protocol.types import OK, Error, Simple
from geocache.store.counters import INT64_MAX, INT64_MIN, parse_int
from geocache.store.errors import StoreError
from geocache.store.pattern import compile_glob

_ALL_KEYS = (1, -1, 1)


@command("del", -2, "write", keys=_ALL_KEYS, group="generic", summary="Delete keys")
def cmd_del(session: Session, argv: list[bytes]) -> object:
    delete = session.store.delete
    return sum(1 for key in argv[1:] if delete(key))


@command("unlink", -2, "write fast", keys=_ALL_KEYS, group="generic", summary="Delete keys")
def cmd_unlink(session: Session, argv: list[bytes]) -> object:
    return cmd_del(session, argv)


@command(
    "exists", -2, "readonly fast", keys=_ALL_KEYS, group="generic", summary="Count keys that exist"
)
def cmd_exists(session: Session, argv: list[bytes]) -> object:
    peek = session.store.peek
    return sum(1 for key in argv[1:] if peek(key) is not None)


_EXPIRE_FLAGS = {b"NX": "nx", b"XX": "xx", b"GT": "gt", b"LT": "lt"}


def _expire(session: Session, argv: list[bytes], seconds: bool, absolute: bool) -> object:
    """Redis's expireGenericCommand."""
    flags: set[str] = set()
    for raw in argv[3:]:
        flag = _EXPIRE_FLAGS.get(raw.upper())
        if flag is None:
            return Error(f"ERR Unsupported option {raw.decode('utf-8', 'surrogateescape')}")
        flags.add(flag)
    if "nx" in flags and flags & {"xx", "gt", "lt"}:
        return Error("ERR NX and XX, GT or LT options at the same time are not compatible")
    if {"gt", "lt"} <= flags:
        return Error("ERR GT and LT options at the same time are not compatible")
    try:
        when = parse_int(argv[2])
    except StoreError:
        return NOT_INTEGER
    name = argv[0].decode().lower()
    invalid = Error(f"ERR invalid expire time in '{name}' command")
    if seconds:
        # C's division truncates toward zero: LLONG_MIN / 1000 is -9223372036854775.
        if when > INT64_MAX // 1000 or when < -(-INT64_MIN // 1000):
            return invalid
        when *= 1000
    now = session.node.clock.wall_ms()
    base = 0 if absolute else now
    if when > INT64_MAX - base:
        return invalid
    when += base
    store, key = session.store, argv[1]
    entry = store.peek(key)
    if entry is None:
        return 0
    current = entry[1] or -1
    if (
        ("nx" in flags and current != -1)
        or ("xx" in flags and current == -1)
        or ("gt" in flags and (current == -1 or when <= current))
        or ("lt" in flags and current != -1 and when >= current)
    ):
        return 0
    if when <= now:
        store.delete(key)
    else:
        store.expire_at(key, when)
    return 1


@command("expire", -3, "write fast", group="generic", summary="Set a key's time to live in seconds")
def cmd_expire(session: Session, argv: list[bytes]) -> object:
    return _expire(session, argv, seconds=True, absolute=False)


@command("pexpire", -3, "write fast", group="generic", summary="Set a key's time to live in ms")
def cmd_pexpire(session: Session, argv: list[bytes]) -> object:
    return _expire(session, argv, seconds=False, absolute=False)


@command("expireat", -3, "write fast", group="generic", summary="Set a key's expiry as a UNIX time")
def cmd_expireat(session: Session, argv: list[bytes]) -> object:
    return _expire(session, argv, seconds=True, absolute=True)


@command(
    "pexpireat",
    -3,
    "write fast",
    group="generic",
    summary="Set a key's expiry as a UNIX time in ms",
)
def cmd_pexpireat(session: Session, argv: list[bytes]) -> object:
    return _expire(session, argv, seconds=False, absolute=True)


@command(
    "ttl", 2, "readonly fast", group="generic", summary="Get the time to live for a key in seconds"
)
def cmd_ttl(session: Session, argv: list[bytes]) -> object:
    ms = session.store.ttl_ms(argv[1])
    return ms if ms < 0 else (ms + 500) // 1000


@command(
    "pttl", 2, "readonly fast", group="generic", summary="Get the time to live for a key in ms"
)
def cmd_pttl(session: Session, argv: list[bytes]) -> object:
    return session.store.ttl_ms(argv[1])


@command("persist", 2, "write fast", group="generic", summary="Remove the expiration from a key")
def cmd_persist(session: Session, argv: list[bytes]) -> object:
    store, key = session.store, argv[1]
    entry = store.peek(key)
    if entry is None or not entry[1]:
        return 0
    store.expire_at(key, 0)  # the expiry register only: a newer value elsewhere stays
    return 1


_STRING, _NONE = Simple("string"), Simple("none")


@command("type", 2, "readonly fast", group="generic", summary="Determine the type stored at key")
def cmd_type(session: Session, argv: list[bytes]) -> object:
    return _STRING if session.store.peek(argv[1]) is not None else _NONE


@command(
    "keys",
    2,
    "readonly",
    keys=(0, 0, 0),
    group="generic",
    summary="Find all keys matching a pattern",
)
def cmd_keys(session: Session, argv: list[bytes]) -> object:
    match = compile_glob(argv[1])
    return [key for key in session.store.keys() if match(key)]  # noqa: SIM118 - Store.keys() is no dict view


@command(
    "scan",
    -2,
    "readonly",
    keys=(0, 0, 0),
    group="generic",
    summary="Incrementally iterate the keys",
)
def cmd_scan(session: Session, argv: list[bytes]) -> object:
    try:
        cursor = int(argv[1])
        if not 0 <= cursor < 1 << 64 or not argv[1].isdigit():
            raise ValueError
    except ValueError:
        return Error("ERR invalid cursor")
    pattern, count, type_name = b"*", 10, None
    i = 2
    while i < len(argv):
        option = argv[i].upper()
        if i + 1 >= len(argv) or option not in (b"MATCH", b"COUNT", b"TYPE"):
            return SYNTAX_ERROR
        value = argv[i + 1]
        if option == b"COUNT":
            try:
                count = parse_int(value)
            except StoreError:
                return NOT_INTEGER
            if count < 1:
                return SYNTAX_ERROR
        elif option == b"MATCH":
            pattern = value
        else:
            type_name = value.lower()
        i += 2
    store = session.store
    next_cursor, keys = session.node.scanner.scan(
        cursor, count, lambda: list(store.keys()), lambda key: store.peek(key) is not None
    )
    match = compile_glob(pattern)
    keys = [key for key in keys if match(key) and type_name in (None, b"string")]
    return [str(next_cursor).encode(), keys]


@command(
    "dbsize",
    1,
    "readonly fast",
    keys=(0, 0, 0),
    group="server",
    summary="Return the number of keys",
)
def cmd_dbsize(session: Session, argv: list[bytes]) -> object:
    return len(session.store)


def _flush_mode_ok(argv: list[bytes]) -> bool:
    return len(argv) == 1 or (len(argv) == 2 and argv[1].upper() in (b"ASYNC", b"SYNC"))


@command("flushdb", -1, "write", keys=(0, 0, 0), group="server", summary="Remove all keys")
def cmd_flushdb(session: Session, argv: list[bytes]) -> object:
    """Empty the selected database."""
    if not _flush_mode_ok(argv):
        return SYNTAX_ERROR
    session.store.flush()
    return OK


@command("flushall", -1, "write", keys=(0, 0, 0), group="server", summary="Remove all keys")
def cmd_flushall(session: Session, argv: list[bytes]) -> object:
    """Empty every database."""
    if not _flush_mode_ok(argv):
        return SYNTAX_ERROR
    session.node.databases.flush_all()
    return OK


@command("touch", -2, "readonly fast", keys=_ALL_KEYS, group="generic", summary="Touch keys")
def cmd_touch(session: Session, argv: list[bytes]) -> object:
    """Count the keys that exist, making each the most recently used (as Redis's TOUCH)."""
    lookup = session.store.lookup
    return sum(1 for key in argv[1:] if lookup(key) is not None)


@command("randomkey", 1, "readonly", keys=(0, 0, 0), group="generic", summary="Return a random key")
def cmd_randomkey(session: Session, argv: list[bytes]) -> object:
    return session.store.random_key(_RANDOM)


_RANDOM = Random()


def _expire_time(session: Session, key: bytes) -> int:
    """Redis's EXPIRETIME in ms: -2 for no key, -1 for no expiry."""
    entry = session.store.peek(key)
    if entry is None:
        return -2
    return entry[1] or -1


@command("expiretime", 2, "readonly fast", group="generic", summary="A key's expiry as a UNIX time")
def cmd_expiretime(session: Session, argv: list[bytes]) -> object:
    ms = _expire_time(session, argv[1])
    # Redis rounds to the nearest second, as TTL does.
    return ms if ms < 0 else (ms + 500) // 1000


@command("pexpiretime", 2, "readonly fast", group="generic", summary="A key's expiry in UNIX ms")
def cmd_pexpiretime(session: Session, argv: list[bytes]) -> object:
    return _expire_time(session, argv[1])
