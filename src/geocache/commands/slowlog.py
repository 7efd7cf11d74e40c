"""The slow log (Redis's slowlog.c): the last commands that took longer than a threshold.

And the SLOWLOG command that reads it.

The RESP command loop (server/resp.py) already times every command for the latency
histograms; a command whose time reaches `threshold_ns` is added here, newest first,
and the oldest entries go past `max_len`. What is timed is parse, run and encode of one
command (Redis times the run alone), so entries can be a little longer than Redis's.
Deferred commands (waiting on other nodes) are not timed, so never logged.

Like Redis, an entry keeps at most 32 arguments of 128 bytes each; AUTH and HELLO are
never logged (they carry passwords).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from geocache.commands.context import Session
from geocache.commands.table import SubHandler, command, subcommand
from geocache.protocol.types import OK, Error, Simple
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

# Redis's defaults: slowlog-log-slower-than 10000 (us), slowlog-max-len 128.
DEFAULT_SLOWER_THAN_US = 10_000
DEFAULT_MAX_LEN = 128
# What an entry keeps of a command (Redis's SLOWLOG_ENTRY_MAX_ARGC and _MAX_STRING).
MAX_ARGC = 32
MAX_ARG_BYTES = 128
# Never logged: their arguments are credentials.
_SECRET = frozenset({b"auth", b"hello", b"gc.auth"})
# A threshold no command reaches (the log is off): about 292 years in ns.
_NEVER_NS = 1 << 63


@dataclass(frozen=True, slots=True)
class SlowEntry:
    id: int
    time_s: int
    duration_us: int
    argv: tuple[bytes, ...]
    addr: str
    name: bytes

    def reply(self) -> list[object]:
        """The entry as SLOWLOG GET shows it."""
        return [
            self.id,
            self.time_s,
            self.duration_us,
            list(self.argv),
            self.addr.encode(),
            self.name,
        ]


class SlowLog:
    __slots__ = ("_entries", "_next_id", "max_len", "slower_than_us", "threshold_ns")

    def __init__(
        self, slower_than_us: int = DEFAULT_SLOWER_THAN_US, max_len: int = DEFAULT_MAX_LEN
    ) -> None:
        self._entries: deque[SlowEntry] = deque()
        self._next_id = 0
        self.slower_than_us = self.threshold_ns = 0
        self.max_len = max_len
        self.configure(slower_than_us, max_len)

    def configure(self, slower_than_us: int, max_len: int) -> None:
        """CONFIG SET: a negative threshold turns the log off; 0 logs every command."""
        self.slower_than_us = slower_than_us
        self.threshold_ns = _NEVER_NS if slower_than_us < 0 else slower_than_us * 1000
        self.max_len = max_len
        while len(self._entries) > max_len:
            self._entries.pop()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, argv: list[bytes], duration_ns: int, now_ms: int, addr: str, name: bytes) -> None:
        if argv[0].lower() in _SECRET or not self.max_len:
            return
        entry = SlowEntry(
            self._next_id, now_ms // 1000, duration_ns // 1000, _trimmed(argv), addr, name
        )
        self._entries.appendleft(entry)
        self._next_id += 1
        if len(self._entries) > self.max_len:
            self._entries.pop()

    def latest(self, count: int) -> list[SlowEntry]:
        """The newest `count` entries, newest first (-1: all)."""
        entries = list(self._entries)
        return entries if count < 0 else entries[:count]

    def reset(self) -> None:
        self._entries.clear()


def _cut(arg: bytes) -> bytes:
    return b"%s... (%d more bytes)" % (arg[:MAX_ARG_BYTES], len(arg) - MAX_ARG_BYTES)


def _trimmed(argv: list[bytes]) -> tuple[bytes, ...]:
    kept = argv if len(argv) <= MAX_ARGC else argv[: MAX_ARGC - 1]
    out = [arg if len(arg) <= MAX_ARG_BYTES else _cut(arg) for arg in kept]
    if len(argv) > MAX_ARGC:
        out.append(b"... (%d more arguments)" % (len(argv) - MAX_ARGC + 1))
    return tuple(out)


# -- SLOWLOG ------------------------------------------------------------------------------

_HELP = [
    Simple(line)
    for line in (
        "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET [<count>]",
        "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
        "    Entries are made of:",
        "    id, timestamp, time in microseconds, arguments array, client IP and port,",
        "    client name",
        "LEN",
        "    Return the length of the slowlog.",
        "RESET",
        "    Reset the slowlog.",
        "HELP",
        "    Prints this help.",
    )
]
_BAD_COUNT = Error("ERR count should be greater than or equal to -1")
# SLOWLOG GET without a count: Redis's default.
DEFAULT_GET_COUNT = 10


def _get(session: Session, argv: list[bytes]) -> object:
    if len(argv) > 3:
        return Error(
            "ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP."
        )
    count = DEFAULT_GET_COUNT
    if len(argv) == 3:
        try:
            count = parse_int(argv[2])
        except StoreError:
            return _BAD_COUNT
        if count < -1:
            return _BAD_COUNT
    return [entry.reply() for entry in session.node.slowlog.latest(count)]


def _reset(session: Session, argv: list[bytes]) -> object:
    session.node.slowlog.reset()
    return OK


_SLOWLOG: dict[bytes, tuple[int, SubHandler]] = {
    b"GET": (-2, _get),
    b"LEN": (2, lambda s, a: len(s.node.slowlog)),
    b"RESET": (2, _reset),
    b"HELP": (2, lambda s, a: _HELP),
}


@command("slowlog", -2, "admin", keys=(0, 0, 0), group="server", summary="The slow log")
def cmd_slowlog(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, _SLOWLOG, "SLOWLOG")
