"""LATENCY: Redis's latency monitor, answering as one that is off and has seen nothing.

Redis's monitor records events (fork, expire cycles, slow commands) over
`latency-monitor-threshold`, which is 0 (off) by default; tools call LATENCY LATEST or
DOCTOR to look. Per-command latency lives in INFO commandstats and /metrics instead.
"""

from __future__ import annotations

from geocache.commands.context import Session
from geocache.commands.table import SubHandler, command, subcommand
from geocache.protocol.types import Error, Simple, Verbatim

_HELP = [
    Simple(line)
    for line in (
        "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DOCTOR",
        "    Return a human readable latency analysis report.",
        "GRAPH <event>",
        "    Return an ASCII latency graph for the <event> class.",
        "HISTORY <event>",
        "    Return time-latency samples for the <event> class.",
        "LATEST",
        "    Return the latest latency samples for all events.",
        "RESET [<event> ...]",
        "    Reset latency data of one or more <event> classes.",
        "    (default: reset all data for all event classes)",
        "HELP",
        "    Prints this help.",
    )
]
# Redis's text when the monitor is off, word for word.
_DOCTOR = (
    "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis "
    'instance. You may use "CONFIG SET latency-monitor-threshold <milliseconds>." in order '
    "to enable it. If we weren't in a deep space mission I'd suggest to take a look at "
    "https://redis.io/topics/latency-monitor.\n"
)


def _graph(session: Session, argv: list[bytes]) -> object:
    event = argv[2].decode("utf-8", "surrogateescape")
    return Error(f"ERR No samples available for event '{event}'")


_LATENCY: dict[bytes, tuple[int, SubHandler]] = {
    b"LATEST": (2, lambda s, a: []),
    b"HISTORY": (3, lambda s, a: []),
    b"RESET": (-2, lambda s, a: 0),
    b"GRAPH": (3, _graph),
    b"DOCTOR": (2, lambda s, a: Verbatim(_DOCTOR)),
    b"HELP": (2, lambda s, a: _HELP),
}


@command("latency", -2, "admin", keys=(0, 0, 0), group="server", summary="The latency monitor")
def cmd_latency(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, _LATENCY, "LATENCY")
