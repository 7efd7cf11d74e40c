"""OBJECT and MEMORY: what Redis says about a key's internals, from what the store knows.

- ENCODING follows Redis's rule for a string just written by SET: `int` for a canonical
  64-bit integer of up to 20 bytes, `embstr` up to 44 bytes, `raw` beyond. (Redis also
  says `raw` for a short string grown by APPEND or SETRANGE; the store does not know
  how a value was made.)
- REFCOUNT: Redis shares the integers 0..9999 (INT_MAX references) unless maxmemory is
  set with an LRU or LFU policy; geocache always evicts by LRU, so they are shared only
  when `max_bytes` is 0.
- IDLETIME: seconds since the key was last written, from its version's time. Redis
  also counts reads; the store's exact LRU keeps the order of accesses but not their
  times, and keeping them would cost every read.
- FREQ: Redis answers only under an LFU policy and errs otherwise; eviction here is
  LRU, so it always errs as Redis does under the default-like `allkeys-lru`.
- MEMORY USAGE: the bytes the entry is accounted for against `max_bytes` (entry.py);
  MEMORY PURGE does nothing; DOCTOR, STATS and MALLOC-STATS are not there.
"""

from __future__ import annotations

from geocache.clock import version_ms
from geocache.commands.context import Session
from geocache.commands.strings import SYNTAX_ERROR
from geocache.commands.table import SubHandler, command, subcommand
from geocache.protocol.types import OK, Error, Simple
from geocache.store.counters import parse_int
from geocache.store.entry import Entry, entry_size
from geocache.store.errors import StoreError

# Redis's limits for the int and embstr encodings, and its shared integers.
MAX_INT_ENCODED_BYTES = 20
MAX_EMBSTR_BYTES = 44
SHARED_INTEGERS = 10_000
SHARED_REFCOUNT = 2**31 - 1
NO_LFU = Error(
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please "
    "note that when switching between policies at runtime LRU and LFU data will take some "
    "time to adjust."
)


def _as_int(value: bytes) -> int | None:
    if len(value) > MAX_INT_ENCODED_BYTES:
        return None
    try:
        return parse_int(value)
    except StoreError:
        return None


def encoding(value: bytes) -> bytes:
    if _as_int(value) is not None:
        return b"int"
    return b"embstr" if len(value) <= MAX_EMBSTR_BYTES else b"raw"


def _entry(session: Session, argv: list[bytes]) -> Entry | None:
    return session.store.peek(argv[2])


def _encoding(session: Session, argv: list[bytes]) -> object:
    entry = _entry(session, argv)
    return None if entry is None else encoding(entry[0])


def _refcount(session: Session, argv: list[bytes]) -> object:
    entry = _entry(session, argv)
    if entry is None:
        return None
    number = _as_int(entry[0])
    shared = not session.node.config.max_bytes and number is not None
    return SHARED_REFCOUNT if shared and 0 <= number < SHARED_INTEGERS else 1  # type: ignore[operator]


def _idletime(session: Session, argv: list[bytes]) -> object:
    entry = _entry(session, argv)
    if entry is None:
        return None
    return max(session.node.clock.wall_ms() - version_ms(entry[2]), 0) // 1000


def _freq(session: Session, argv: list[bytes]) -> object:
    return None if _entry(session, argv) is None else NO_LFU


_OBJECT_HELP = [
    Simple(line)
    for line in (
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Prints this help.",
    )
]

_OBJECT: dict[bytes, tuple[int, SubHandler]] = {
    b"ENCODING": (3, _encoding),
    b"REFCOUNT": (3, _refcount),
    b"IDLETIME": (3, _idletime),
    b"FREQ": (3, _freq),
    b"HELP": (2, lambda s, a: _OBJECT_HELP),
}


@command(
    "object", -2, "readonly", keys=(2, 2, 1), group="generic", summary="Inspect a key's internals"
)
def cmd_object(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, _OBJECT, "OBJECT")


# -- MEMORY -------------------------------------------------------------------------------


def _usage(session: Session, argv: list[bytes]) -> object:
    j = 3
    while j < len(argv):
        if argv[j].upper() != b"SAMPLES" or j + 1 >= len(argv):
            return SYNTAX_ERROR
        try:
            samples = parse_int(argv[j + 1])
        except StoreError:
            return Error("ERR value is not an integer or out of range")
        if samples < 0:
            return SYNTAX_ERROR
        j += 2
    entry = _entry(session, argv)
    return None if entry is None else entry_size(argv[2], entry[0], entry[1])


_MEMORY_HELP = [
    Simple(line)
    for line in (
        "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DOCTOR",
        "    Return memory problems reports.",
        "MALLOC-STATS",
        "    Return internal statistics report from the memory allocator.",
        "PURGE",
        "    Attempt to purge dirty pages for reclamation by the allocator.",
        "STATS",
        "    Return information about the memory usage of the server.",
        "USAGE <key> [SAMPLES <count>]",
        "    Return memory in bytes used by <key> and its value. Nested values are",
        "    sampled up to <count> times (default: 5, 0 means sample all).",
        "HELP",
        "    Prints this help.",
    )
]
_MEMORY: dict[bytes, tuple[int, SubHandler]] = {
    b"USAGE": (-3, _usage),
    b"PURGE": (2, lambda s, a: OK),
    b"HELP": (2, lambda s, a: _MEMORY_HELP),
}


@command("memory", -2, "readonly", keys=(2, 2, 1), group="server", summary="Memory used by a key")
def cmd_memory(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, _MEMORY, "MEMORY")
