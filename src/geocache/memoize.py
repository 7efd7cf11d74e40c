"""Memoized functions, for LocalCache and the network clients: their keys and decorators.

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

A memoized function is the function itself, wrapped (`functools.wraps`), with two more:
`f.invalidate(*args, **kwargs)` deletes the cached result of that call and
`f.refresh(*args, **kwargs)` computes it again and stores it; both take the call's
arguments as `f` does (a method's `self` too: `obj.m.invalidate(obj, 1)`), and both are
coroutine functions when `f` is. Values are stored typed (client/values.py): what the
function returned comes back, whatever its type.

The decorators take the cache as a `MemoStore` (three callables), so one implementation
serves LocalCache, Client and AsyncClient.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from geocache.singleflight import AsyncFlights

KeyBuilder = Callable[..., str | bytes]
MakeKey = Callable[[tuple[Any, ...], dict[str, Any]], bytes]
P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")
MISSING: Any = object()


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


def key_maker(
    fn: Callable[..., Any], key_builder: KeyBuilder | None, namespace: str | None
) -> MakeKey:
    return custom_key(namespace, key_builder) if key_builder else KeyMaker(fn, namespace)


# -- decorators ---------------------------------------------------------------------------


class Memoized(Protocol[P, R_co]):
    """A memoized plain function: call it, or drop or recompute one call's result."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the cached result of this call; True if there was one."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function again and store what it returns, for this call."""
        ...

    # A method: read from the class it is itself (for `invalidate(obj, ...)`); read from
    # an instance, a bound method, whose arguments type checkers then take on trust.
    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Memoized[P, R_co]: ...
    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Callable[..., R_co]: ...


class AsyncMemoized(Protocol[P, R_co]):
    """A memoized coroutine function; `invalidate` and `refresh` are coroutines too."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the cached result of this call; True if there was one."""
        ...

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Await the function again and store what it returns, for this call."""
        ...

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> AsyncMemoized[P, R_co]: ...
    @overload
    def __get__(
        self, obj: object, owner: type[Any] | None = None
    ) -> Callable[..., Coroutine[Any, Any, R_co]]: ...


class Memoize(Protocol):
    """What `memoize(...)` returns: a decorator for plain or coroutine functions."""

    # A coroutine function matches both; the first, the one meant, wins.
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> AsyncMemoized[P, T]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Memoized[P, T]: ...


class AsyncMemoize(Protocol):
    """What `AsyncClient.memoize(...)` returns: a decorator for coroutine functions."""

    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> AsyncMemoized[P, T]: ...


@dataclass(frozen=True, slots=True)
class MemoStore:
    """A blocking cache as memoized functions use it; values are stored typed.

    `threaded`: run these in a worker thread when called from a coroutine (a network
    client, which must not block the event loop); False for an in-process cache.
    """

    get_or_set: Callable[[bytes, Callable[[], Any], float | None], Any]
    put: Callable[[bytes, Any, float | None], None]
    delete: Callable[[bytes], bool]
    get: Callable[[bytes], Any]  # MISSING when absent
    threaded: bool = False


@dataclass(frozen=True, slots=True)
class AsyncMemoStore:
    """An asyncio cache as memoized functions use it; values are stored typed."""

    get_or_set: Callable[[bytes, Callable[[], Any], float | None], Awaitable[Any]]
    put: Callable[[bytes, Any, float | None], Awaitable[None]]
    delete: Callable[[bytes], Awaitable[bool]]


class _Decorator(Generic[R]):
    """Implements Memoize and AsyncMemoize (their overloads are for type checkers)."""

    def __init__(
        self,
        wrap: Callable[[Callable[..., Any], MakeKey], Callable[..., Any]],
        key_builder: KeyBuilder | None,
        namespace: str | None,
    ) -> None:
        self._wrap = wrap
        self._key_builder = key_builder
        self._namespace = namespace

    def __call__(self, fn: Callable[..., Any]) -> Any:
        return self._wrap(fn, key_maker(fn, self._key_builder, self._namespace))


def memoize_sync(
    store: MemoStore,
    ttl_s: float | None,
    key_builder: KeyBuilder | None,
    namespace: str | None,
) -> Memoize:
    """`memoize(...)` of a blocking cache: plain and coroutine functions alike."""

    def wrap(fn: Callable[..., Any], make_key: MakeKey) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):
            return _async_on_sync(store, fn, make_key, ttl_s)
        return _sync(store, fn, make_key, ttl_s)

    return cast(Memoize, _Decorator[Any](wrap, key_builder, namespace))


def memoize_async(
    store: AsyncMemoStore,
    ttl_s: float | None,
    key_builder: KeyBuilder | None,
    namespace: str | None,
    owner: str,
) -> AsyncMemoize:
    """`memoize(...)` of an asyncio cache: coroutine functions only."""

    def wrap(fn: Callable[..., Any], make_key: MakeKey) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"{owner}.memoize decorates async functions; {fn!r} is not one"
                " (use Client.memoize for plain functions)"
            )
        return _async(store, fn, make_key, ttl_s)

    return cast(AsyncMemoize, _Decorator[Any](wrap, key_builder, namespace))


def _sync(
    store: MemoStore, fn: Callable[..., Any], make_key: MakeKey, ttl_s: float | None
) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return store.get_or_set(make_key(args, kwargs), lambda: fn(*args, **kwargs), ttl_s)

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        return store.delete(make_key(args, kwargs))

    def refresh(*args: Any, **kwargs: Any) -> Any:
        value = fn(*args, **kwargs)
        store.put(make_key(args, kwargs), value, ttl_s)
        return value

    return _with(wrapper, invalidate, refresh)


def _async(
    store: AsyncMemoStore, fn: Callable[..., Awaitable[Any]], make_key: MakeKey, ttl_s: float | None
) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await store.get_or_set(make_key(args, kwargs), lambda: fn(*args, **kwargs), ttl_s)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        return await store.delete(make_key(args, kwargs))

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        value = await fn(*args, **kwargs)
        await store.put(make_key(args, kwargs), value, ttl_s)
        return value

    return _with(wrapper, invalidate, refresh)


def _async_on_sync(
    store: MemoStore, fn: Callable[..., Awaitable[Any]], make_key: MakeKey, ttl_s: float | None
) -> Callable[..., Any]:
    """A coroutine function memoized in a blocking cache: concurrent callers in one event
    loop wait for one computation; a network cache's calls run in a worker thread."""
    # One AsyncFlights per event loop: a flight's task belongs to the loop it runs on.
    flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncFlights[Any]] = (
        weakref.WeakKeyDictionary()
    )

    async def run(call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args) if store.threaded else call(*args)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = make_key(args, kwargs)
        value = await run(store.get, key)
        if value is not MISSING:
            return value

        async def load() -> Any:
            # Another process, or a flight that just ended here, may have stored it.
            value = await run(store.get, key)
            if value is MISSING:
                value = await fn(*args, **kwargs)
                await run(store.put, key, value, ttl_s)
            return value

        loop = asyncio.get_running_loop()
        loop_flights = flights.get(loop)
        if loop_flights is None:
            loop_flights = flights[loop] = AsyncFlights()
        return await loop_flights.do(key, load)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        return await run(store.delete, make_key(args, kwargs))

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        value = await fn(*args, **kwargs)
        await run(store.put, make_key(args, kwargs), value, ttl_s)
        return value

    return _with(wrapper, invalidate, refresh)


def _with(
    wrapper: Callable[..., Any], invalidate: Callable[..., Any], refresh: Callable[..., Any]
) -> Callable[..., Any]:
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    return wrapper
