"""Server commands: INFO, CONFIG, COMMAND, TIME, WAIT and FUNCTION."""

from __future__ import annotations

from geocache.commands.context import Deferred, Session
from geocache.commands.table import Command, SubHandler, command, subcommand
from geocache.config import parse_size
from geocache.protocol.types import OK, Error, Simple, Verbatim
from geocache.store.counters import INT64_MAX, parse_int
from geocache.store.errors import StoreError
from geocache.store.pattern import compile_glob

_NO_KEYS = (0, 0, 0)
DEFAULT_INFO_SECTIONS = ("server", "clients", "memory", "stats", "replication", "keyspace")


def format_info(sections: dict[str, dict[str, object]], wanted: list[str]) -> str:
    """INFO's text: `# Section` headers and `field:value` lines, CRLF-separated."""
    if not wanted or "default" in wanted:
        names = [n for n in sections if n in DEFAULT_INFO_SECTIONS]
    elif "all" in wanted or "everything" in wanted:
        names = list(sections)
    else:
        names = [n for n in sections if n in wanted]
    blocks = []
    for name in names:
        lines = [f"# {name.capitalize()}"]
        lines += [f"{field}:{value}" for field, value in sections[name].items()]
        blocks.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(blocks)


@command("info", -1, "", keys=_NO_KEYS, group="server", summary="Information and statistics")
def cmd_info(session: Session, argv: list[bytes]) -> object:
    wanted = [a.decode("utf-8", "surrogateescape").lower() for a in argv[1:]]
    return Verbatim(format_info(session.node.info_sections(), wanted))


@command("time", 1, "fast", keys=_NO_KEYS, group="server", summary="Return the current server time")
def cmd_time(session: Session, argv: list[bytes]) -> object:
    ms = session.node.clock.wall_ms()
    return [str(ms // 1000).encode(), str((ms % 1000) * 1000).encode()]


# -- CONFIG ---------------------------------------------------------------------------
# Redis parameter name -> (our setting, to text, from text). Settings without a node
# field report fixed values so that tools probing them (redis-benchmark asks for
# "save" and "appendonly") get sensible answers.


_CONFIG_SETTINGS: dict[str, str] = {
    "maxmemory": "max_bytes",
    "maxclients": "max_clients",
    "timeout": "idle_timeout_s",
    "requirepass": "requirepass",
    "proto-max-bulk-len": "max_value_bytes",
    "client-query-buffer-limit": "max_query_buffer_bytes",
    "port": "port",
    "bind": "bind",
}
_CONFIG_FIXED = {
    "save": "",
    "appendonly": "no",
    "maxmemory-policy": "allkeys-lru",
    "hz": "10",
}
# The slow log's settings live in the slow log (commands/slowlog.py); (min, max) each.
_SLOWLOG_SETTINGS = {
    "slowlog-max-len": (0, INT64_MAX),
    "slowlog-log-slower-than": (-1, INT64_MAX),
}


def _config_values(session: Session) -> dict[str, str]:
    config, slowlog = session.node.config, session.node.slowlog
    values = {name: str(getattr(config, field)) for name, field in _CONFIG_SETTINGS.items()}
    values.update(_CONFIG_FIXED)
    values["databases"] = str(len(session.node.databases))
    values["slowlog-max-len"] = str(slowlog.max_len)
    values["slowlog-log-slower-than"] = str(slowlog.slower_than_us)
    return values


def _slowlog_setting(name: str, raw: str) -> int | Error:
    low, high = _SLOWLOG_SETTINGS[name]
    try:
        value = parse_int(raw.encode())
    except StoreError:
        return _config_error(name, "argument couldn't be parsed into an integer")
    if not low <= value <= high:
        return _config_error(name, f"argument must be between {low} and {high} inclusive")
    return value


def _config_error(name: str, reason: str) -> Error:
    return Error(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")


def _config_get(session: Session, argv: list[bytes]) -> object:
    values = _config_values(session)
    result: dict[bytes, bytes] = {}
    for raw in argv[2:]:
        match = compile_glob(raw.lower())
        for name, value in values.items():
            if match(name.encode()):
                result[name.encode()] = value.encode()
    return result


_SETTABLE = {"maxmemory", "maxclients", "timeout", "requirepass"}


def _config_set(session: Session, argv: list[bytes]) -> object:
    if len(argv) % 2 != 0:
        return Error("ERR wrong number of arguments for 'config|set' command")
    changes: dict[str, object] = {}
    slowlog = session.node.slowlog
    slow = {"slowlog-max-len": slowlog.max_len, "slowlog-log-slower-than": slowlog.slower_than_us}
    for raw_name, raw_value in zip(argv[2::2], argv[3::2], strict=True):
        name = raw_name.decode("utf-8", "surrogateescape").lower()
        try:
            value = raw_value.decode()
        except UnicodeDecodeError:
            return Error(
                f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
                "argument is not valid UTF-8"
            )
        if name in _CONFIG_FIXED and value == _CONFIG_FIXED[name]:
            continue
        if name == "databases":
            return _config_error(name, "can't set immutable config")
        if name in _SLOWLOG_SETTINGS:
            setting = _slowlog_setting(name, value)
            if isinstance(setting, Error):
                return setting
            slow[name] = setting
            continue
        if name not in _SETTABLE:
            return Error(f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
        field = _CONFIG_SETTINGS[name]
        try:
            changes[field] = value if field == "requirepass" else parse_size(value)
        except ValueError:
            return Error(
                f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
                "argument couldn't be parsed into an integer"
            )
    try:
        session.node.apply_config(session.node.config.replace(**changes))
    except ValueError as exc:
        return Error(f"ERR CONFIG SET failed - {exc}")
    slowlog.configure(slow["slowlog-log-slower-than"], slow["slowlog-max-len"])
    return OK


def _config_resetstat(session: Session, argv: list[bytes]) -> object:
    session.node.reset_stats()
    return OK


_CONFIG: dict[bytes, tuple[int, SubHandler]] = {
    b"GET": (-3, _config_get),
    b"SET": (-4, _config_set),
    b"RESETSTAT": (2, _config_resetstat),
    b"HELP": (
        2,
        lambda s, a: [b"CONFIG <subcommand>: GET <pattern>, SET <name> <value>, RESETSTAT"],
    ),
}


@command("config", -2, "admin", keys=_NO_KEYS, group="server", summary="Read or change settings")
def cmd_config(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, _CONFIG, "CONFIG")


# -- COMMAND --------------------------------------------------------------------------


def internal(cmd: Command) -> bool:
    """A geocache-internal command (GC.*: the `peer`-flagged ones, the handshake and the
    map for geocache's own client), shown only to proven peers."""
    return cmd.peer or cmd.name.startswith(b"gc.")


def _commands(session: Session) -> list[Command]:
    """The node's commands this session may see, by name."""
    shown = {c.name: c for c in session.node.table.values() if session.peer_id or not internal(c)}
    return sorted(shown.values(), key=lambda c: c.name)


def command_info(cmd: Command) -> list[object]:
    flags = [Simple(f) for f in sorted(cmd.flags) if f in ("write", "readonly", "fast", "admin")]
    return [
        cmd.name,
        cmd.arity,
        flags,
        cmd.first_key,
        cmd.last_key,
        cmd.step,
        [Simple("@" + cmd.group)],
        [],
        [],
        [],
    ]


def _find(session: Session, name: bytes) -> Command | None:
    return {c.name: c for c in _commands(session)}.get(name.lower())


def _command_info(session: Session, argv: list[bytes]) -> object:
    if len(argv) == 2:
        return [command_info(c) for c in _commands(session)]
    found = [_find(session, name) for name in argv[2:]]
    return [command_info(c) if c is not None else None for c in found]


def _command_docs(session: Session, argv: list[bytes]) -> object:
    if len(argv) == 2:
        wanted = _commands(session)
    else:
        wanted = [c for n in argv[2:] if (c := _find(session, n))]
    return {
        c.name: {b"summary": c.summary.encode(), b"since": b"1.0.0", b"group": c.group.encode()}
        for c in wanted
    }


_COMMAND: dict[bytes, tuple[int, SubHandler]] = {
    b"COUNT": (2, lambda s, a: len(_commands(s))),
    b"INFO": (-2, _command_info),
    b"DOCS": (-2, _command_docs),
    b"LIST": (-2, lambda s, a: [c.name for c in _commands(s)]),
    b"HELP": (
        2,
        lambda s, a: [b"COMMAND <subcommand>: COUNT, INFO [name ...], DOCS [name ...], LIST"],
    ),
}


@command("command", -1, "", keys=_NO_KEYS, group="server", summary="Details about commands")
def cmd_command(session: Session, argv: list[bytes]) -> object:
    if len(argv) == 1:
        return [command_info(c) for c in _commands(session)]
    return subcommand(session, argv, _COMMAND, "COMMAND")


# -- WAIT ---------------------------------------------------------------------------------


@command("wait", 3, "", keys=_NO_KEYS, group="generic", summary="Wait for replicas")
def cmd_wait(session: Session, argv: list[bytes]) -> object:
    """No Redis replicas acknowledge here: 0, after the timeout when replicas were asked
    for (at once for a timeout of 0, where Redis would block for ever). In a cluster a
    write is answered once `--write-acks` owners hold it, which is what WAIT is for."""
    try:
        wanted = parse_int(argv[1])
    except StoreError:
        return Error("ERR value is not an integer or out of range")
    try:
        timeout_ms = parse_int(argv[2])
    except StoreError:
        return Error("ERR timeout is not an integer or out of range")
    if timeout_ms < 0:
        return Error("ERR timeout is negative")
    if wanted <= 0 or not timeout_ms or session.multi is not None:
        return 0
    return Deferred(_no_replicas_after(session, timeout_ms))


async def _no_replicas_after(session: Session, timeout_ms: int) -> int:
    await session.node.sleep_ms(timeout_ms)
    return 0


# -- FUNCTION -----------------------------------------------------------------------------
# No scripting engine: the library is always empty. Test harnesses and tools call
# FUNCTION FLUSH and FUNCTION LIST when they start.


def _function_flush(session: Session, argv: list[bytes]) -> object:
    if len(argv) > 3:
        return Error(
            "ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP."
        )
    if len(argv) == 3 and argv[2].upper() not in (b"ASYNC", b"SYNC"):
        return Error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    return OK


def _function_list(session: Session, argv: list[bytes]) -> object:
    with_code = library = False
    i = 2
    while i < len(argv):
        option = argv[i].upper()
        if option == b"WITHCODE" and not with_code:
            with_code = True
        elif option == b"LIBRARYNAME" and not library:
            if i >= len(argv) - 1:
                return Error("ERR library name argument was not given")
            library = True
            i += 1
        else:
            return Error(f"ERR Unknown argument {argv[i].decode('utf-8', 'surrogateescape')}")
        i += 1
    return []


_FUNCTION: dict[bytes, tuple[int, SubHandler]] = {
    b"FLUSH": (-2, _function_flush),
    b"LIST": (-2, _function_list),
}


@command("function", -2, "", keys=_NO_KEYS, group="scripting", summary="Functions (none here)")
def cmd_function(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, _FUNCTION, "FUNCTION")
