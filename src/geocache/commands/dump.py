"""DUMP and RESTORE, with a payload format of geocache's own.

A payload is `type (1 byte, 0 = string) | value | "GC" | format version (1 byte) |
xxh64 of everything before (8 bytes, little-endian)`. RESTORE checks the marker, the
version and the checksum before anything else about the payload, and answers Redis's
`ERR DUMP payload version or checksum are wrong` for anything that fails, so garbage
(or a Redis RDB payload, whose last 10 bytes are an RDB version and a CRC64) is refused
as Redis refuses a payload it cannot read. Redis likewise refuses geocache's payloads:
"GC" read as its little-endian RDB version is 17223, newer than any Redis knows.

RESTORE's options and their checks run in Redis's order: options, BUSYKEY, TTL,
payload. IDLETIME and FREQ are checked and then ignored: the store keeps no access
times or counts (see objects.py).
"""

from __future__ import annotations

import xxhash

from geocache.commands.context import Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR
from geocache.commands.table import command
from geocache.protocol.types import OK, Error
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

TYPE_STRING = 0
MARKER = b"GC"
FORMAT_VERSION = 1
CHECKSUM_BYTES = 8
TRAILER_BYTES = len(MARKER) + 1 + CHECKSUM_BYTES
# A payload's bytes beyond its value: the type byte and the trailer.
OVERHEAD_BYTES = 1 + TRAILER_BYTES

BAD_PAYLOAD = Error("ERR DUMP payload version or checksum are wrong")
BAD_FORMAT = Error("ERR Bad data format")
BUSYKEY = Error("BUSYKEY Target key name already exists.")


def _checksum(data: bytes) -> bytes:
    return xxhash.xxh64_intdigest(data).to_bytes(CHECKSUM_BYTES, "little")


def dump_payload(value: bytes) -> bytes:
    body = bytes([TYPE_STRING]) + value + MARKER + bytes([FORMAT_VERSION])
    return body + _checksum(body)


def load_payload(payload: bytes) -> bytes | Error:
    """The value in a payload, or the error RESTORE answers."""
    if len(payload) < 1 + TRAILER_BYTES:
        return BAD_PAYLOAD
    body, checksum = payload[:-CHECKSUM_BYTES], payload[-CHECKSUM_BYTES:]
    if body[-3:] != MARKER + bytes([FORMAT_VERSION]) or _checksum(body) != checksum:
        return BAD_PAYLOAD
    if body[0] != TYPE_STRING:
        return BAD_FORMAT
    return body[1:-3]


@command("dump", 2, "readonly", group="generic", summary="Serialize the value stored at key")
def cmd_dump(session: Session, argv: list[bytes]) -> object:
    entry = session.store.lookup(argv[1])
    return None if entry is None else dump_payload(entry[0])


def _restore_options(argv: list[bytes]) -> tuple[bool, bool] | Error:
    """(replace, absttl), with Redis's checks of IDLETIME and FREQ."""
    replace = absttl = False
    idle = freq = False
    j = 4
    while j < len(argv):
        option, more = argv[j].upper(), len(argv) - j - 1
        if option == b"REPLACE":
            replace = True
        elif option == b"ABSTTL":
            absttl = True
        elif more and ((option == b"IDLETIME" and not freq) or (option == b"FREQ" and not idle)):
            try:
                number = parse_int(argv[j + 1])
            except StoreError:
                return NOT_INTEGER
            if option == b"IDLETIME" and number < 0:
                return Error("ERR Invalid IDLETIME value, must be >= 0")
            if option == b"FREQ" and not 0 <= number <= 255:
                return Error("ERR Invalid FREQ value, must be >= 0 and <= 255")
            idle, freq = idle or option == b"IDLETIME", freq or option == b"FREQ"
            j += 1
        else:
            return SYNTAX_ERROR
        j += 1
    return replace, absttl


@command("restore", -4, "write", group="generic", summary="Create a key from a DUMP payload")
def cmd_restore(session: Session, argv: list[bytes]) -> object:
    options = _restore_options(argv)
    if isinstance(options, Error):
        return options
    replace, absttl = options
    store, key = session.store, argv[1]
    if not replace and store.peek(key) is not None:
        return BUSYKEY
    try:
        ttl_ms = parse_int(argv[2])
    except StoreError:
        return NOT_INTEGER
    if ttl_ms < 0:
        return Error("ERR Invalid TTL value, must be >= 0")
    value = load_payload(argv[3])
    if isinstance(value, Error):
        return value
    now = session.node.clock.wall_ms()
    expires_at = ttl_ms if absttl or not ttl_ms else ttl_ms + now
    if expires_at and expires_at <= now:
        # Already expired: Redis deletes the old key (with REPLACE) and adds nothing.
        if replace:
            store.delete(key)
        return OK
    store.set(key, value, expires_at)
    return OK
