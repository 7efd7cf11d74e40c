"""Cache keys for memoized calls, shared by LocalCache and the network client.

A call's key is `namespace:qualified function name:digest`, where the digest covers the
bound arguments after defaults are applied: `f(1)`, `f(1, b=2)` (2 the default) and
`f(a=1)` are one key; `f(1, b=5)` is another. Arguments are encoded as canonical JSON
where they can be, else by `repr()`; objects whose repr is not stable (the default
repr shows an address) should get a `key_builder`. For methods, `self` is part of the
key like any argument: give the class a `__repr__` that names its state (dataclasses
have one) for keys that are stable across processes, or pass a `key_builder`.
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
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):  # e.g. dicts with mixed key types
        return repr(value)


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
