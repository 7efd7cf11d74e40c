"""String commands (Redis's t_string.c): GET, SET and friends, ranges and counters.

Option parsing and every error text follow Redis 7.0 so that clients see the same
replies. Every write goes through the store, which versions it; a command reads and
writes its entries without awaiting in between, so no locks are needed.
"""

from __future__ import annotations

from typing import Final

from geocache.commands.context import Session
from geocache.commands.table import command
from geocache.protocol.types import OK, Error
from geocache.store.counters import INT64_MAX, INT64_MIN, parse_int
from geocache.store.errors import StoreError

SYNTAX_ERROR = Error("ERR syntax error")
NOT_INTEGER = Error("ERR value is not an integer or out of range")
TOO_BIG = Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")

# Option flags, as Redis's OBJ_* bits. Final literals: compiled, SET tests them as C
# constants rather than looking each up in the module's globals.
NX: Final = 1
XX: Final = 2
GET: Final = 4
KEEPTTL: Final = 8
PERSIST: Final = 16
EX: Final = 32
PX: Final = 64
EXAT: Final = 128
PXAT: Final = 256
_EXPIRY: Final = EX | PX | EXAT | PXAT
_OPTIONS = {
    b"NX": (NX, XX, True),
    b"XX": (XX, NX, True),
    b"GET": (GET, 0, True),
    b"KEEPTTL": (KEEPTTL, PERSIST | _EXPIRY, True),
    b"PERSIST": (PERSIST, KEEPTTL | _EXPIRY, False),
    b"EX": (EX, KEEPTTL | PERSIST | EXAT | PX | PXAT, None),
    b"PX": (PX, KEEPTTL | PERSIST | EX | EXAT | PXAT, None),
    b"EXAT": (EXAT, KEEPTTL | PERSIST | EX | PX | PXAT, None),
    b"PXAT": (PXAT, KEEPTTL | PERSIST | EX | EXAT | PX, None),
}


class _Reply(Exception):
    """Carries an error reply out of option parsing."""

    def __init__(self, reply: Error) -> None:
        self.reply = reply


def _parse_options(argv: list[bytes], start: int, for_set: bool) -> tuple[int, bytes | None]:
    """Redis's parseExtendedStringArgumentsOrReply: (flags, raw expire argument)."""
    flags, expire, j, argc = 0, None, start, len(argv)
    while j < argc:
        option = _OPTIONS.get(argv[j].upper())
        if option is None:
            raise _Reply(SYNTAX_ERROR)
        bit, excludes, set_only = option
        if (
            flags & excludes
            or (set_only is True and not for_set)
            or (set_only is False and for_set)
        ):
            raise _Reply(SYNTAX_ERROR)
        if set_only is None:  # takes a value
            if j + 1 >= argc:
                raise _Reply(SYNTAX_ERROR)
            j += 1
            expire = argv[j]
        flags |= bit
        j += 1
    return flags, expire


def _expire_at_ms(session: Session, raw: bytes, flags: int, name: str) -> int:
    """Redis's getExpireMillisecondsOrReply: an absolute ms time, or an error reply."""
    amount = _int_arg(raw)
    invalid = Error(f"ERR invalid expire time in '{name}' command")
    seconds = bool(flags & (EX | EXAT))
    if amount <= 0 or (seconds and amount > INT64_MAX // 1000):
        raise _Reply(invalid)
    ms = amount * 1000 if seconds else amount
    if flags & (EX | PX):
        ms += session.node.clock.wall_ms()
    if ms > INT64_MAX:
        raise _Reply(invalid)
    return ms


def _check_value(session: Session, value: bytes) -> None:
    if len(value) > session.node.config.max_value_bytes:
        raise _Reply(TOO_BIG)


def default_expiry(session: Session) -> int:
    ttl_s = session.node.config.default_ttl_s
    return session.node.clock.wall_ms() + ttl_s * 1000 if ttl_s else 0


def _set(
    session: Session, key: bytes, value: bytes, flags: int, expire: bytes | None, name: str
) -> object:
    """Redis's setGenericCommand."""
    try:
        _check_value(session, value)
        expires_at = _expire_at_ms(session, expire, flags, name) if expire is not None else 0
    except _Reply as reply:
        return reply.reply
    store = session.store
    if not flags & (NX | XX | GET | KEEPTTL):  # a plain SET needs no old entry
        store.reclaim_if_expired(key)  # as Redis's lookup: an expired key counts expired
        store.set(key, value, default_expiry(session) if expire is None else expires_at)
        return OK
    old = store.peek(key)
    if (flags & NX and old is not None) or (flags & XX and old is None):
        if flags & GET:
            return old[0] if old is not None else None
        return None
    if flags & KEEPTTL and old is not None:
        store.set_value(key, value)  # the value register only: the expiry keeps its version
    else:
        store.set(key, value, default_expiry(session) if expire is None else expires_at)
    if flags & GET:
        return old[0] if old is not None else None
    return OK


@command("set", -3, "write", summary="Set the string value of a key")
def cmd_set(session: Session, argv: list[bytes]) -> object:
    try:
        flags, expire = _parse_options(argv, 3, True) if len(argv) > 3 else (0, None)
    except _Reply as reply:
        return reply.reply
    return _set(session, argv[1], argv[2], flags, expire, "set")


@command("setex", 4, "write", summary="Set the value and expiration of a key")
def cmd_setex(session: Session, argv: list[bytes]) -> object:
    return _set(session, argv[1], argv[3], EX, argv[2], "setex")


@command("psetex", 4, "write", summary="Set the value and expiration in milliseconds of a key")
def cmd_psetex(session: Session, argv: list[bytes]) -> object:
    return _set(session, argv[1], argv[3], PX, argv[2], "psetex")


@command("setnx", 3, "write", summary="Set the value of a key, only if the key does not exist")
def cmd_setnx(session: Session, argv: list[bytes]) -> object:
    if len(argv[2]) > session.node.config.max_value_bytes:
        return TOO_BIG
    if session.store.peek(argv[1]) is not None:
        return 0
    session.store.set(argv[1], argv[2], default_expiry(session))
    return 1


@command("get", 2, "readonly fast", summary="Get the value of a key")
def cmd_get(session: Session, argv: list[bytes]) -> object:
    return session.store.get(argv[1])


@command("getset", 3, "write", summary="Set the value of a key and return its old value")
def cmd_getset(session: Session, argv: list[bytes]) -> object:
    if len(argv[2]) > session.node.config.max_value_bytes:
        return TOO_BIG
    old = session.store.get(argv[1])
    session.store.set(argv[1], argv[2], default_expiry(session))
    return old


@command("getdel", 2, "write fast", summary="Get the value of a key and delete the key")
def cmd_getdel(session: Session, argv: list[bytes]) -> object:
    value = session.store.get(argv[1])
    if value is not None:
        session.store.delete(argv[1])
    return value


@command(
    "getex", -2, "write fast", summary="Get the value of a key and optionally set its expiration"
)
def cmd_getex(session: Session, argv: list[bytes]) -> object:
    store, key = session.store, argv[1]
    try:
        flags, expire = _parse_options(argv, 2, False)
        # As Redis: a missing key answers nil before the expiry is validated.
        entry = store.lookup(key)
        if entry is None:
            return None
        expires_at = _expire_at_ms(session, expire, flags, "getex") if expire is not None else 0
    except _Reply as reply:
        return reply.reply
    if expire is not None:
        if expires_at <= session.node.clock.wall_ms():
            store.delete(key)
        else:
            store.expire_at(key, expires_at)
    elif flags & PERSIST and entry[1]:
        store.expire_at(key, 0)
    return entry[0]


@command("mget", -2, "readonly fast", keys=(1, -1, 1), summary="Get the values of all the keys")
def cmd_mget(session: Session, argv: list[bytes]) -> object:
    get = session.store.get
    return [get(key) for key in argv[1:]]


def _mset_refusal(session: Session, argv: list[bytes]) -> Error | None:
    """MSET's and MSETNX's errors, before any key is written; None if the call is good."""
    if len(argv) % 2 == 0:
        return Error(f"ERR wrong number of arguments for '{argv[0].decode().lower()}' command")
    limit = session.node.config.max_value_bytes
    # Indexes rather than zipped pairs: compiled, no pair tuples or slices per call.
    for i in range(2, len(argv), 2):
        if len(argv[i]) > limit:
            return TOO_BIG
    return None


@command("mset", -3, "write", keys=(1, -1, 2), summary="Set multiple keys to multiple values")
def cmd_mset(session: Session, argv: list[bytes]) -> object:
    refusal = _mset_refusal(session, argv)
    if refusal is not None:
        return refusal
    store, expires_at = session.store, default_expiry(session)
    for i in range(1, len(argv), 2):
        store.set(argv[i], argv[i + 1], expires_at)
    return OK


@command("msetnx", -3, "write", keys=(1, -1, 2), summary="Set keys to values, only if none exist")
def cmd_msetnx(session: Session, argv: list[bytes]) -> object:
    refusal = _mset_refusal(session, argv)
    if refusal is not None:
        return refusal
    store = session.store
    if any(store.peek(argv[i]) is not None for i in range(1, len(argv), 2)):
        return 0
    expires_at = default_expiry(session)
    for i in range(1, len(argv), 2):
        store.set(argv[i], argv[i + 1], expires_at)
    return 1


@command("append", 3, "write", summary="Append a value to a key")
def cmd_append(session: Session, argv: list[bytes]) -> object:
    store, key = session.store, argv[1]
    entry = store.peek(key)
    value = argv[2] if entry is None else entry[0] + argv[2]
    if len(value) > session.node.config.max_value_bytes:
        return TOO_BIG
    if entry is None:
        store.set(key, value, default_expiry(session))
    else:
        store.set_value(key, value)  # last writer wins on the value; the expiry stays
    return len(value)


@command("strlen", 2, "readonly fast", summary="Get the length of the value stored in a key")
def cmd_strlen(session: Session, argv: list[bytes]) -> object:
    entry = session.store.lookup(argv[1])
    return 0 if entry is None else len(entry[0])


def _int_arg(raw: bytes) -> int:
    try:
        return parse_int(raw)
    except StoreError:
        raise _Reply(NOT_INTEGER) from None


@command("getrange", 4, "readonly", summary="Get a substring of the string stored at a key")
def cmd_getrange(session: Session, argv: list[bytes]) -> object:
    try:
        start, end = _int_arg(argv[2]), _int_arg(argv[3])
    except _Reply as reply:
        return reply.reply
    entry = session.store.lookup(argv[1])
    if entry is None:
        return b""
    value = entry[0]
    size = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    start = max(size + start if start < 0 else start, 0)
    end = max(size + end if end < 0 else end, 0)
    end = min(end, size - 1)
    if start > end or size == 0:
        return b""
    return value[start : end + 1]


@command("substr", 4, "readonly", summary="Get a substring of the string stored at a key")
def cmd_substr(session: Session, argv: list[bytes]) -> object:
    """GETRANGE under its old name."""
    return cmd_getrange(session, argv)


@command("setrange", 4, "write", summary="Overwrite part of a string at key starting at an offset")
def cmd_setrange(session: Session, argv: list[bytes]) -> object:
    try:
        offset = _int_arg(argv[2])
    except _Reply as reply:
        return reply.reply
    if offset < 0:
        return Error("ERR offset is out of range")
    store, key, patch = session.store, argv[1], argv[3]
    entry = store.peek(key)
    old = entry[0] if entry is not None else b""
    if not patch:
        return len(old)
    if offset + len(patch) > session.node.config.max_value_bytes:
        return TOO_BIG
    padded = old.ljust(offset, b"\x00")
    value = padded[:offset] + patch + padded[offset + len(patch) :]
    if entry is None:
        store.set(key, value, default_expiry(session))
    else:
        store.set_value(key, value)
    return len(value)


def _incr(session: Session, key: bytes, delta: int) -> object:
    return session.store.incr_by(key, delta)


@command("incr", 2, "write fast", summary="Increment the integer value of a key by one")
def cmd_incr(session: Session, argv: list[bytes]) -> object:
    return _incr(session, argv[1], 1)


@command("decr", 2, "write fast", summary="Decrement the integer value of a key by one")
def cmd_decr(session: Session, argv: list[bytes]) -> object:
    return _incr(session, argv[1], -1)


@command("incrby", 3, "write fast", summary="Increment the integer value of a key by a number")
def cmd_incrby(session: Session, argv: list[bytes]) -> object:
    try:
        return _incr(session, argv[1], _int_arg(argv[2]))
    except _Reply as reply:
        return reply.reply


@command("decrby", 3, "write fast", summary="Decrement the integer value of a key by a number")
def cmd_decrby(session: Session, argv: list[bytes]) -> object:
    try:
        delta = _int_arg(argv[2])
    except _Reply as reply:
        return reply.reply
    if delta == INT64_MIN:
        return Error("ERR decrement would overflow")
    return _incr(session, argv[1], -delta)


@command("incrbyfloat", 3, "write fast", summary="Increment the float value of a key by a number")
def cmd_incrbyfloat(session: Session, argv: list[bytes]) -> object:
    return session.store.incr_by_float(argv[1], argv[2])
