"""Versions to clients: GETVER and CAS, the compare-and-set every write's version allows.

`GETVER key` returns the key's version (nil when absent): the newer of its value's and
its expiry's, so an EXPIRE changes it as any write does. `CAS key version value [EX
seconds]` writes only if the key's version is still `version` (0: the key must not
exist), returning the new version, or nil when another write got there first.
"""

from __future__ import annotations

from geocache.commands.context import Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR
from geocache.commands.table import command
from geocache.protocol.types import Error
from geocache.store.counters import parse_int
from geocache.store.entry import latest_version
from geocache.store.errors import StoreError


@command("getver", 2, "readonly fast", group="string", summary="Get the version of a key")
def cmd_getver(session: Session, argv: list[bytes]) -> object:
    entry = session.store.lookup(argv[1])
    return None if entry is None else latest_version(entry)


@command("cas", -4, "write", group="string", summary="Set a key if its version is unchanged")
def cmd_cas(session: Session, argv: list[bytes]) -> object:
    try:
        expected = parse_int(argv[2])
    except StoreError:
        return NOT_INTEGER
    expires_at = 0
    if len(argv) > 4:
        if len(argv) != 6 or argv[4].upper() != b"EX":
            return SYNTAX_ERROR
        try:
            seconds = parse_int(argv[5])
        except StoreError:
            return NOT_INTEGER
        if seconds <= 0:
            return Error("ERR invalid expire time in 'cas' command")
        expires_at = session.node.clock.wall_ms() + seconds * 1000
    if len(argv[3]) > session.node.config.max_value_bytes:
        return Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    store = session.store
    entry = store.peek(argv[1])
    if (latest_version(entry) if entry is not None else 0) != expected:
        return None
    return store.set(argv[1], argv[3], expires_at)[2]
