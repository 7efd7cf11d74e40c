"""Connection commands: PING, ECHO, HELLO, AUTH, QUIT, RESET and CLIENT (SELECT:
databases.py).

A wrong password (AUTH, HELLO AUTH) is answered late, and later each time in a row: the
k-th failure in a row sets `session.hold_ms` to AUTH_DELAY_MS * 2**(k-1) (at most
AUTH_DELAY_MAX_MS), which the server honours by holding the reply and reading nothing
more from that connection meanwhile; the `auth_max_failures`-th closes the connection
after its reply. A guessing client gets a handful of tries per connection and seconds
per try, where it had 95,000 a second; a user's typo costs 10 ms.
"""

from __future__ import annotations

import hmac

from geocache.commands.context import Session
from geocache.commands.strings import SYNTAX_ERROR
from geocache.commands.table import SubHandler, command, subcommand
from geocache.protocol.types import OK, PONG, Error, Simple, Verbatim
from geocache.store.counters import parse_int
from geocache.store.errors import StoreError

# The Redis version whose replies we follow; clients gate features on it.
REDIS_COMPAT_VERSION = "7.0.15"
_NO_KEYS = (0, 0, 0)
WRONGPASS = Error("WRONGPASS invalid username-password pair or user is disabled.")
# The first wrong password in a row is answered after 10 ms, each next one after twice
# as long, up to 2 s (ms).
AUTH_DELAY_MS = 10
AUTH_DELAY_MAX_MS = 2_000


@command("ping", -1, "fast", keys=_NO_KEYS, group="connection", summary="Ping the server")
def cmd_ping(session: Session, argv: list[bytes]) -> object:
    if len(argv) > 2:
        return Error("ERR wrong number of arguments for 'ping' command")
    return PONG if len(argv) == 1 else argv[1]


@command("echo", 2, "fast", keys=_NO_KEYS, group="connection", summary="Echo the given string")
def cmd_echo(session: Session, argv: list[bytes]) -> object:
    return argv[1]


def _password_ok(session: Session, username: bytes, password: bytes) -> bool:
    required = session.node.config.requirepass.encode()
    if username != b"default":
        return False
    return not required or hmac.compare_digest(password, required)


@command("auth", -2, "fast noauth", keys=_NO_KEYS, group="connection", summary="Authenticate")
def cmd_auth(session: Session, argv: list[bytes]) -> object:
    if len(argv) > 3:
        return SYNTAX_ERROR
    if len(argv) == 2:
        if not session.node.config.requirepass:
            return Error(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        username, password = b"default", argv[1]
    else:
        username, password = argv[1], argv[2]
    if not _password_ok(session, username, password):
        return _wrong_password(session)
    session.authenticated = True
    session.auth_failures = 0
    return OK


def _wrong_password(session: Session) -> Error:
    """Count a failure in a row; hold the reply longer each time; close at the limit.
    Without a password configured there is nothing to guess: the reply is Redis's."""
    if not session.node.config.requirepass:
        return WRONGPASS
    session.auth_failures += 1
    shift = min(session.auth_failures - 1, 16)
    session.hold_ms = min(AUTH_DELAY_MS << shift, AUTH_DELAY_MAX_MS)
    if session.auth_failures >= session.node.config.auth_max_failures:
        session.closing = True
    return WRONGPASS


def _text(raw: bytes) -> str:
    """Client bytes as text that the writer turns back into the same bytes."""
    return raw.decode("utf-8", "surrogateescape")


def _valid_name(name: bytes) -> bool:
    return all(0x21 <= c <= 0x7E for c in name)


_BAD_NAME = Error("ERR Client names cannot contain spaces, newlines or special characters.")


@command("hello", -1, "fast noauth", keys=_NO_KEYS, group="connection", summary="Handshake")
def cmd_hello(session: Session, argv: list[bytes]) -> object:
    version = 0
    if len(argv) >= 2:
        try:
            version = parse_int(argv[1])
        except StoreError:
            return Error("ERR Protocol version is not an integer or out of range")
        if not 2 <= version <= 3:
            return Error("NOPROTO unsupported protocol version")
    credentials, name, j = None, None, 2
    while j < len(argv):
        option, more = argv[j].upper(), len(argv) - 1 - j
        if option == b"AUTH" and more >= 2:
            credentials = (argv[j + 1], argv[j + 2])
            j += 3
        elif option == b"SETNAME" and more >= 1:
            name = argv[j + 1]
            if not _valid_name(name):
                return _BAD_NAME
            j += 2
        else:
            return Error(
                f"ERR Syntax error in HELLO option '{argv[j].decode('utf-8', 'surrogateescape')}'"
            )
    if credentials is not None:
        if not _password_ok(session, *credentials):
            return _wrong_password(session)
        session.authenticated = True
        session.auth_failures = 0
    if not session.authenticated:
        return Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        session.name = name
    if version:
        session.proto = session.reply_proto = version
    return {
        b"server": b"redis",
        b"version": REDIS_COMPAT_VERSION.encode(),
        b"proto": session.proto,
        b"id": session.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


@command(
    "quit", -1, "fast noauth", keys=_NO_KEYS, group="connection", summary="Close the connection"
)
def cmd_quit(session: Session, argv: list[bytes]) -> object:
    session.closing = True
    return OK


@command(
    "reset", 1, "fast noauth", keys=_NO_KEYS, group="connection", summary="Reset the connection"
)
def cmd_reset(session: Session, argv: list[bytes]) -> object:
    session.proto = session.reply_proto = 2
    session.name = b""
    session.authenticated = not session.node.config.requirepass
    session.db, session.store = 0, session.node.store
    session.no_evict = False
    return Simple("RESET")


def client_line(session: Session, now_ms: int) -> str:
    age_s = (now_ms - session.created_ms) // 1000
    idle_s = (now_ms - session.last_ms) // 1000
    flags = "e" if session.no_evict else "N"
    return (
        f"id={session.id} addr={session.addr} laddr={session.laddr} fd=-1 "
        f"name={_text(session.name)} age={age_s} idle={idle_s} flags={flags} db={session.db} "
        f"sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 "
        f"omem=0 tot-mem=0 events=r cmd={session.last_cmd.decode()} user=default redir=-1 "
        f"resp={session.reply_proto} lib-name={_text(session.lib_name)} "
        f"lib-ver={_text(session.lib_ver)}"
    )


def _client_setname(session: Session, argv: list[bytes]) -> object:
    if not _valid_name(argv[2]):
        return _BAD_NAME
    session.name = argv[2]
    return OK


def _client_setinfo(session: Session, argv: list[bytes]) -> object:
    attr = argv[2].upper()
    if attr not in (b"LIB-NAME", b"LIB-VER"):
        return Error(f"ERR Unrecognized option '{argv[2].decode('utf-8', 'surrogateescape')}'")
    if any(c < 0x21 or c > 0x7E for c in argv[3]):
        return Error(f"ERR {attr.decode()} cannot contain spaces, newlines or special characters.")
    if attr == b"LIB-NAME":
        session.lib_name = argv[3]
    else:
        session.lib_ver = argv[3]
    return OK


def _client_list(session: Session, argv: list[bytes]) -> object:
    now = session.node.clock.mono_ms()
    return Verbatim("".join(client_line(s, now) + "\n" for s in session.node.sessions()))


_CLIENT_HELP = [
    Simple(line)
    for line in (
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are:",
        "    * ADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made from the specified address",
        "    * LADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made to specified local address",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Kill connections by type.",
        "    * USER <username>",
        "      Kill connections authenticated by <username>.",
        "    * SKIPME (YES|NO)",
        "      Skip killing current connection (default: yes).",
        "LIST [options ...]",
        "    Return information about client connections. Options:",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Return clients of specified type.",
        "UNPAUSE",
        "    Stop the current client pause, resuming traffic.",
        "PAUSE <timeout> [WRITE|ALL]",
        "    Suspend all, or just write, clients for <timeout> milliseconds.",
        "REPLY (ON|OFF|SKIP)",
        "    Control the replies sent to the current connection.",
        "SETINFO <option> <value>",
        "    Set client meta attributes (LIB-NAME, LIB-VER).",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "NO-EVICT (ON|OFF)",
        "    Protect current client connection from eviction.",
        "HELP",
        "    Prints this help.",
    )
]

_CLIENT_TYPES = {
    b"normal": b"normal",
    b"master": b"master",
    b"slave": b"replica",
    b"replica": b"replica",
    b"pubsub": b"pubsub",
}


def client_type(session: Session) -> bytes:
    """A cluster peer's connection is a replica link; every other is a normal client."""
    return b"replica" if session.peer_id else b"normal"


def _kill_filters(argv: list[bytes]) -> dict[bytes, bytes] | Error:
    """CLIENT KILL's new form: option -> value, with Redis's errors."""
    filters: dict[bytes, bytes] = {b"SKIPME": b"yes"}
    for option, value in zip(argv[2::2], argv[3::2], strict=True):
        name = option.upper()
        if name == b"ID":
            if not value.isdigit() or int(value) < 1 or int(value) > 2**63 - 1:
                return Error("ERR client-id should be greater than 0")
        elif name == b"TYPE":
            if value.lower() not in _CLIENT_TYPES:
                return Error(f"ERR Unknown client type '{_text(value)}'")
            value = _CLIENT_TYPES[value.lower()]
        elif name == b"USER":
            if value != b"default":
                return Error(f"ERR No such user '{_text(value)}'")
        elif name == b"SKIPME":
            if value.lower() not in (b"yes", b"no"):
                return SYNTAX_ERROR
            value = value.lower()
        elif name not in (b"ADDR", b"LADDR"):
            return SYNTAX_ERROR
        filters[name] = value
    return filters


def _matches(session: Session, me: Session, filters: dict[bytes, bytes]) -> bool:
    wanted_id = filters.get(b"ID")
    return (
        (wanted_id is None or int(wanted_id) == session.id)
        and filters.get(b"ADDR", session.addr.encode()) == session.addr.encode()
        and filters.get(b"LADDR", session.laddr.encode()) == session.laddr.encode()
        and filters.get(b"TYPE", client_type(session)) == client_type(session)
        and not (filters[b"SKIPME"] == b"yes" and session is me)
    )


def _client_kill(session: Session, argv: list[bytes]) -> object:
    """Redis's clientKillCommand: `KILL addr` (OK or an error), or filters (a count)."""
    if len(argv) == 3:
        filters: dict[bytes, bytes] | Error = {b"ADDR": argv[2], b"SKIPME": b"no"}
    elif len(argv) % 2 == 0:
        filters = _kill_filters(argv)
    else:
        return SYNTAX_ERROR
    if isinstance(filters, Error):
        return filters
    killed = 0
    for other in list(session.node.sessions()):
        if not _matches(other, session, filters):
            continue
        killed += 1
        if other is session:
            session.closing = True  # after this reply, as Redis
        else:
            session.node.kill_client(other.id)
    if len(argv) == 3:
        return OK if killed else Error("ERR No such client")
    return killed


def _timeout_ms(raw: bytes) -> int | Error:
    try:
        timeout = parse_int(raw)
    except StoreError:
        return Error("ERR timeout is not an integer or out of range")
    if timeout < 0:
        return Error("ERR timeout is negative")
    return timeout


def _client_pause(session: Session, argv: list[bytes]) -> object:
    if len(argv) > 4:
        return Error(
            "ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP."
        )
    timeout = _timeout_ms(argv[2])
    if isinstance(timeout, Error):
        return timeout
    mode = argv[3].upper() if len(argv) == 4 else b"ALL"
    if mode not in (b"WRITE", b"ALL"):
        return Error("ERR CLIENT PAUSE mode must be WRITE or ALL")
    session.node.pause_clients(timeout, all_commands=mode == b"ALL")
    return OK


def _client_unpause(session: Session, argv: list[bytes]) -> object:
    session.node.unpause_clients()
    return OK


def _client_no_evict(session: Session, argv: list[bytes]) -> object:
    """Accepted and shown in CLIENT LIST (flag e); client buffers are never evicted here."""
    flag = argv[2].lower()
    if flag not in (b"on", b"off"):
        return SYNTAX_ERROR
    session.no_evict = flag == b"on"
    return OK


def _client_reply(session: Session, argv: list[bytes]) -> object:
    """ON, OFF, or SKIP (the next command's reply): the server sends nothing while
    `proto` is 0 or less (server/resp.py)."""
    mode = argv[2].upper()
    if mode == b"ON":
        session.proto = session.reply_proto
        return OK
    if mode == b"OFF":
        session.proto = 0
    elif mode == b"SKIP":
        if session.proto != 0:  # not while OFF
            session.proto = -2  # this command's reply, then the next one's
    else:
        return SYNTAX_ERROR
    return None


# subcommand -> (arity counting CLIENT itself, handler)
_CLIENT: dict[bytes, tuple[int, SubHandler]] = {
    b"ID": (2, lambda s, a: s.id),
    b"GETNAME": (2, lambda s, a: s.name or None),
    b"SETNAME": (3, _client_setname),
    b"SETINFO": (4, _client_setinfo),
    b"LIST": (-2, _client_list),
    b"INFO": (2, lambda s, a: Verbatim(client_line(s, s.node.clock.mono_ms()) + "\n")),
    b"KILL": (-3, _client_kill),
    b"PAUSE": (-3, _client_pause),
    b"UNPAUSE": (2, _client_unpause),
    b"NO-EVICT": (3, _client_no_evict),
    b"REPLY": (3, _client_reply),
    b"HELP": (2, lambda s, a: _CLIENT_HELP),
}


@command("client", -2, "", keys=_NO_KEYS, group="connection", summary="Client connection commands")
def cmd_client(session: Session, argv: list[bytes]) -> object:
    return subcommand(session, argv, _CLIENT, "CLIENT")
