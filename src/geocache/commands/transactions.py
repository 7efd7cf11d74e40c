"""MULTI/EXEC/DISCARD and WATCH/UNWATCH.

A node runs each client's commands on one event loop without awaiting inside a
command, so EXEC runs its queue atomically just by running it in one go. WATCH
remembers each key's version (or its absence); EXEC aborts with a null reply if any
watched key's version changed, which covers writes, deletes, expiry and flushes, from
this client or any other.

redis-py's default `pipeline()` wraps its commands in MULTI/EXEC, so this is needed for
plain clients, not only for optimistic locking.
"""

from __future__ import annotations

from collections.abc import Callable

from geocache.commands.context import Session
from geocache.commands.dump import OVERHEAD_BYTES as DUMP_OVERHEAD_BYTES
from geocache.commands.table import OOM, command
from geocache.protocol.types import NULL_ARRAY, OK, QUEUED, Error
from geocache.store.counters import parse_int
from geocache.store.entry import ENTRY_OVERHEAD_BYTES, entry_size, latest_version
from geocache.store.errors import StoreError

_NO_KEYS = (0, 0, 0)
# Bounds what one client can make the node hold for a transaction.
MAX_QUEUED_COMMANDS = 100_000
MAX_WATCHED_KEYS = 10_000
# What a queued command costs beyond its arguments' bytes (a list, its bytes objects'
# headers), for the client memory budget: an estimate, in bytes.
QUEUED_OVERHEAD_BYTES = 100


def _version(session: Session, key: bytes) -> int | None:
    entry = session.store.peek(key)
    return None if entry is None else latest_version(entry)


@command("multi", 1, "fast", keys=_NO_KEYS, group="transactions", summary="Start a transaction")
def cmd_multi(session: Session, argv: list[bytes]) -> object:
    if session.multi is not None:
        return Error("ERR MULTI calls can not be nested")
    session.multi = []
    session.multi_bytes = 0
    session.multi_dirty = False
    return OK


@command("discard", 1, "fast", keys=_NO_KEYS, group="transactions", summary="Discard a transaction")
def cmd_discard(session: Session, argv: list[bytes]) -> object:
    if session.multi is None:
        return Error("ERR DISCARD without MULTI")
    session.multi = None
    session.watched = {}
    return OK


@command("exec", 1, "", keys=_NO_KEYS, group="transactions", summary="Run a transaction")
def cmd_exec(session: Session, argv: list[bytes]) -> object:
    from geocache.commands.table import dispatch

    queued = session.multi
    if queued is None:
        return Error("ERR EXEC without MULTI")
    session.multi = None
    watched, session.watched = session.watched, {}
    if session.multi_dirty:
        return Error("EXECABORT Transaction discarded because of previous errors.")
    if any(_version(session, key) != version for key, version in watched.items()):
        return NULL_ARRAY
    table = session.node.table
    return [dispatch(table, session, cmd) for cmd in queued]


@command("watch", -2, "fast", keys=(1, -1, 1), group="transactions", summary="Watch keys")
def cmd_watch(session: Session, argv: list[bytes]) -> object:
    if session.multi is not None:
        return Error("ERR WATCH inside MULTI is not allowed")
    if len(session.watched) + len(argv) - 1 > MAX_WATCHED_KEYS:
        return Error(f"ERR too many watched keys (max {MAX_WATCHED_KEYS})")
    for key in argv[1:]:
        session.watched.setdefault(key, _version(session, key))
    return OK


@command("unwatch", 1, "fast", keys=_NO_KEYS, group="transactions", summary="Forget watched keys")
def cmd_unwatch(session: Session, argv: list[bytes]) -> object:
    session.watched = {}
    return OK


def queue(session: Session, argv: list[bytes]) -> object:
    """Queue a command inside MULTI (the caller has checked it exists and its arity).

    As Redis refuses a write it has no memory for when it is queued (and the EXEC that
    follows), a write whose entry alone could never fit in `max_bytes` is refused now.
    """
    assert session.multi is not None
    if len(session.multi) >= MAX_QUEUED_COMMANDS:
        session.multi_dirty = True
        return Error(f"ERR too many commands in a transaction (max {MAX_QUEUED_COMMANDS})")
    max_bytes = session.store.max_bytes
    if max_bytes and least_entry_bytes(argv) > max_bytes:
        session.multi_dirty = True
        return OOM
    session.multi.append(argv)
    session.multi_bytes += sum(len(arg) for arg in argv) + QUEUED_OVERHEAD_BYTES
    return QUEUED


def _value_at(index: int) -> Callable[[list[bytes]], int]:
    return lambda argv: len(argv[index]) if len(argv) > index else 0


def _setrange(argv: list[bytes]) -> int:
    return (_offset(argv[2]) + len(argv[3])) if len(argv) > 3 and argv[3] else 0


def _setbit(argv: list[bytes]) -> int:
    return _offset(argv[2]) // 8 + 1 if len(argv) > 2 else 0


def _offset(raw: bytes) -> int:
    try:
        return max(parse_int(raw), 0)
    except StoreError:
        return 0  # the command will fail on it when it runs


# The least value a queued write leaves in its (first) key, from its arguments.
_LEAST_VALUE: dict[bytes, Callable[[list[bytes]], int]] = {
    b"set": _value_at(2),
    b"setnx": _value_at(2),
    b"getset": _value_at(2),
    b"append": _value_at(2),
    b"setex": _value_at(3),
    b"psetex": _value_at(3),
    b"setrange": _setrange,
    b"setbit": _setbit,
    b"restore": lambda argv: max(len(argv[3]) - DUMP_OVERHEAD_BYTES, 0) if len(argv) > 3 else 0,
}


def least_entry_bytes(argv: list[bytes]) -> int:
    """The least `entry_size` a queued write will make (0 for other commands)."""
    name = argv[0].lower()
    if name in (b"mset", b"msetnx"):
        pairs = zip(argv[1::2], argv[2::2], strict=False)
        return max((entry_size(k, v) for k, v in pairs), default=0)
    least = _LEAST_VALUE.get(name)
    if least is None or len(argv) < 2:
        return 0
    return len(argv[1]) + least(argv) + ENTRY_OVERHEAD_BYTES
