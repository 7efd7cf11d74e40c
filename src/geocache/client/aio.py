"""`AsyncClient`: the asyncio geocache client, over the same sans-IO core as `Client`.

One connection per node, shared by every coroutine (multiplex.py): requests are written
as they come and replies matched in order, so concurrent calls pipeline by themselves.
An attempt that times out leaves the connection as it is (its late reply is dropped);
a connection whose node is marked down is closed, failing whatever still waits on it.

The first call (or `connect()`) learns the map and, without `region=`, PINGs the seeds
concurrently to choose the home region (core.py). A background task (started then)
refreshes the topology and probes down nodes. Use one AsyncClient within one event
loop; `await client.close()` (or `async with`) stops the task and closes the
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from ssl import SSLContext
from types import TracebackType
from typing import Any, TypeVar

from geocache.client.core import (
    PING_COMMAND,
    PROBE_COMMAND,
    RTT_SAMPLES,
    TOPOLOGY_COMMAND,
    Attempt,
    Call,
    Core,
    Failure,
    Item,
    NodeStats,
)
from geocache.client.errors import CacheError, OnError
from geocache.client.health import HealthPolicy
from geocache.client.multiplex import Connection, expire
from geocache.client.ops import Key, Op, make_ops, misses
from geocache.client.pool import log_tls_failure
from geocache.client.topology import check_routes, parse_seeds, split_addr
from geocache.memoize import MISSING, AsyncMemoize, AsyncMemoStore, KeyBuilder, memoize_async
from geocache.protocol.writer import encode_command
from geocache.serializers import Serializer, SerializerName
from geocache.singleflight import AsyncFlights
from geocache.store.local import check_ttl_s, to_key
from geocache.tls import client_tls, host_of

K = TypeVar("K", bound=str | bytes)
Clock = Callable[[], float]

# After an unexpected error in the background loop, pause this long (seconds) before the
# next round, so a persistent bug logs once a second rather than spinning.
_BUG_PAUSE_S = 1.0
log = logging.getLogger("geocache.client")
# The background task sleeps at most this long (seconds) before looking at its work
# again: a bound on an infinite wake-up, and how soon a dropped client's task ends.
_MAX_SLEEP_S = 5.0
# How long close() waits for connections to finish closing (seconds): a TLS close is a
# round trip on loopback or LAN; a node that does not answer is not waited for longer.
CLOSE_WAIT_S = 1.0


class AsyncClient:
    """An asyncio client for a geocache node or cluster; arguments as for `Client`
    (but for `pool_size`: one connection per node serves every coroutine)."""

    def __init__(
        self,
        seeds: Sequence[str] | str = ("127.0.0.1:7379",),
        *,
        region: str | None = None,
        password: str | None = None,
        serializer: SerializerName | Serializer = "json",
        decode: bool = False,
        typed: bool = False,
        key_prefix: str | bytes = "",
        version: int | None = None,
        timeout_s: float = 1.0,
        on_error: OnError = "raise",
        topology_refresh_s: float = 5.0,
        health: HealthPolicy | None = None,
        routes: Mapping[str, str] | None = None,
        ssl: bool = False,
        ssl_context: SSLContext | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._miss = misses(on_error)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        seed_list, seeds_tls = parse_seeds(seeds)
        self._tls = client_tls(ssl, ssl_context, seeds_tls)
        self._core = Core(seed_list, region=region, policy=health, refresh_s=topology_refresh_s)
        self._ops = make_ops(serializer, key_prefix, version, decode, typed)
        self._timeout_s = timeout_s
        self._clock = clock
        self._auth = encode_command(b"AUTH", password) if password else b""
        self._routes = check_routes(routes)
        self._conns: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Future[Connection]] = {}
        self._flights: AsyncFlights[Any] = AsyncFlights()
        self._boot: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- one key ---------------------------------------------------------------------------

    async def get(self, key: Key, default: Any = None) -> Any:
        """The value of `key`, or `default` if there is none (a stored None is a value)."""
        return await self._run(self._ops.get(key, default))

    async def set(self, key: Key, value: Any, ttl_s: float | None = None) -> None:
        """Store `value`, expiring after `ttl_s` seconds (None: never)."""
        await self._run(self._ops.set(key, value, ttl_s))

    async def add(self, key: Key, value: Any, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` has none (SET NX); True if it was stored."""
        result: bool = await self._run(self._ops.add(key, value, ttl_s))
        return result

    async def delete(self, key: Key) -> bool:
        """Delete `key`; True if it existed."""
        result: bool = await self._run(self._ops.delete(key))
        return result

    async def exists(self, key: Key) -> bool:
        """Whether `key` has a value (a stored None counts)."""
        result: bool = await self._run(self._ops.exists(key))
        return result

    async def expire(self, key: Key, ttl_s: float) -> bool:
        """Set a key's TTL (zero or less deletes it); True if the key exists."""
        result: bool = await self._run(self._ops.expire(key, ttl_s))
        return result

    async def touch(self, key: Key, ttl_s: float | None = None) -> bool:
        """Give `key` a new TTL (None: never expire; zero or less deletes it); True if it
        exists."""
        result: bool = await self._run(self._ops.touch(key, ttl_s))
        return result

    async def ttl(self, key: Key) -> float | None:
        """Seconds left: None if there is no such key, math.inf if it never expires."""
        result: float | None = await self._run(self._ops.ttl(key))
        return result

    async def incr(self, key: Key, delta: int = 1) -> int:
        """Add `delta` to a counter (missing: 0) and return it; as `Client.incr`."""
        result: int = await self._run(self._ops.incr(key, delta))
        return result

    async def decr(self, key: Key, delta: int = 1) -> int:
        """Subtract `delta` from a counter (missing: 0) and return it; as `Client.incr`."""
        return await self.incr(key, -delta)

    async def getver(self, key: Key) -> int | None:
        """The version of `key`'s value (it grows with every write), None if missing."""
        result: int | None = await self._run(self._ops.getver(key))
        return result

    async def cas(
        self, key: Key, version: int, value: Any, ttl_s: float | None = None
    ) -> int | None:
        """Store `value` only if `key`'s version is still `version` (0: only if missing);
        the new version, or None if another write came first. As `Client.cas`."""
        result: int | None = await self._run(self._ops.cas(key, version, value, ttl_s))
        return result

    # -- many keys -------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[K]) -> dict[K, Any]:
        """The keys found, as given, with their values; one pipeline per node."""
        result: dict[K, Any] = await self._run(self._ops.get_many(keys))
        return result

    async def set_many(self, values: Mapping[K, Any], ttl_s: float | None = None) -> None:
        """Store every key's value (as `set`); one pipeline per node."""
        await self._run(self._ops.set_many(values, ttl_s))

    async def delete_many(self, keys: Iterable[Key]) -> int:
        """Delete every key; how many existed. One pipeline per node."""
        result: int = await self._run(self._ops.delete_many(keys))
        return result

    async def clear(self, prefix: Key = "") -> int:
        """Delete every key of this client's namespace, or every key when it has none
        (only those starting with `prefix`, if given); how many were deleted. As
        `Client.clear`: SCAN per node, not atomic."""
        await self.connect()
        deleted, seen = 0, set[bytes]()
        for addr in self._core.scan_addrs():
            cursor = b"0"
            while True:
                cursor, keys = await self._run(self._ops.scan(addr, cursor, prefix))
                fresh = [k for k in keys if k not in seen]
                seen.update(fresh)
                if fresh:
                    deleted += await self._run(self._ops.delete_stored(fresh))
                if cursor == b"0":
                    break
        return deleted

    # -- computed values -------------------------------------------------------------------

    async def get_or_set(self, key: Key, fn: Callable[[], Any], ttl_s: float | None = None) -> Any:
        """The cached value, or `fn()` (awaited if it returns an awaitable) stored and
        returned; concurrent callers in this event loop wait for one computation. The
        value is stored typed (client/values.py), so it reads back as it was."""
        raw = to_key(key)
        check_ttl_s(ttl_s)
        value = await self._run(self._ops.get(raw, MISSING, typed=True))
        if value is not MISSING:
            return value
        return await self._flights.do(raw, lambda: self._load(raw, fn, ttl_s))

    def memoize(
        self,
        ttl_s: float | None = None,
        key_builder: KeyBuilder | None = None,
        namespace: str | None = None,
    ) -> AsyncMemoize:
        """Decorate an async function so its results are cached per arguments; it gets
        coroutines `invalidate(*args)` and `refresh(*args)` (memoize.py)."""
        check_ttl_s(ttl_s)
        # Made per decorator, not kept: a client that held one would hold itself.
        store = AsyncMemoStore(
            get_or_set=self.get_or_set,
            put=lambda key, value, ttl_s: self._run(self._ops.set(key, value, ttl_s, True)),
            delete=self.delete,
        )
        return memoize_async(store, ttl_s, key_builder, namespace, "AsyncClient")

    # -- the client itself -----------------------------------------------------------------

    async def connect(self) -> None:
        """Learn the cluster map and choose the home region now (the first call does it
        otherwise); raises nothing if no node answers, as calls then say why."""
        if self._task is None:
            await self._start()

    async def owners(self, key: Key) -> tuple[str, ...]:
        """The addresses owning `key` in this client's region, primary first."""
        await self.connect()
        return self._core.topology.owners(self._ops.key(key), self._core.home_region)

    @property
    def region(self) -> str:
        """The home region: the one given, else the nearest seed's; "" until the first
        call or `connect()` has learned it."""
        return self._core.home_region

    def stats(self) -> dict[str, NodeStats]:
        """What this client has seen of each node, by address."""
        return self._core.stats()

    async def close(self) -> None:
        """Stop the background task and close every connection."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        closing = [c.lost for c in conns if c.lost is not None and not c.lost.done()]
        if closing:  # TLS: the close handshake, so no transport outlives the client
            await asyncio.wait(closing, timeout=CLOSE_WAIT_S)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- running calls ---------------------------------------------------------------------

    async def _load(self, key: bytes, fn: Callable[[], Any], ttl_s: float | None) -> Any:
        value = await self._run(self._ops.get(key, MISSING, typed=True))
        if value is MISSING:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            await self._run(self._ops.set(key, value, ttl_s, True))
        return value

    async def _run(self, op: Op) -> Any:
        if self._task is None:
            await self._start()  # before routing: the first call learns the topology
        items = op.items(self._core, self._clock())
        return op.finish(await self._execute(items, self._timeout_s), self._miss)

    async def _execute(self, items: Sequence[Item], timeout_s: float) -> list[object]:
        if self._closed:
            raise CacheError("the client is closed")
        call = self._core.call(items, self._clock(), timeout_s)
        while attempts := call.next_round(self._clock()):
            if len(attempts) == 1:
                await self._attempt(call, attempts[0])
            else:
                await asyncio.gather(*(self._attempt(call, a) for a in attempts))
        return call.outcomes

    async def _attempt(self, call: Call, attempt: Attempt) -> None:
        started = self._clock()
        try:
            conn = await self._connection(attempt.addr, attempt.timeout_s)
        except (OSError, TimeoutError):
            self._failed(call, attempt, Failure.REFUSED)
            return
        future = conn.request(attempt.payload, len(attempt.items))
        remaining = started + attempt.timeout_s - self._clock()
        timer = asyncio.get_running_loop().call_later(remaining, expire, future)
        try:
            replies = await future
        except TimeoutError:
            self._failed(call, attempt, Failure.TIMEOUT)
            return
        except ConnectionError:
            self._failed(call, attempt, Failure.BROKEN)
            return
        finally:
            timer.cancel()
        now = self._clock()
        call.replied(attempt, replies, now - started, now)

    def _failed(self, call: Call, attempt: Attempt, failure: Failure) -> None:
        call.failed(attempt, failure, self._clock())
        for addr in self._core.take_downed():
            conn = self._conns.pop(addr, None)
            if conn is not None:
                conn.close()
        if self._wake is not None:
            self._wake.set()

    async def _connection(self, addr: str, timeout_s: float) -> Connection:
        conn = self._conns.get(addr)
        if conn is not None and conn.usable:
            return conn
        pending = self._connecting.get(addr)
        if pending is None:
            pending = asyncio.ensure_future(self._connect(addr, timeout_s))
            self._connecting[addr] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(addr, None))
        return await asyncio.shield(pending)

    async def _open(self, addr: str) -> Connection:
        """A connection to the node at `addr` (through its route), over TLS if asked:
        the certificate must name the node's own host, whatever the route."""
        host, port = split_addr(self._routes.get(addr, addr))
        loop = asyncio.get_running_loop()
        if self._tls is None:
            _, conn = await loop.create_connection(lambda: Connection(addr), host, port)
        else:
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(addr),
                    host,
                    port,
                    ssl=self._tls,
                    server_hostname=host_of(addr),
                )
            except ssl.SSLError as exc:
                log_tls_failure(addr, exc)
                raise
        return conn

    async def _connect(self, addr: str, timeout_s: float) -> Connection:
        conn = await asyncio.wait_for(self._open(addr), timeout_s)
        if self._auth:
            conn.send_ignored(self._auth)  # a wrong password shows as NOAUTH replies
        self._conns[addr] = conn
        return conn

    # -- background: bootstrap, topology refresh, probes ------------------------------------

    async def _start(self) -> None:
        if self._boot is None:
            self._boot = asyncio.Lock()
        async with self._boot:
            if self._task is not None:
                return
            await self._refresh_topology()
            await self._choose_home()
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(_maintain(weakref.ref(self), self._wake))

    async def _measure(self, addr: str) -> list[float]:
        """PING round trips (seconds) to one seed, on a connection of its own."""
        samples: list[float] = []
        timeout_s = self._core.health.policy.probe_timeout_s
        try:
            conn = await asyncio.wait_for(self._connect_probe(addr), timeout_s)
            try:
                for _ in range(RTT_SAMPLES):
                    started = self._clock()
                    await asyncio.wait_for(conn.request(PING_COMMAND, 1), timeout_s)
                    samples.append(self._clock() - started)
            finally:
                conn.close()
        except (OSError, TimeoutError):
            pass
        return samples

    def _background_delay_s(self) -> float:
        return min(max(0.0, self._core.next_wakeup() - self._clock()), _MAX_SLEEP_S)

    async def _maintain_once(self) -> None:
        probes = self._core.probes_due(self._clock())
        if probes:
            await asyncio.gather(*(self._probe(a) for a in probes))
        if self._core.refresh_due(self._clock()):
            await self._refresh_topology()
            await self._choose_home()  # if the first call could not: no map, or no seed answered

    async def _choose_home(self) -> None:
        seeds = self._core.seeds_to_measure()
        if seeds:
            samples = await asyncio.gather(*(self._measure(a) for a in seeds))
            self._core.seeds_measured(dict(zip(seeds, samples, strict=True)), self._clock())

    async def _probe(self, addr: str) -> None:
        started = self._clock()
        latency: float | None = None
        timeout_s = self._core.health.policy.probe_timeout_s
        try:
            conn = await asyncio.wait_for(self._connect_probe(addr), timeout_s)
            try:
                (reply,) = await asyncio.wait_for(conn.request(PROBE_COMMAND, 1), timeout_s)
                if self._core.probe_answered(reply):
                    latency = self._clock() - started
            finally:
                conn.close()
        except (OSError, TimeoutError):
            pass
        finally:  # always report, or the node would never be probed again
            self._core.probed(addr, latency, self._clock())

    async def _connect_probe(self, addr: str) -> Connection:
        conn = await self._open(addr)
        if self._auth:
            conn.send_ignored(self._auth)
        return conn

    async def _refresh_topology(self) -> None:
        item = self._core.nodes_item(TOPOLOGY_COMMAND, self._core.topology_sources())
        call = self._core.call([item], self._clock(), self._timeout_s)
        while attempts := call.next_round(self._clock()):
            await self._attempt(call, attempts[0])
        self._core.topology_fetched(call, self._clock())


async def _maintain(ref: weakref.ref[AsyncClient], wake: asyncio.Event) -> None:
    """The background task. It holds the client weakly: a client dropped without close()
    is still collected, and its task ends within _MAX_SLEEP_S."""
    while (client := ref()) is not None and not client._closed:
        delay = client._background_delay_s()
        del client
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
        wake.clear()
        if (client := ref()) is None or client._closed:
            return
        try:
            await client._maintain_once()
        except Exception:  # pragma: no cover - a bug must not stop failover
            log.exception("client background work failed")
            await asyncio.sleep(_BUG_PAUSE_S)
        del client
