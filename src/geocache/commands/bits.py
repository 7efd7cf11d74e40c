"""Bit commands (Redis's bitops.c): SETBIT, GETBIT, BITCOUNT, BITPOS.

Bit 0 is the most significant bit of byte 0, as in Redis. Ranges follow Redis 7.0:
BYTE (default) or BIT units, negative indexes from the end, and the checks in Redis's
order (BITCOUNT and BITPOS look the key up before they parse the range, so a missing
key answers before a bad range is noticed). The range is cut out as one int, so
counting (int.bit_count) and searching (int.bit_length) run in C, not bit by bit.
"""

from __future__ import annotations

from geocache.commands.context import Session
from geocache.commands.strings import NOT_INTEGER, SYNTAX_ERROR, default_expiry
from geocache.commands.table import command
from geocache.protocol.types import Error
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

BAD_OFFSET = Error("ERR bit offset is not an integer or out of range")
BAD_BIT = Error("ERR bit is not an integer or out of range")


def _offset(session: Session, raw: bytes) -> int | None:
    """A bit offset within the largest value (proto-max-bulk-len), else None."""
    try:
        offset = parse_int(raw)
    except StoreError:
        return None
    if offset < 0 or offset >> 3 >= session.node.config.max_value_bytes:
        return None
    return offset


@command("setbit", 4, "write", summary="Set or clear the bit at offset in a string")
def cmd_setbit(session: Session, argv: list[bytes]) -> object:
    offset = _offset(session, argv[2])
    if offset is None:
        return BAD_OFFSET
    if argv[3] not in (b"0", b"1"):
        return BAD_BIT
    store, key = session.store, argv[1]
    entry = store.peek(key)
    old = entry[0] if entry is not None else b""
    index, mask = offset >> 3, 0x80 >> (offset & 7)
    value = bytearray(old.ljust(index + 1, b"\x00")) if len(old) <= index else bytearray(old)
    previous = 1 if value[index] & mask else 0
    if argv[3] == b"1":
        value[index] |= mask
    else:
        value[index] &= ~mask
    store.set(key, bytes(value), entry[1] if entry is not None else default_expiry(session))
    return previous


@command("getbit", 3, "readonly fast", summary="Return the bit value at offset in a string")
def cmd_getbit(session: Session, argv: list[bytes]) -> object:
    offset = _offset(session, argv[2])
    if offset is None:
        return BAD_OFFSET
    entry = session.store.lookup(argv[1])
    if entry is None or offset >> 3 >= len(entry[0]):
        return 0
    return 1 if entry[0][offset >> 3] & (0x80 >> (offset & 7)) else 0


def _unit_is_bit(raw: bytes) -> bool | None:
    unit = raw.upper()
    return True if unit == b"BIT" else False if unit == b"BYTE" else None


def _bit_range(start: int, end: int, length: int, is_bit: bool) -> tuple[int, int]:
    """Redis's index normalization; returns an inclusive range in bits (empty if start > end)."""
    total = length * 8 if is_bit else length
    if start < 0:
        start += total
    if end < 0:
        end += total
    start, end = max(start, 0), max(end, 0)
    end = min(end, total - 1)
    if is_bit:
        return start, end
    return start * 8, end * 8 + 7


def _bits_in(value: bytes, first: int, last: int) -> int:
    """The bits first..last (inclusive, bit 0 = MSB of byte 0) as one int, MSB first."""
    chunk = int.from_bytes(value[first >> 3 : (last >> 3) + 1], "big")
    return (chunk >> (7 - (last & 7))) & ((1 << (last - first + 1)) - 1)


@command("bitcount", -2, "readonly", summary="Count set bits in a string")
def cmd_bitcount(session: Session, argv: list[bytes]) -> object:
    entry = session.store.lookup(argv[1])
    if entry is None:
        return 0
    value = entry[0]
    if len(argv) == 2:
        return int.from_bytes(value, "big").bit_count()
    if len(argv) > 5 or len(argv) == 3:
        return SYNTAX_ERROR
    try:
        start, end = parse_int(argv[2]), parse_int(argv[3])
    except StoreError:
        return NOT_INTEGER
    if start < 0 and end < 0 and start > end:
        return 0
    is_bit = _unit_is_bit(argv[4]) if len(argv) == 5 else False
    if is_bit is None:
        return SYNTAX_ERROR
    first, last = _bit_range(start, end, len(value), is_bit)
    if first > last:
        return 0
    return _bits_in(value, first, last).bit_count()


_BAD_BITPOS_BIT = Error("ERR The bit argument must be 1 or 0.")


@command("bitpos", -3, "readonly", summary="Find the first bit set or clear in a string")
def cmd_bitpos(session: Session, argv: list[bytes]) -> object:
    try:
        bit = parse_int(argv[2])
    except StoreError:
        return NOT_INTEGER
    if bit not in (0, 1):
        return _BAD_BITPOS_BIT
    entry = session.store.lookup(argv[1])
    if entry is None:
        return -1 if bit else 0
    value = entry[0]
    if len(argv) > 6:
        return SYNTAX_ERROR
    end_given, is_bit = len(argv) >= 5, False
    start, end = 0, -1
    try:
        if len(argv) >= 4:
            start = parse_int(argv[3])
        if len(argv) == 6:
            unit = _unit_is_bit(argv[5])
            if unit is None:
                return SYNTAX_ERROR
            is_bit = unit
        if end_given:
            end = parse_int(argv[4])
    except StoreError:
        return NOT_INTEGER
    first, last = _bit_range(start, end, len(value), is_bit)
    if first > last:
        return -1
    return _first_bit(value, first, last, bit, end_given)


def _first_bit(value: bytes, first: int, last: int, bit: int, end_given: bool) -> int:
    """Position of the first `bit` in first..last; past the range, Redis's answers."""
    width = last - first + 1
    bits = _bits_in(value, first, last)
    if not bit:
        bits ^= (1 << width) - 1  # look for a set bit in the complement
    if bits:
        return first + width - bits.bit_length()
    # No such bit in range: a clear bit is then the one just past the string, unless
    # the caller gave an end (the range is not padded with zeros then).
    return last + 1 if not bit and not end_given else -1
