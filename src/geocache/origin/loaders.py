"""Loaders: how one key is fetched from each kind of origin (spec.py names them).

A `Loader` answers `load(key)` with the value, None when the origin has no such key,
or raises when it could not tell (down, slow, an error reply, a bad status). Loaders
know nothing of caching: deadlines, coalescing, the breaker and stale values are the
read-through's (readthrough.py). Each is built once per node and closed on stop.

- redis: one multiplexed connection (client/multiplex.py), so concurrent loads
  pipeline on it; dialled on first use and again after it is lost. A load that times
  out closes it: RESP answers in order, so every request behind a stuck one is stuck too.
- http: one aiohttp session, at most `concurrency` connections; a 200 is the value
  (its body, read up to `max_value_bytes`), a 404 or 410 is "no such key", any other
  status is a failure. The response's Content-Type is not kept: a value is bytes.
- python: `module:function`, imported at start; an async function is awaited, a plain
  one runs in a worker thread so that it cannot stall the node. It returns bytes, str
  (stored as UTF-8) or None.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote_from_bytes

import aiohttp
from yarl import URL

from geocache._version import __version__
from geocache.client.multiplex import Connection
from geocache.origin.spec import KEY_FIELD, OriginSpec
from geocache.protocol.types import Error
from geocache.protocol.writer import encode_command

# Statuses that mean "no such key" rather than a failure of the origin.
NOT_FOUND_STATUSES = frozenset({404, 410})


class LoadError(Exception):
    """The origin answered, but not with a value or a clear "no such key"."""


class ValueTooLarge(LoadError):
    """The value is over max_value_bytes: a fault of the key, not of the origin."""


class Loader(Protocol):
    async def load(self, key: bytes) -> bytes | None: ...
    async def close(self) -> None: ...


def open_loader(
    spec: OriginSpec, timeout_s: float, concurrency: int, max_value_bytes: int
) -> Loader:
    if spec.kind == "redis":
        return RedisLoader(spec, timeout_s)
    if spec.kind == "http":
        return HttpLoader(spec.text, concurrency, max_value_bytes)
    return PythonLoader(spec.text)


class RedisLoader:
    def __init__(self, spec: OriginSpec, timeout_s: float) -> None:
        self._spec = spec
        self._timeout_s = timeout_s
        self._conn: Connection | None = None
        self._dialing = asyncio.Lock()  # concurrent first loads share one dial

    async def load(self, key: bytes) -> bytes | None:
        conn = await self._connection()
        try:
            (reply,) = await asyncio.wait_for(
                conn.request(encode_command(b"GET", key), 1), self._timeout_s
            )
        except TimeoutError:
            conn.close()
            raise
        if isinstance(reply, Error):
            raise LoadError(f"redis origin replied {reply}")
        if reply is not None and not isinstance(reply, bytes):
            raise LoadError(f"redis origin replied {type(reply).__name__} to GET")
        return reply

    async def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        async with self._dialing:
            if self._conn is None or not self._conn.usable:
                self._conn = await self._dial()
            return self._conn

    async def _dial(self) -> Connection:
        spec = self._spec
        loop = asyncio.get_running_loop()
        addr = f"{spec.host}:{spec.port}"
        _, conn = await loop.create_connection(lambda: Connection(addr), spec.host, spec.port)
        setup = []
        if spec.password:
            auth = (spec.username, spec.password) if spec.username else (spec.password,)
            setup.append(encode_command(b"AUTH", *auth))
        if spec.db:
            setup.append(encode_command(b"SELECT", spec.db))
        if setup:
            replies = await conn.request(b"".join(setup), len(setup))
            errors = [r for r in replies if isinstance(r, Error)]
            if errors:
                conn.close()
                raise LoadError(f"redis origin refused the connection setup: {errors[0]}")
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


OCTET_STREAM = "application/octet-stream"
# Content types remembered per node (about 100 bytes each).
MAX_CONTENT_TYPES = 10_000


def encode_key(key: bytes) -> str:
    """A key as one literal path segment: percent-encoded, dot-segments included."""
    encoded = quote_from_bytes(key, safe="")
    if encoded in (".", ".."):
        return encoded.replace(".", "%2E")
    return encoded


class HttpLoader:
    def __init__(self, template: str, concurrency: int, max_value_bytes: int) -> None:
        self._template = template
        self._concurrency = concurrency
        self._max_value_bytes = max_value_bytes
        self._session: aiohttp.ClientSession | None = None
        # The Content-Type of the values this node loaded, newest last, bounded: the
        # HTTP API answers with it (DESIGN.md section 8: "keeps the content type").
        self.content_types: OrderedDict[bytes, str] = OrderedDict()

    def url(self, key: bytes) -> URL:
        """The template with `{key}` replaced by the key, every byte but unreserved ones
        percent-encoded (so a key can never add a path segment or a query). The keys
        `.` and `..` have their dots encoded too: as a segment of their own they would
        mean "this folder" and "the parent folder" and walk the origin's path."""
        return URL(self._template.replace(KEY_FIELD, encode_key(key)), encoded=True)

    async def load(self, key: bytes) -> bytes | None:
        if self._session is None:  # made here: a session belongs to the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency),
                headers={"User-Agent": f"geocache/{__version__}"},
            )
        async with self._session.get(self.url(key)) as response:
            if response.status in NOT_FOUND_STATUSES:
                return None
            if response.status != 200:
                raise LoadError(f"http origin answered {response.status}")
            body = await self._body(response)
            types = self.content_types
            types[key] = response.headers.get("Content-Type", OCTET_STREAM)
            types.move_to_end(key)
            if len(types) > MAX_CONTENT_TYPES:
                types.popitem(last=False)
            return body

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._max_value_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ValueTooLarge(f"origin value of {response.content_length} bytes is over {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:  # a chunked body announces no length: stop reading at the limit
                raise ValueTooLarge(f"origin value is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class PythonLoader:
    def __init__(self, entry_point: str) -> None:
        module_name, _, name = entry_point.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"origin {entry_point}: cannot load it ({exc})") from exc
        if not callable(function):
            raise ValueError(f"origin {entry_point} is not callable")
        self._entry_point = entry_point
        self._function: Callable[[bytes], object] = function
        self._is_async = inspect.iscoroutinefunction(function)

    async def load(self, key: bytes) -> bytes | None:
        if self._is_async:
            result = await self._function(key)  # type: ignore[misc]
        else:
            result = await asyncio.to_thread(self._function, key)
        if result is None or isinstance(result, bytes):
            return result
        if isinstance(result, str):
            return result.encode()
        if isinstance(result, bytearray | memoryview):
            return bytes(result)
        raise LoadError(f"{self._entry_point} returned {type(result).__name__}, not bytes or None")

    async def close(self) -> None:
        pass
