"""A key's record on the wire: how GC.APPLY, GC.APPLYDEL, GC.FETCH and GC.GEO carry it.

A record (store/entry.py) is a key's whole state as the sender holds it: the value
register and the expiry register, each with its (version, origin). The receiver merges
it register by register (store/registers.py). Most records hold one version for both,
and travel exactly as they did before the registers were apart; a record whose expiry
has its own version adds it:

- GC.APPLY key value expires_at_ms version origin [expiry_version expiry_origin]
- GC.APPLYDEL key version origin [expires_at_ms expiry_version expiry_origin]
- GC.FETCH's reply: the entry or tombstone tuple as a RESP array (value first, a bulk
  string, for an entry; the version first, an integer, for a tombstone).
- GC.GEO and GC.APPLYBATCH: per record key, version, origin, expires_at_ms (-1: a
  delete), value, expiry, where expiry is empty or "<expires_at_ms> <version> <origin>"
  (origin last: it may hold spaces). `encode_fields` writes them as RESP bulk strings
  straight into a request being built, the value referenced, not copied.

Every decoder raises ValueError on a malformed record. No I/O.
"""

from __future__ import annotations

from geocache.store.entry import (
    Entry,
    Tombstone,
    is_tombstone,
    make_entry,
    make_tombstone,
    tombstone_expiry,
)

Arg = bytes | str | int
# GC.GEO's fields per record, key included.
GEO_FIELDS = 6


def apply_command(key: bytes, record: Entry | Tombstone) -> tuple[Arg, ...]:
    """The GC.APPLY / GC.APPLYDEL command carrying one record to a replica."""
    if is_tombstone(record):
        return ("GC.APPLYDEL", key, record[0], record[1], *record[3:])
    return ("GC.APPLY", key, *record)


def from_apply(argv: list[bytes]) -> Entry:
    """GC.APPLY's arguments (after the command name and key) as an entry."""
    value, expires, version, origin, *rest = argv
    stamp = (int(version), _text(origin))
    return make_entry(value, int(expires), stamp, _stamp(rest) or stamp)


def from_applydel(argv: list[bytes]) -> Tombstone:
    """GC.APPLYDEL's arguments (after the command name and key) as a tombstone (its
    creation time 0: the store stamps the tombstone it keeps with its own clock)."""
    version, origin, *rest = argv
    stamp = (int(version), _text(origin))
    if not rest:
        return (stamp[0], stamp[1], 0)
    if len(rest) != 3:
        raise ValueError("GC.APPLYDEL takes 2 or 5 arguments after the key")
    return make_tombstone(stamp, 0, int(rest[0]), _stamp(rest[1:]) or stamp)


def _stamp(fields: list[bytes]) -> tuple[int, str] | None:
    if not fields:
        return None
    if len(fields) != 2:
        raise ValueError("an expiry version comes with its origin")
    return int(fields[0]), _text(fields[1])


def fetch_reply(record: Entry | Tombstone | None) -> list[bytes | int] | None:
    """GC.FETCH's reply for what a node holds."""
    if record is None:
        return None
    return [f.encode("utf-8", "surrogateescape") if isinstance(f, str) else f for f in record]


def from_fetch_reply(reply: object) -> Entry | Tombstone | None:
    """GC.FETCH's reply as a record (None: nothing held; a tombstone's creation time 0)."""
    if reply is None:
        return None
    if not isinstance(reply, list) or len(reply) not in (3, 4, 6):
        raise ValueError(f"bad GC.FETCH reply: {reply!r:.100}")
    if isinstance(reply[0], bytes):
        if len(reply) == 3:
            raise ValueError(f"bad GC.FETCH reply: {reply!r:.100}")
        value, expires, version, origin, *rest = reply
        stamp = (_int(version), _text(origin))
        x = (_int(rest[0]), _text(rest[1])) if rest else stamp
        return make_entry(value, _int(expires), stamp, x)
    stamp = (_int(reply[0]), _text(reply[1]))
    if len(reply) == 3:
        return (stamp[0], stamp[1], 0)
    if len(reply) != 6:
        raise ValueError(f"bad GC.FETCH reply: {reply!r:.100}")
    return make_tombstone(stamp, 0, _int(reply[3]), (_int(reply[4]), _text(reply[5])))


def geo_fields(key: bytes, record: Entry | Tombstone) -> list[Arg]:
    """One record's GC.GEO fields."""
    if is_tombstone(record):
        expiry = b"" if len(record) == 3 else _expiry_field(*tombstone_expiry(record))
        return [key, record[0], record[1], -1, b"", expiry]
    value, expires_at_ms, version, origin = record[:4]
    expiry = b"" if len(record) == 4 else _expiry_field(expires_at_ms, record[4], record[5])
    return [key, version, origin, expires_at_ms, value, expiry]


def encode_fields(out: list[bytes], key: bytes, record: Entry | Tombstone) -> None:
    """Append one record's GC.GEO fields to `out` as RESP bulk strings (a request's
    arguments)."""
    for field in geo_fields(key, record):
        if isinstance(field, bytes):
            data = field
        elif isinstance(field, str):
            data = field.encode("utf-8", "surrogateescape")
        else:
            data = b"%d" % field
        out += (b"$%d\r\n" % len(data), data, b"\r\n")


def from_geo_fields(fields: list[bytes]) -> tuple[bytes, Entry | Tombstone]:
    """One record's GC.GEO fields as (key, record)."""
    key, version, origin, expires, value, expiry = fields
    stamp = (int(version), _text(origin))
    deleted = int(expires) < 0
    exp, x = (0 if deleted else int(expires)), stamp
    if expiry:
        raw_exp, raw_version, raw_origin = expiry.split(b" ", 2)
        exp, x = int(raw_exp), (int(raw_version), _text(raw_origin))
    if deleted:
        return key, make_tombstone(stamp, 0, exp, x)
    return key, make_entry(value, exp, stamp, x)


def _expiry_field(expires_at_ms: int, version: int, origin: str) -> bytes:
    return b"%d %d %s" % (expires_at_ms, version, origin.encode("utf-8", "surrogateescape"))


def _text(value: object) -> str:
    if not isinstance(value, bytes):
        raise ValueError(f"expected a bulk string, got {value!r:.100}")
    return value.decode("utf-8", "surrogateescape")


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r:.100}")
    return value
