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

from geocache.commands.context import Session
from geocache.commands.table import command
from geocache.protocol.types import NULL_ARRAY, OK, QUEUED, Error

_NO_KEYS = (0, 0, 0)
# Bounds what one client can make the node hold for a transaction.
MAX_QUEUED_COMMANDS = 100_000
MAX_WATCHED_KEYS = 10_000
# What a queued command costs beyond its arguments' bytes (a list, its bytes objects'
# headers), for the client memory budget: an estimate, in bytes.
QUEUED_OVERHEAD_BYTES = 100


def _version(session: Session, key: bytes) -> int | None:
    entry = session.store.peek(key)
    return None if entry is None else entry[2]


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
    """Queue a command inside MULTI (the caller has checked it exists and its arity)."""
    assert session.multi is not None
    if len(session.multi) >= MAX_QUEUED_COMMANDS:
        session.multi_dirty = True
        return Error(f"ERR too many commands in a transaction (max {MAX_QUEUED_COMMANDS})")
    session.multi.append(argv)
    session.multi_bytes += sum(len(arg) for arg in argv) + QUEUED_OVERHEAD_BYTES
    return QUEUED
