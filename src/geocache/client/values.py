"""How the network clients store Python values, so that every language reads the same bytes.

The rule (the README says it too):

- `bytes` are stored as they are, `str` as its UTF-8 bytes, and `int` (not bool) as
  decimal text, which is what INCR counts. redis-cli, redis-py and any other client
  read exactly what was written.
- Any other object goes through the client's serializer and is stored marked: the byte
  0xC1, the serializer's name, a colon, then the serialized bytes (`\\xc1json:{"a":1}`).
- 0xC1 never occurs in UTF-8 text (it would start an overlong two-byte sequence) and is
  the one byte msgpack never uses, so no text, and no msgpack value, is read as marked.
  Bytes that themselves start with 0xC1 are stored as `\\xc1bytes:` + the bytes: the only
  case where plain bytes are changed on the way in (they still read back unchanged here).
- Reading: a value that starts with 0xC1, a known name and a colon is decoded by that
  serializer; anything else is plain and reads back as bytes, or as str with
  `decode=True`. A marked pickle is unpickled only by a client whose serializer is
  pickle (anyone who can write to the cache could otherwise run code in the reader):
  other clients raise DecodeError, as they do for a marked value they cannot decode.

Typed values (`memoize`, `get_or_set`, and clients made with `typed=True`, as the Django
backend is) come back as the type that was stored: str and bytes are marked as well
(`\\xc1str:`, `\\xc1bytes:`), ints stay decimal text so INCR still counts them, and a plain
value that is a decimal integer reads back as int.

No I/O: bytes in, values out.
"""

from __future__ import annotations

import re
from typing import Any

from geocache.client.errors import DecodeError
from geocache.serializers import SERIALIZERS, Serializer

MARK = b"\xc1"
_BYTES = MARK + b"bytes:"
_STR = MARK + b"str:"
# A serializer's name in a mark: short, and nothing that could be mistaken for data.
_NAME = re.compile(rb"[a-z0-9_-]{1,32}")
_MAX_MARK = 1 + 32 + 1
# A decimal integer as str(int) writes it: no "+", no leading zeros, no "-0".
_DECIMAL = re.compile(rb"-?[1-9][0-9]*|0")
# Marked values anyone may decode: neither runs code.
_SAFE = ("json", "msgpack")


def check_name(serializer: Serializer) -> bytes:
    """The serializer's name as it goes in a mark; ValueError if it cannot be one."""
    name = serializer.name.encode()
    if not _NAME.fullmatch(name) or name in (b"bytes", b"str"):
        raise ValueError(
            f"serializer name {serializer.name!r} cannot mark values:"
            " use 1 to 32 of a-z, 0-9, _ and -, other than 'bytes' and 'str'"
        )
    return name


class Values:
    """A client's value codec: `dumps`/`loads` by the rule above (plain or typed)."""

    __slots__ = ("_decode", "_mark", "_readers", "_serializer", "typed")

    def __init__(self, serializer: Serializer, *, decode: bool = False, typed: bool = False):
        self._serializer = serializer
        self._mark = MARK + check_name(serializer) + b":"
        self._decode = decode
        self.typed = typed
        readers = {name.encode(): SERIALIZERS[name] for name in _SAFE}
        readers[serializer.name.encode()] = serializer
        self._readers: dict[bytes, Serializer] = readers

    def dumps(self, value: Any, typed: bool | None = None) -> bytes:
        """The bytes to store for `value` (typed: None for this client's mode)."""
        kind = type(value)
        if typed if typed is not None else self.typed:
            if kind is bytes:
                return _BYTES + bytes(value)
            if kind is str:
                return _STR + str(value).encode()
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            return _BYTES + data if data[:1] == MARK else data
        elif isinstance(value, str):
            return value.encode()
        if kind is int:
            return str(value).encode()
        return self._mark + self._serializer.dumps(value)

    def loads(self, data: bytes, typed: bool | None = None) -> Any:
        """The value stored as `data` (typed: None for this client's mode)."""
        if data[:1] == MARK:
            colon = data.find(b":", 1, _MAX_MARK)
            if colon > 1:
                return self._marked(data[1:colon], data[colon + 1 :], data)
        if (typed if typed is not None else self.typed) and _DECIMAL.fullmatch(data):
            return int(data)
        return self._plain(data)

    def _marked(self, name: bytes, body: bytes, data: bytes) -> Any:
        if name == b"bytes":
            return body
        if name == b"str":
            return _text(body)
        reader = self._readers.get(name)
        if reader is None:
            if name == b"pickle":
                raise DecodeError(
                    "a pickled value: this client unpickles nothing (serializer='pickle'"
                    " to read it, if only trusted code can write to the cache)"
                )
            return self._plain(data)  # no mark of ours: somebody's plain bytes
        try:
            return reader.loads(body)
        except Exception as exc:
            raise DecodeError(f"a value marked {name.decode()} could not be read: {exc}") from exc

    def _plain(self, data: bytes) -> Any:
        return _text(data) if self._decode else data


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"the value is not UTF-8 text: {exc}") from exc
