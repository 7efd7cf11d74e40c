"""Serializers: how Python objects become cache values and back.

- `raw`: bytes only, unchanged (str is refused: say what encoding you want).
- `json` (the network client's default): JSON-compatible values; bytes pass through
  unchanged so that values written by other clients can be read. (The network client
  stores bytes, str and int itself and marks what a serializer wrote: client/values.py.)
- `msgpack`: compact and fast; needs the `msgpack` package.
- `auto` (LocalCache's default): bytes stored as they are, as `raw` does, anything else
  pickled. A pickle starts with the PROTO opcode (0x80), so bytes that start with it are
  pickled too and `loads` tells the two apart by the first byte alone.
- `pickle`: any picklable object. Only for data you trust: unpickling runs code, so
  anyone who can write to a shared cache could run code in every reader. LocalCache
  defaults to it because an in-process cache is written only by its own process.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

# The built-in serializers by name: a typo fails the type check, and get_serializer
# raises ValueError for it at run time.
SerializerName = Literal["auto", "json", "msgpack", "pickle", "raw"]


class Serializer(Protocol):
    @property
    def name(self) -> str: ...

    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


@dataclass(frozen=True, slots=True)
class Raw:
    name: str = "raw"

    def dumps(self, value: Any) -> bytes:
        if type(value) is bytes:
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise TypeError(f"the raw serializer stores bytes, not {type(value).__name__}")

    def loads(self, data: bytes) -> Any:
        return data


# A JSON document never starts with this byte, so raw bytes stored by the JSON
# serializer are told apart from JSON text.
_BYTES_MARK = b"\x00"


@dataclass(frozen=True, slots=True)
class Json:
    name: str = "json"

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray):
            return _BYTES_MARK + bytes(value)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes) -> Any:
        if data[:1] == _BYTES_MARK:
            return data[1:]
        try:
            return json.loads(data)
        except ValueError:
            return data  # written by something else: hand back the bytes


@dataclass(frozen=True, slots=True)
class Pickle:
    name: str = "pickle"

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


# The first byte of every pickle of protocol 2 or later (the PROTO opcode): how `auto`
# tells its pickles from bytes (and LocalCache's compiled path, store/bytespath.py).
PICKLE_PROTO = 0x80


@dataclass(frozen=True, slots=True)
class Auto:
    name: str = "auto"

    def dumps(self, value: Any) -> bytes:
        if type(value) is bytes and not (value and value[0] == PICKLE_PROTO):
            return value  # the common case costs nothing: no copy, no header
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        if data and data[0] == PICKLE_PROTO:
            return pickle.loads(data)
        return data


@dataclass(frozen=True, slots=True)
class Msgpack:
    name: str = "msgpack"

    def dumps(self, value: Any) -> bytes:
        import msgpack

        return bytes(msgpack.packb(value, use_bin_type=True))

    def loads(self, data: bytes) -> Any:
        import msgpack

        return msgpack.unpackb(data, raw=False)


SERIALIZERS: dict[str, Serializer] = {
    s.name: s for s in (Auto(), Raw(), Json(), Pickle(), Msgpack())
}
assert sorted(SERIALIZERS) == sorted(get_args(SerializerName))


def get_serializer(choice: SerializerName | Serializer) -> Serializer:
    """The serializer named `choice` (ValueError for an unknown name), or `choice` itself."""
    if isinstance(choice, str):
        try:
            return SERIALIZERS[choice]
        except KeyError:
            known = ", ".join(sorted(SERIALIZERS))
            raise ValueError(f"unknown serializer {choice!r}; choose one of {known}") from None
    return choice
