"""The client's API calls as data: the commands each sends and how its replies decode.

`Ops` turns `get(key)` into an `Op`: its commands (encoded, with the key that routes
each, or the one node a keyless command such as SCAN goes to) and a
`finish(outcomes, miss)` that makes the call's result from the outcome of each command.
Both clients run an Op the same way (core.py routes the commands when the call starts),
so the API is written once; they differ only in how bytes move.

Keys: every key is the client's namespace (`key_prefix`, then `version` and a colon)
followed by the key as given; results that list keys give them back as given.

`miss` is `on_error="miss"`: an unreachable cache (Timeout, Unavailable) then gives each
call's fallback: get returns its default, get_many leaves the key out, a write or delete
is dropped (a cache write that cannot land is a miss later, not an error now) and says
False or 0, ttl and getver are None. `incr`, `decr` and `cas` raise either way: no
count or version can be made up. An error reply from a node (CommandError) is never a
miss.

Values follow values.py: bytes, str and int as they are, other objects marked.
Counters: INCRBY works on decimal text, which is how an int is stored, so `set(k, 5)`
and `incr(k)` agree; `get(k)` then reads b"6" (plain), or 6 from a typed client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from geocache.client.core import Core, Item
from geocache.client.errors import CacheError, CommandError, OnError
from geocache.client.values import Values
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command
from geocache.serializers import Serializer, SerializerName, get_serializer
from geocache.store.local import check_ttl_s, namespace_of, to_key

Key = str | bytes
Finish = Callable[[list[object], bool], Any]
RAISE: Any = object()  # a fallback that means: raise even when errors are misses
# Keys asked for by one SCAN: a node answers a page of this size in well under a
# millisecond, and a clear of a million keys takes a thousand round trips.
SCAN_COUNT = 1000
_GLOB_SPECIAL = frozenset(b"*?[]\\")


@dataclass(frozen=True, slots=True)
class Command:
    payload: bytes
    key: bytes
    idempotent: bool = True  # safe to send again elsewhere after an unclear failure
    addr: str | None = None  # a keyless command for this node only (SCAN)


@dataclass(frozen=True, slots=True)
class Op:
    commands: tuple[Command, ...]
    finish: Finish

    def items(self, core: Core, now: float) -> list[Item]:
        """The commands with their candidate nodes, routed by the current topology."""
        return [
            core.nodes_item(c.payload, [c.addr])
            if c.addr is not None
            else core.key_item(c.payload, c.key, now, c.idempotent)
            for c in self.commands
        ]


def ttl_ms(ttl_s: float) -> int:
    return math.ceil(ttl_s * 1000)


def make_ops(
    serializer: SerializerName | Serializer,
    key_prefix: str | bytes,
    version: int | None,
    decode: bool,
    typed: bool,
) -> Ops:
    """A client's Ops from its constructor's arguments, each checked."""
    values = Values(get_serializer(serializer), decode=decode, typed=typed)
    return Ops(values, namespace_of(key_prefix, version))


def misses(on_error: OnError) -> bool:
    """Whether `on_error` makes failures misses; ValueError unless "raise" or "miss"."""
    if on_error not in ("raise", "miss"):
        raise ValueError(f'on_error is "raise" or "miss", not {on_error!r}')
    return on_error == "miss"


class Ops:
    """Builds each API call's Op for one client's values and namespace."""

    def __init__(self, values: Values, namespace: bytes = b"") -> None:
        self.values = values
        self.namespace = namespace

    def key(self, key: Key) -> bytes:
        """The stored key: the namespace and the key as given."""
        return self.namespace + to_key(key)

    # -- single keys -------------------------------------------------------------------------

    def get(self, key: Key, default: Any, typed: bool | None = None) -> Op:
        loads = self.values.loads

        def decode(reply: object) -> Any:
            return default if reply is None else loads(_bulk(reply), typed)

        raw = self.key(key)
        return self._one(encode_command(b"GET", raw), raw, decode, default)

    def set(self, key: Key, value: Any, ttl_s: float | None, typed: bool | None = None) -> Op:
        raw = self.key(key)
        return self._one(self._set_command(raw, value, ttl_s, typed=typed), raw, _none, None)

    def add(self, key: Key, value: Any, ttl_s: float | None) -> Op:
        """SET NX: True if the key was missing and now holds `value`."""
        raw = self.key(key)
        return self._one(self._set_command(raw, value, ttl_s, nx=True), raw, _is_ok, False)

    def delete(self, key: Key) -> Op:
        raw = self.key(key)
        return self._one(encode_command(b"DEL", raw), raw, _positive, False)

    def exists(self, key: Key) -> Op:
        raw = self.key(key)
        return self._one(encode_command(b"EXISTS", raw), raw, _positive, False)

    def expire(self, key: Key, ttl_s: float) -> Op:
        """A TTL of zero or less deletes the key, as Redis's EXPIRE does."""
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
            raise TypeError(f"ttl_s is a number of seconds, not {type(ttl_s).__name__}")
        raw = self.key(key)
        if ttl_s <= 0:
            return self._one(encode_command(b"DEL", raw), raw, _positive, False)
        check_ttl_s(ttl_s)
        command = encode_command(b"PEXPIRE", raw, ttl_ms(ttl_s))
        return self._one(command, raw, _positive, False)

    def touch(self, key: Key, ttl_s: float | None) -> Op:
        """A new TTL (None: never expire); True if the key exists."""
        if ttl_s is not None:
            return self.expire(key, ttl_s)
        raw = self.key(key)
        # PERSIST says 0 for a key without a TTL too: EXISTS, on the same node in the
        # same pipeline, says whether there is a key.
        commands = (
            Command(encode_command(b"PERSIST", raw), raw),
            Command(encode_command(b"EXISTS", raw), raw),
        )

        def finish(outcomes: list[object], miss: bool) -> bool:
            reply = _checked(outcomes[1], miss)
            _checked(outcomes[0], miss)
            return False if reply is _MISSED else _positive(reply)

        return Op(commands, finish)

    def ttl(self, key: Key) -> Op:
        """Seconds left: None if there is no such key, math.inf if it never expires."""
        raw = self.key(key)
        return self._one(encode_command(b"PTTL", raw), raw, _seconds, None)

    def incr(self, key: Key, delta: int) -> Op:
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta is an int, not {type(delta).__name__}")
        raw = self.key(key)
        return self._one(encode_command(b"INCRBY", raw, delta), raw, _int, RAISE, False)

    def getver(self, key: Key) -> Op:
        """The key's version (an int that grows with every write), None if missing."""
        raw = self.key(key)
        return self._one(encode_command(b"GETVER", raw), raw, _optional_int, None)

    def cas(self, key: Key, version: int, value: Any, ttl_s: float | None) -> Op:
        """Write only if the key's version is still `version` (0: only if missing).

        CAS takes whole seconds: `ttl_s` is rounded up. Never sent twice: a retry of a
        CAS that did land would find its own version and report a conflict.
        """
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version is an int, not {type(version).__name__}")
        raw = self.key(key)
        args: list[bytes | int] = [raw, version, self.values.dumps(value)]
        checked = check_ttl_s(ttl_s)
        if checked is not None:
            args += [b"EX", math.ceil(checked)]
        return self._one(encode_command(b"CAS", *args), raw, _optional_int, RAISE, False)

    # -- many keys ---------------------------------------------------------------------------

    def get_many(self, keys: Iterable[Key]) -> Op:
        """Found keys only, as given (str or bytes) -> value."""
        given = list(dict.fromkeys(keys))
        commands = tuple(Command(encode_command(b"GET", k), k) for k in map(self.key, given))
        loads = self.values.loads

        def finish(outcomes: list[object], miss: bool) -> dict[Key, Any]:
            found: dict[Key, Any] = {}
            for key, outcome in zip(given, outcomes, strict=True):
                reply = _checked(outcome, miss)
                if reply is not None and reply is not _MISSED:
                    found[key] = loads(_bulk(reply))
            return found

        return Op(commands, finish)

    def set_many(self, values: Mapping[Any, Any], ttl_s: float | None) -> Op:
        commands = tuple(
            Command(self._set_command(k, v, ttl_s), k)
            for k, v in ((self.key(k), v) for k, v in values.items())
        )

        def finish(outcomes: list[object], miss: bool) -> None:
            for outcome in outcomes:
                _checked(outcome, miss)

        return Op(commands, finish)

    def delete_many(self, keys: Iterable[Key]) -> Op:
        """One DEL per key (each goes to its own owner); how many existed."""
        return self.delete_stored([self.key(k) for k in keys])

    def delete_stored(self, stored: Iterable[bytes]) -> Op:
        """DEL of keys as stored (namespace included), as SCAN lists them."""
        unique = list(dict.fromkeys(stored))
        commands = tuple(Command(encode_command(b"DEL", k), k) for k in unique)

        def finish(outcomes: list[object], miss: bool) -> int:
            replies = (_checked(outcome, miss) for outcome in outcomes)
            return sum(_int(r) for r in replies if r is not _MISSED)

        return Op(commands, finish)

    def scan(self, addr: str, cursor: bytes, prefix: Key = b"") -> Op:
        """One page of the keys at one node that are in this namespace and start with
        `prefix` there: (next cursor, keys as stored)."""
        args: list[bytes | int] = [cursor]
        start = self.key(prefix)
        if start:
            args += [b"MATCH", glob_escape(start) + b"*"]
        command = encode_command(b"SCAN", *args, b"COUNT", SCAN_COUNT)

        def finish(outcomes: list[object], miss: bool) -> tuple[bytes, list[bytes]]:
            reply = _checked(outcomes[0], miss)
            if reply is _MISSED:
                return b"0", []
            return _scan_page(reply)

        return Op((Command(command, b"", addr=addr),), finish)

    # -- helpers -----------------------------------------------------------------------------

    def _set_command(
        self,
        raw: bytes,
        value: Any,
        ttl_s: float | None,
        *,
        nx: bool = False,
        typed: bool | None = None,
    ) -> bytes:
        args: list[bytes | int] = [raw, self.values.dumps(value, typed)]
        checked = check_ttl_s(ttl_s)
        if checked is not None:
            args += [b"PX", ttl_ms(checked)]
        if nx:
            args.append(b"NX")
        return encode_command(b"SET", *args)

    def _one(
        self,
        command: bytes,
        key: bytes,
        decode: Callable[[object], Any],
        fallback: Any,
        idempotent: bool = True,
    ) -> Op:
        def finish(outcomes: list[object], miss: bool) -> Any:
            reply = _checked(outcomes[0], miss and fallback is not RAISE)
            return fallback if reply is _MISSED else decode(reply)

        return Op((Command(command, key, idempotent),), finish)


def glob_escape(raw: bytes) -> bytes:
    """`raw` as a glob pattern that matches only itself."""
    return b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in raw)


_MISSED: Any = object()


def _checked(outcome: object, miss: bool) -> object:
    """A command's reply; its failure raised, or _MISSED when failures are misses."""
    if isinstance(outcome, CacheError):
        if miss:
            return _MISSED
        raise outcome
    if isinstance(outcome, Error):
        raise CommandError(str(outcome))
    return outcome


def _bulk(reply: object) -> bytes:
    if not isinstance(reply, bytes):
        raise CommandError(f"expected a bulk string, got {reply!r:.100}")
    return reply


def _int(reply: object) -> int:
    if not isinstance(reply, int):
        raise CommandError(f"expected an integer, got {reply!r:.100}")
    return reply


def _optional_int(reply: object) -> int | None:
    return None if reply is None else _int(reply)


def _none(reply: object) -> None:
    return None


def _is_ok(reply: object) -> bool:
    return reply == b"OK"


def _positive(reply: object) -> bool:
    return _int(reply) > 0


def _seconds(reply: object) -> float | None:
    ms = _int(reply)
    if ms == -2:
        return None
    return math.inf if ms == -1 else ms / 1000


def _scan_page(reply: object) -> tuple[bytes, list[bytes]]:
    if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], list)):
        raise CommandError(f"expected a SCAN reply, got {reply!r:.100}")
    cursor, keys = reply
    return _bulk(cursor), [_bulk(k) for k in keys]
