"""Numbered databases (Redis's db.c): SELECT, SWAPDB, MOVE; and RENAME, RENAMENX, COPY.

A session points at one database's store (store/databases.py); SELECT repoints it.
In cluster mode there is only database 0, as in Redis Cluster, with its error texts.

RENAME, RENAMENX and COPY touch two keys. In a cluster the router sends them to the
first key's coordinator only when both keys have the same owners (CROSSSLOT
otherwise), so the two writes it makes replicate to the same nodes; a rename is a
write and a delete at one version.
"""

from __future__ import annotations

from geocache.commands.context import Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR
from geocache.commands.table import command
from geocache.protocol.types import OK, Error
from geocache.store.counters import parse_int
from geocache.store.databases import DATABASES
from geocache.store.errors import StoreError
from geocache.store.keyspace import Store

_NO_KEYS = (0, 0, 0)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
OUT_OF_RANGE = Error("ERR DB index is out of range")
SAME_OBJECT = Error("ERR source and destination objects are the same")
NO_SUCH_KEY = Error("ERR no such key")


NOT_AN_INT = Error(f"ERR value is out of range, value must between {INT_MIN} and {INT_MAX}")


def _int(raw: bytes) -> int | Error:
    """Redis's getIntFromObjectOrReply: a C int, or its error."""
    try:
        value = parse_int(raw)
    except StoreError:
        return NOT_INTEGER
    return value if INT_MIN <= value <= INT_MAX else NOT_AN_INT


def _database(session: Session, index: int) -> Store | None:
    databases = session.node.databases
    return databases.get(index) if 0 <= index < len(databases) else None


def _clustered(session: Session) -> bool:
    return session.node.config.clustered


@command("select", 2, "fast", keys=_NO_KEYS, group="connection", summary="Select the database")
def cmd_select(session: Session, argv: list[bytes]) -> object:
    index = _int(argv[1])
    if isinstance(index, Error):
        return index
    if _clustered(session) and index != 0:
        return Error("ERR SELECT is not allowed in cluster mode")
    store = _database(session, index)
    if store is None:
        return OUT_OF_RANGE
    session.db, session.store = index, store
    return OK


@command("swapdb", 3, "write fast", keys=_NO_KEYS, group="server", summary="Swap two databases")
def cmd_swapdb(session: Session, argv: list[bytes]) -> object:
    if _clustered(session):
        return Error("ERR SWAPDB is not allowed in cluster mode")
    first, second = _int(argv[1]), _int(argv[2])
    if isinstance(first, Error):
        return Error("ERR invalid first DB index")
    if isinstance(second, Error):
        return Error("ERR invalid second DB index")
    count = len(session.node.databases)
    if not (0 <= first < count and 0 <= second < count):
        return OUT_OF_RANGE
    session.node.databases.swap(first, second)
    return OK


@command("move", 3, "write fast", group="generic", summary="Move a key to another database")
def cmd_move(session: Session, argv: list[bytes]) -> object:
    if _clustered(session):
        return Error("ERR MOVE is not allowed in cluster mode")
    index = _int(argv[2])
    if isinstance(index, Error):
        return index
    target = _database(session, index)
    if target is None:
        return OUT_OF_RANGE
    source, key = session.store, argv[1]
    if target is source:
        return SAME_OBJECT
    entry = source.peek(key)
    if entry is None or target.peek(key) is not None:
        return 0
    target.set(key, entry[0], entry[1])
    source.delete(key)
    return 1


def _rename(session: Session, argv: list[bytes], nx: bool) -> object:
    """Redis's renameGenericCommand: the value and its expiry move to the new name."""
    store, source, target = session.store, argv[1], argv[2]
    entry = store.peek(source)
    if entry is None:
        return NO_SUCH_KEY
    if source == target:
        return 0 if nx else OK
    if nx and store.peek(target) is not None:
        return 0
    # One version for the write and the delete: replicas apply the rename as one event.
    hlc = store.hlc
    hlc.pin(hlc.now())
    try:
        store.set(target, entry[0], entry[1])
        store.delete(source)
    finally:
        hlc.pin(0)
    return 1 if nx else OK


@command("rename", 3, "write", keys=(1, 2, 1), group="generic", summary="Rename a key")
def cmd_rename(session: Session, argv: list[bytes]) -> object:
    return _rename(session, argv, nx=False)


@command(
    "renamenx", 3, "write fast", keys=(1, 2, 1), group="generic", summary="Rename a key if new"
)
def cmd_renamenx(session: Session, argv: list[bytes]) -> object:
    return _rename(session, argv, nx=True)


@command("copy", -3, "write", keys=(1, 2, 1), group="generic", summary="Copy a key")
def cmd_copy(session: Session, argv: list[bytes]) -> object:
    """Redis's copyCommand: [DB destination-db] [REPLACE], with its checks in its order."""
    target, target_db, replace = session.store, session.db, False
    j = 3
    while j < len(argv):
        option = argv[j].upper()
        if option == b"REPLACE":
            replace = True
        elif option == b"DB" and j + 1 < len(argv):
            index = _int(argv[j + 1])
            if isinstance(index, Error):
                return index
            if not 0 <= index < DATABASES:
                return OUT_OF_RANGE
            target_db = index
            if not _clustered(session):  # a cluster has database 0 only (checked below)
                target = session.node.databases.get(index)
            j += 1
        else:
            return SYNTAX_ERROR
        j += 1
    if _clustered(session) and target_db != 0:
        return Error("ERR Copying to another database is not allowed in cluster mode")
    source, key, new_key = session.store, argv[1], argv[2]
    if target is source and key == new_key:
        return SAME_OBJECT
    entry = source.peek(key)
    if entry is None:
        return 0
    if target.peek(new_key) is not None and not replace:
        return 0
    target.set(new_key, entry[0], entry[1])
    return 1
