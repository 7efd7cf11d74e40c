"""The command table: each command described as data, as in Redis's own table.

A `Command` carries its name, arity (positive: exactly that many arguments counting
the name; negative: at least that many), flags, key positions and handler. Handler
modules register with `@command(...)`; `build_table()` imports them all and returns the
lookup dict the server dispatches on, keyed by both lower- and upper-case names so the
common spellings need no `.lower()` on the hot path.

Commands flagged `peer` (the cluster's `GC.*` messages, registered by the cluster
layer, which builds them around its own state) run only on a connection that proved
the cluster secret: `dispatch` refuses them everywhere else, in this one place.

`dispatch()` runs one command: lookup, arity, authentication, key-size limit, handler,
and turns store errors into error replies. It is sans-IO and shared by the RESP server
and tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from geocache.commands.context import Session
from geocache.protocol.types import Error
from geocache.store.errors import StoreError, TooLarge

Handler = Callable[[Session, list[bytes]], object]
SubHandler = Handler

# Commands a client may run before AUTH when a password is set (as Redis), and the peer
# handshake (which proves the cluster secret instead).
NOAUTH_OK = frozenset({b"auth", b"hello", b"quit", b"reset", b"gc.hello", b"gc.auth"})
NOAUTH = Error("NOAUTH Authentication required.")
NOT_A_PEER = Error("NOPERM this command is for cluster peers (GC.AUTH first)")
# Commands that run at once inside MULTI instead of being queued.
TX_CONTROL = frozenset({b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"})


@dataclass(frozen=True, slots=True)
class Command:
    name: bytes
    arity: int
    flags: frozenset[str]
    first_key: int
    last_key: int
    step: int
    group: str
    summary: str
    handler: Handler
    # Precomputed for dispatch: a write whose only key is argv[1], or any other write.
    write: bool = False
    single_key: bool = False
    peer: bool = False

    def keys(self, argv: list[bytes]) -> list[bytes]:
        """The key arguments of a call, from the key positions."""
        if self.first_key == 0:
            return []
        last = self.last_key if self.last_key >= 0 else len(argv) + self.last_key
        return argv[self.first_key : last + 1 : self.step]


_REGISTRY: dict[bytes, Command] = {}


def command(
    name: str,
    arity: int,
    flags: str = "",
    keys: tuple[int, int, int] = (1, 1, 1),
    group: str = "string",
    summary: str = "",
) -> Callable[[Handler], Handler]:
    """Register a handler; `keys` is (first, last, step), last -1 for "to the end"."""

    def register(handler: Handler) -> Handler:
        cmd = new_command(name, arity, flags, keys, group, summary, handler)
        _REGISTRY[cmd.name] = cmd
        return handler

    return register


def new_command(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int],
    group: str,
    summary: str,
    handler: Handler,
) -> Command:
    """A table entry (what `@command` registers; the cluster layer builds its own)."""
    flag_set = frozenset(flags.split())
    return Command(
        name=name.lower().encode(),
        arity=arity,
        flags=flag_set,
        first_key=keys[0],
        last_key=keys[1],
        step=keys[2],
        group=group,
        summary=summary or (handler.__doc__ or "").strip().splitlines()[0],
        handler=handler,
        write="write" in flag_set,
        single_key=keys == (1, 1, 1),
        peer="peer" in flag_set,
    )


def build_table(extra: Iterable[Command] = ()) -> dict[bytes, Command]:
    """Every command, under its lower- and upper-case name; `extra`: the cluster's."""
    from geocache.commands import (  # noqa: F401 - importing registers the commands
        bits,
        cluster,
        connection,
        databases,
        dump,
        keys,
        latency,
        lcs,
        objects,
        server,
        slowlog,
        strings,
        topology,
        transactions,
        versions,
    )

    table: dict[bytes, Command] = {}
    for cmd in (*_REGISTRY.values(), *extra):
        table[cmd.name] = cmd
        table[cmd.name.upper()] = cmd
    return table


def _c_string(raw: bytes, limit: int) -> bytes:
    """What C's `%.Ns` prints of a buffer: up to the first NUL, at most `limit` bytes."""
    return raw.split(b"\0", 1)[0][:limit]


def unknown_command(argv: list[bytes]) -> Error:
    """Redis's text, byte for byte: the arguments stop once they pass 128 bytes."""
    args = b""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += b"'" + _c_string(arg, 128 - len(args)) + b"' "
    text = b"ERR unknown command '%s', with args beginning with: %s" % (
        _c_string(argv[0], 128),
        args,
    )
    return Error(text.decode("utf-8", "surrogateescape"))


def wrong_arity(name: bytes) -> Error:
    return Error(f"ERR wrong number of arguments for '{name.decode()}' command")


def _refuse(session: Session, error: Error) -> Error:
    """An error before the command ran; inside MULTI it dooms the transaction."""
    if session.multi is not None:
        session.multi_dirty = True
    return error


KEY_TOO_LARGE = Error("ERR key exceeds maximum allowed size (max-key-bytes)")
# Redis's answer to a write that memory cannot take even after eviction.
OOM = Error("OOM command not allowed when used memory > 'maxmemory'.")


def dispatch(table: dict[bytes, Command], session: Session, argv: list[bytes]) -> object:
    """Run one command and return its reply value."""
    cmd = table.get(argv[0])
    if cmd is None:
        cmd = table.get(argv[0].lower())
        if cmd is None:
            return _refuse(session, unknown_command(argv))
    arity = cmd.arity
    if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
        return _refuse(session, wrong_arity(cmd.name))
    if not session.authenticated and cmd.name not in NOAUTH_OK:
        return _refuse(session, NOAUTH)
    if cmd.peer and not session.peer_id:
        return _refuse(session, NOT_A_PEER)
    if session.multi is not None and cmd.name not in TX_CONTROL:
        from geocache.commands.transactions import queue

        return queue(session, argv)
    if cmd.write:
        limit = session.node.config.max_key_bytes
        if cmd.single_key:
            if len(argv[1]) > limit:
                return KEY_TOO_LARGE
        elif any(len(key) > limit for key in cmd.keys(argv)):
            return KEY_TOO_LARGE
    session.last_cmd = cmd.name
    try:
        return cmd.handler(session, argv)
    except TooLarge:
        return OOM
    except StoreError as exc:
        return Error(str(exc))


def subcommand(
    session: Session, argv: list[bytes], table: dict[bytes, tuple[int, SubHandler]], parent: str
) -> object:
    """Run a container command's subcommand (CLIENT, CONFIG, COMMAND), with Redis's errors."""
    sub = argv[1].upper()
    found = table.get(sub)
    if found is None:
        return Error(
            f"ERR unknown subcommand '{argv[1].decode('utf-8', 'surrogateescape')[:128]}'. "
            f"Try {parent} HELP."
        )
    arity, handler = found
    if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
        name = f"{parent.lower()}|{sub.decode('utf-8', 'surrogateescape').lower()}"
        return Error(f"ERR wrong number of arguments for '{name}' command")
    return handler(session, argv)
