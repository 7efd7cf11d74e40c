"""Cache keys for memoized calls, shared by LocalCache and the network client.

A call's key is `namespace:qualified function name:digest`, where the digest covers the
bound arguments after defaults are applied: `f(1)`, `f(1, b=2)` (2 the default) and
`f(a=1)` are one key; `f(1, b=5)` is another. Arguments are encoded by a canonical text
that names each value's type (`_canonical`), so `1`, `1.0`, `True` and `"1"`, a list and
a tuple, `{1: x}` and `{"1": x}`, `b"x"` and `"b'x'"` all give different keys, while
equal dicts and sets give one key whatever their order. Other objects are encoded by
type and `repr()`; objects whose repr is not stable (the default repr shows an address)
should get a `key_builder`. For methods, `self` is part of the key like any argument:
give the class a `__repr__` that names its state (dataclasses have one) for keys that
are stable across processes, or pass a `key_builder`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

KeyBuilder = Callable[..., str | bytes]


def qualified_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _canonical(value: object) -> str:
    """A self-delimiting text of `value` that differs when its types or values differ.

    Plain JSON would not do: it writes tuples as lists, int dict keys as strings, and
    anything else by a repr that can equal a string argument's text. Subclasses are
    encoded as their base (a namedtuple as a tuple), as they compare equal to it.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return json.dumps(value)  # JSON tells these apart: null, true, 1, 1.0, "1"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ",".join(_canonical(item) for item in value) + ")"
    if isinstance(value, dict):
        pairs = sorted(f"{_canonical(k)}:{_canonical(v)}" for k, v in value.items())
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, set | frozenset):
        return "<set>{" + ",".join(sorted(_canonical(item) for item in value)) + "}"
    if isinstance(value, bytes):
        return "<bytes>" + json.dumps(value.hex())
    kind = type(value)
    return f"<{json.dumps(kind.__module__ + '.' + kind.__qualname__)}>{json.dumps(repr(value))}"


class KeyMaker:
    """Builds the cache key of each call of one function."""

    __slots__ = ("_prefix", "_signature")

    def __init__(self, fn: Callable[..., Any], namespace: str | None = None) -> None:
        self._prefix = f"{namespace or 'memo'}:{qualified_name(fn)}:"
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no signature
            self._signature = None

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        if self._signature is None:
            arguments: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
        else:
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
        digest = hashlib.blake2b(_canonical(arguments).encode(), digest_size=16).hexdigest()
        return (self._prefix + digest).encode()


def custom_key(namespace: str | None, builder: KeyBuilder) -> Callable[..., bytes]:
    """Wrap a user's key_builder(*args, **kwargs) so it returns namespaced bytes."""

    def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        key = builder(*args, **kwargs)
        raw = key.encode() if isinstance(key, str) else key
        if not isinstance(raw, bytes):
            raise TypeError("key_builder must return str or bytes")
        return (namespace.encode() + b":" + raw) if namespace else raw

    return build
