"""Server commands: INFO, CONFIG, COMMAND and TIME."""

from __future__ import annotations

from geocache.commands.context import Session
from geocache.commands.table import Command, SubHandler, build_table, command, subcommand
from geocache.config import parse_size
from geocache.protocol.types import OK, Error, Simple, Verbatim
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
    "databases": "1",
    "maxmemory-policy": "allkeys-lru",
    "hz": "10",
}


def _config_values(session: Session) -> dict[str, str]:
    config = session.node.config
    values = {name: str(getattr(config, field)) for name, field in _CONFIG_SETTINGS.items()}
    values.update(_CONFIG_FIXED)
    return values


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

_TABLE: dict[bytes, Command] = {}


def _commands() -> list[Command]:
    if not _TABLE:
        _TABLE.update(build_table())
    return sorted({c.name: c for c in _TABLE.values()}.values(), key=lambda c: c.name)


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


def _find(name: bytes) -> Command | None:
    return {c.name: c for c in _commands()}.get(name.lower())


def _command_info(session: Session, argv: list[bytes]) -> object:
    if len(argv) == 2:
        return [command_info(c) for c in _commands()]
    found = [_find(name) for name in argv[2:]]
    return [command_info(c) if c is not None else None for c in found]


def _command_docs(session: Session, argv: list[bytes]) -> object:
    wanted = _commands() if len(argv) == 2 else [c for n in argv[2:] if (c := _find(n))]
    return {
        c.name: {b"summary": c.summary.encode(), b"since": b"1.0.0", b"group": c.group.encode()}
        for c in wanted
    }


_COMMAND: dict[bytes, tuple[int, SubHandler]] = {
    b"COUNT": (2, lambda s, a: len(_commands())),
    b"INFO": (-2, _command_info),
    b"DOCS": (-2, _command_docs),
    b"LIST": (-2, lambda s, a: [c.name for c in _commands()]),
    b"HELP": (
        2,
        lambda s, a: [b"COMMAND <subcommand>: COUNT, INFO [name ...], DOCS [name ...], LIST"],
    ),
}


@command("command", -1, "", keys=_NO_KEYS, group="server", summary="Details about commands")
def cmd_command(session: Session, argv: list[bytes]) -> object:
    if len(argv) == 1:
        return [command_info(c) for c in _commands()]
    return subcommand(session, argv, _COMMAND, "COMMAND")
