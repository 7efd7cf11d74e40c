"""The client's API calls as data: the commands each sends and how its replies decode.

`Ops` turns `get(key)` into an `Op`: its commands (encoded, with the key that routes
each) and a `finish(outcomes, miss)` that makes the call's result from the outcome of
each command. Both clients run an Op the same way (core.py routes the commands when the
call starts), so the API is written once; they differ only in how bytes move.

`miss` is `on_error="miss"`: an unreachable cache (Timeout, Unavailable) then gives each
call's fallback: get returns its default, get_many leaves the key out, a write or delete
is dropped (a cache write that cannot land is a miss later, not an error now), ttl is
None. `incr` raises either way: no count can be made up. An error reply from a node
(CommandError) is never a miss.

Counters: INCRBY works on decimal text, which is what the JSON and raw serializers store
for an int, so `set(k, 5)`, `incr(k)` and `get(k)` agree there. With msgpack or pickle a
counter is still decimal text on the node: read it with `incr(k, 0)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from geocache.client.core import Core, Item
from geocache.client.errors import CacheError, CommandError
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command
from geocache.serializers import Serializer
from geocache.store.local import check_ttl_s, to_key

Key = str | bytes
Finish = Callable[[list[object], bool], Any]
RAISE: Any = object()  # a fallback that means: raise even when errors are misses


@dataclass(frozen=True, slots=True)
class Command:
    payload: bytes
    key: bytes
    idempotent: bool = True  # safe to send again elsewhere after an unclear failure


@dataclass(frozen=True, slots=True)
class Op:
    commands: tuple[Command, ...]
    finish: Finish

    def items(self, core: Core, now: float) -> list[Item]:
        """The commands with their candidate nodes, routed by the current topology."""
        return [core.key_item(c.payload, c.key, now, c.idempotent) for c in self.commands]


def ttl_ms(ttl_s: float) -> int:
    return math.ceil(ttl_s * 1000)


class Ops:
    def __init__(self, serializer: Serializer) -> None:
        self._serializer = serializer

    def get(self, key: Key, default: Any) -> Op:
        loads = self._serializer.loads

        def decode(reply: object) -> Any:
            return default if reply is None else loads(_bulk(reply))

        return self._one(encode_command(b"GET", to_key(key)), key, decode, default)

    def set(self, key: Key, value: Any, ttl_s: float | None) -> Op:
        command = self._set_command(to_key(key), value, ttl_s)
        return self._one(command, key, _none, None)

    def delete(self, key: Key) -> Op:
        return self._one(encode_command(b"DEL", to_key(key)), key, _positive, False)

    def expire(self, key: Key, ttl_s: float) -> Op:
        """A TTL of zero or less deletes the key, as Redis's EXPIRE does."""
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
            raise TypeError(f"ttl_s is a number of seconds, not {type(ttl_s).__name__}")
        raw = to_key(key)
        if ttl_s <= 0:
            return self._one(encode_command(b"DEL", raw), key, _positive, False)
        check_ttl_s(ttl_s)
        command = encode_command(b"PEXPIRE", raw, ttl_ms(ttl_s))
        return self._one(command, key, _positive, False)

    def ttl(self, key: Key) -> Op:
        """Seconds left: None if there is no such key, math.inf if it never expires."""
        return self._one(encode_command(b"PTTL", to_key(key)), key, _seconds, None)

    def incr(self, key: Key, delta: int) -> Op:
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta is an int, not {type(delta).__name__}")
        command = encode_command(b"INCRBY", to_key(key), delta)
        return self._one(command, key, _int, RAISE, idempotent=False)

    def get_many(self, keys: Iterable[str | bytes]) -> Op:
        """Found keys only, as given (str or bytes) -> value."""
        given = list(dict.fromkeys(keys))
        commands = tuple(Command(encode_command(b"GET", to_key(k)), to_key(k)) for k in given)
        loads = self._serializer.loads

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
            Command(self._set_command(to_key(k), v, ttl_s), to_key(k)) for k, v in values.items()
        )

        def finish(outcomes: list[object], miss: bool) -> None:
            for outcome in outcomes:
                _checked(outcome, miss)

        return Op(commands, finish)

    # -- helpers ---------------------------------------------------------------------------

    def _set_command(self, raw: bytes, value: Any, ttl_s: float | None) -> bytes:
        data = self._serializer.dumps(value)
        checked = check_ttl_s(ttl_s)
        if checked is None:
            return encode_command(b"SET", raw, data)
        return encode_command(b"SET", raw, data, b"PX", ttl_ms(checked))

    def _one(
        self,
        command: bytes,
        key: Key,
        decode: Callable[[object], Any],
        fallback: Any,
        idempotent: bool = True,
    ) -> Op:
        def finish(outcomes: list[object], miss: bool) -> Any:
            reply = _checked(outcomes[0], miss and fallback is not RAISE)
            return fallback if reply is _MISSED else decode(reply)

        return Op((Command(command, to_key(key), idempotent),), finish)


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


def _none(reply: object) -> None:
    return None


def _positive(reply: object) -> bool:
    return _int(reply) > 0


def _seconds(reply: object) -> float | None:
    ms = _int(reply)
    if ms == -2:
        return None
    return math.inf if ms == -1 else ms / 1000
