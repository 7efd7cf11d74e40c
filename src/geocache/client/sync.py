"""`Client`: the blocking geocache client, thread-safe, over the sans-IO core.

Each node has a small pool of sockets (pool.py); a call takes one per node it talks to,
sends its commands pipelined, reads the replies against the attempt's own timeout, and
gives the socket back. A pooled socket is checked before reuse: one whose node died
while it sat idle is dropped before anything is sent, and the call connects anew
(refused: the node is down, at once, and the call moves on to the next candidate).

A socket whose attempt timed out or broke is closed, never reused: a late reply would
answer the next command. One lock guards the core's health and topology; it is held for
bookkeeping only, never during I/O.

The first call learns the map and, without `region=`, PINGs the seeds (each on a socket
of its own, all at once) to choose the home region (core.py). A background thread
(started then) refreshes the topology every `topology_refresh_s` and soon after a
routing error, and probes down nodes; `close()` stops it and closes every socket.
"""

from __future__ import annotations

import logging
import threading
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
from geocache.client.ops import Key, Op, make_ops, misses
from geocache.client.pool import DEFAULT_POOL_SIZE, Conn, Pool
from geocache.client.topology import check_routes, parse_seeds
from geocache.memoize import MISSING, KeyBuilder, Memoize, MemoStore, memoize_sync
from geocache.protocol.errors import ProtocolError
from geocache.serializers import Serializer, SerializerName
from geocache.singleflight import Flights
from geocache.store.local import check_ttl_s, to_key
from geocache.tls import client_tls

K = TypeVar("K", bound=str | bytes)
Clock = Callable[[], float]

# After an unexpected error in the background thread, pause this long (seconds) before
# the next round, so a persistent bug logs once a second rather than spinning.
_BUG_PAUSE_S = 1.0
log = logging.getLogger("geocache.client")
# The background thread sleeps at most this long (seconds) before looking at its work
# again; a bound, since the next wake-up may be far off (or infinite).
_MAX_SLEEP_S = 5.0


class Client:
    """A blocking client for a geocache node or cluster; share one across threads.

    `seeds`: "host:port" addresses, any node(s) of the cluster. `region`: where this
    client runs (None: the region of the nearest seed, by PING round trips). `serializer`:
    what stores values other than bytes, str and int (client/values.py): "json"
    (default), "msgpack", "raw" (none: bytes, str and int only) or "pickle": pickle only
    for a cache that only trusted code can write, since unpickling runs code, so anyone
    able to write to the cache could run code in every reader. `decode`: plain values
    (bytes, str, int as text, and whatever other clients wrote) read back as str rather
    than bytes. `typed`: every value reads back as the type that was stored (str as
    str, int as int), at the price of a mark on str and bytes that other languages see.
    `key_prefix` and `version`: every key is stored as `key_prefix`, then `version:`
    when a version is given, then the key. `timeout_s`: the deadline of a whole call,
    failover included. `on_error`: "raise" (default) or "miss", to treat an unreachable
    cache as a miss (ops.py says what each call then returns). `routes`: node address
    -> address to dial instead (a delay relay standing for a far region in tests and
    the demo); nodes keep their own addresses in the map and in `stats()`, but latency
    is measured on the routed path, so regions are ranked by the path actually used.
    `ssl`: TLS to every node, verifying its certificate against the system's CAs and its
    name against the host of its address (seeds written `rediss://host:port` ask for
    the same); `ssl_context`: TLS with this context instead (your CA, a client
    certificate: `geocache.tls.client_context(ca_file=..., cert_file=..., key_file=...)`).
    """

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
        pool_size: int = DEFAULT_POOL_SIZE,
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
        self._core = Core(seed_list, region=region, policy=health, refresh_s=topology_refresh_s)
        self._ops = make_ops(serializer, key_prefix, version, decode, typed)
        self._timeout_s = timeout_s
        self._clock = clock
        tls = client_tls(ssl, ssl_context, seeds_tls)
        self._pool = Pool(password, pool_size, check_routes(routes), tls)
        self._lock = threading.Lock()  # the core's health and topology
        self._boot_lock = threading.Lock()
        self._flights: Flights[Any] = Flights()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        # A client dropped without close() still closes its sockets and wakes its thread
        # (to end) when it is collected.
        weakref.finalize(self, _collected, self._pool, self._wake)

    # -- one key ---------------------------------------------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """The value of `key`, or `default` if there is none (a stored None is a value)."""
        return self._run(self._ops.get(key, default))

    def set(self, key: Key, value: Any, ttl_s: float | None = None) -> None:
        """Store `value`, expiring after `ttl_s` seconds (None: never)."""
        self._run(self._ops.set(key, value, ttl_s))

    def add(self, key: Key, value: Any, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` has none (SET NX); True if it was stored."""
        result: bool = self._run(self._ops.add(key, value, ttl_s))
        return result

    def delete(self, key: Key) -> bool:
        """Delete `key`; True if it existed."""
        result: bool = self._run(self._ops.delete(key))
        return result

    def exists(self, key: Key) -> bool:
        """Whether `key` has a value (a stored None counts)."""
        result: bool = self._run(self._ops.exists(key))
        return result

    def expire(self, key: Key, ttl_s: float) -> bool:
        """Set a key's TTL (zero or less deletes it); True if the key exists."""
        result: bool = self._run(self._ops.expire(key, ttl_s))
        return result

    def touch(self, key: Key, ttl_s: float | None = None) -> bool:
        """Give `key` a new TTL (None: never expire; zero or less deletes it); True if it
        exists."""
        result: bool = self._run(self._ops.touch(key, ttl_s))
        return result

    def ttl(self, key: Key) -> float | None:
        """Seconds left: None if there is no such key, math.inf if it never expires."""
        result: float | None = self._run(self._ops.ttl(key))
        return result

    def incr(self, key: Key, delta: int = 1) -> int:
        """Add `delta` to a counter (missing: 0) and return it; never retried once sent.

        A counter is decimal text (what `set(k, 5)` stores); anything else raises
        CommandError, and so does an unreachable cache even with on_error="miss".
        """
        result: int = self._run(self._ops.incr(key, delta))
        return result

    def decr(self, key: Key, delta: int = 1) -> int:
        """Subtract `delta` from a counter (missing: 0) and return it; as `incr`."""
        return self.incr(key, -delta)

    def getver(self, key: Key) -> int | None:
        """The version of `key`'s value (it grows with every write), None if missing.

        For a compare-and-set: read the version, then the value, then `cas` with it.
        """
        result: int | None = self._run(self._ops.getver(key))
        return result

    def cas(self, key: Key, version: int, value: Any, ttl_s: float | None = None) -> int | None:
        """Store `value` only if `key`'s version is still `version` (0: only if missing).

        Returns the new version, or None if another write came first. `ttl_s` is rounded
        up to whole seconds. Raises when the cache cannot answer, whatever `on_error`.
        """
        result: int | None = self._run(self._ops.cas(key, version, value, ttl_s))
        return result

    # -- many keys -------------------------------------------------------------------------

    def get_many(self, keys: Iterable[K]) -> dict[K, Any]:
        """The keys found, as given, with their values; one pipeline per node."""
        result: dict[K, Any] = self._run(self._ops.get_many(keys))
        return result

    def set_many(self, values: Mapping[K, Any], ttl_s: float | None = None) -> None:
        """Store every key's value (as `set`); one pipeline per node."""
        self._run(self._ops.set_many(values, ttl_s))

    def delete_many(self, keys: Iterable[Key]) -> int:
        """Delete every key; how many existed. One pipeline per node."""
        result: int = self._run(self._ops.delete_many(keys))
        return result

    def clear(self, prefix: Key = "") -> int:
        """Delete every key of this client's namespace (`key_prefix` and `version`), or
        every key when it has none; with `prefix`, only the keys (as given to this
        client) that start with it. How many were deleted.

        Each node of the home region lists its keys (SCAN), and each key is deleted as
        `delete` would (so the deletes reach every copy and region). Not atomic: a key
        written meanwhile may stay.
        """
        self._start()
        with self._lock:
            addrs = self._core.scan_addrs()
        deleted, seen = 0, set[bytes]()
        for addr in addrs:
            cursor = b"0"
            while True:
                cursor, keys = self._run(self._ops.scan(addr, cursor, prefix))
                fresh = [k for k in keys if k not in seen]
                seen.update(fresh)
                if fresh:
                    deleted += self._run(self._ops.delete_stored(fresh))
                if cursor == b"0":
                    break
        return deleted

    # -- computed values -------------------------------------------------------------------

    def get_or_set(self, key: Key, fn: Callable[[], Any], ttl_s: float | None = None) -> Any:
        """The cached value, or `fn()` stored and returned; concurrent callers wait for one.

        The value is stored typed (client/values.py), so it reads back as it was.
        """
        raw = to_key(key)
        check_ttl_s(ttl_s)  # before fn runs, not after
        value = self._run(self._ops.get(raw, MISSING, typed=True))
        if value is not MISSING:
            return value
        return self._flights.do(raw, lambda: self._load(raw, fn, ttl_s))

    def memoize(
        self,
        ttl_s: float | None = None,
        key_builder: KeyBuilder | None = None,
        namespace: str | None = None,
    ) -> Memoize:
        """Decorate a function (plain or async) so its results are cached per arguments.

        The decorated function has `invalidate(*args)` and `refresh(*args)` (memoize.py);
        an async function's cache calls run in a worker thread.
        """
        check_ttl_s(ttl_s)
        # Made per decorator, not kept: a client that held one would hold itself.
        store = MemoStore(
            get_or_set=self.get_or_set,
            put=lambda key, value, ttl_s: self._run(self._ops.set(key, value, ttl_s, True)),
            delete=self.delete,
            get=lambda key: self._run(self._ops.get(key, MISSING, typed=True)),
            threaded=True,
        )
        return memoize_sync(store, ttl_s, key_builder, namespace)

    # -- the client itself -----------------------------------------------------------------

    def connect(self) -> None:
        """Learn the cluster map and choose the home region now (the first call does it
        otherwise); raises nothing if no node answers, as calls then say why."""
        self._start()

    def owners(self, key: Key) -> tuple[str, ...]:
        """The addresses owning `key` in this client's region, primary first."""
        self._start()
        return self._core.topology.owners(self._ops.key(key), self._core.home_region)

    @property
    def region(self) -> str:
        """The home region: the one given, else the nearest seed's (connects if needed)."""
        self._start()
        return self._core.home_region

    def stats(self) -> dict[str, NodeStats]:
        """What this client has seen of each node, by address."""
        with self._lock:
            return self._core.stats()

    def close(self) -> None:
        """Stop the background thread and close every socket."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- running calls ---------------------------------------------------------------------

    def _load(self, key: bytes, fn: Callable[[], Any], ttl_s: float | None) -> Any:
        # Another process, or a flight that just ended here, may have stored it.
        value = self._run(self._ops.get(key, MISSING, typed=True))
        if value is MISSING:
            value = fn()
            self._run(self._ops.set(key, value, ttl_s, True))
        return value

    def _run(self, op: Op) -> Any:
        self._start()  # before routing: the first call learns the topology
        items = op.items(self._core, self._clock())
        return op.finish(self._execute(items, self._timeout_s), self._miss)

    def _execute(self, items: Sequence[Item], timeout_s: float) -> list[object]:
        if self._closed:
            raise CacheError("the client is closed")
        clock, lock = self._clock, self._lock
        call = self._core.call(items, clock(), timeout_s)
        while True:
            with lock:
                attempts = call.next_round(clock())
            if not attempts:
                return call.outcomes
            self._round(call, attempts)

    def _round(self, call: Call, attempts: list[Attempt]) -> None:
        clock = self._clock
        sent: list[tuple[Attempt, Conn, float]] = []
        for attempt in attempts:
            started = clock()
            try:
                conn = self._pool.acquire(attempt.addr, attempt.timeout_s)
            except OSError:
                self._failed(call, attempt, Failure.REFUSED)
                continue
            try:
                conn.send(attempt.payload, attempt.timeout_s)
            except OSError:
                conn.close()
                self._failed(call, attempt, Failure.BROKEN)
                continue
            sent.append((attempt, conn, started))
        for index, (attempt, conn, started) in enumerate(sent):
            try:
                replies = conn.read(len(attempt.items), started + attempt.timeout_s, clock)
            except TimeoutError:
                conn.close()
                self._failed(call, attempt, Failure.TIMEOUT)
                continue
            except (OSError, ProtocolError):
                conn.close()
                self._failed(call, attempt, Failure.BROKEN)
                continue
            except BaseException:  # an interrupt: replies still due make these unusable
                for _, unread, _ in sent[index:]:
                    unread.close()
                raise
            self._pool.release(conn)
            now = clock()
            with self._lock:
                call.replied(attempt, replies, now - started, now)

    def _failed(self, call: Call, attempt: Attempt, failure: Failure) -> None:
        with self._lock:
            call.failed(attempt, failure, self._clock())
            downed = self._core.take_downed()
        for addr in downed:
            self._pool.drop(addr)
        self._wake.set()

    # -- background: bootstrap, topology refresh, probes ------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._boot_lock:
            if self._thread is not None:
                return
            self._refresh_topology()
            self._choose_home()
            self._thread = threading.Thread(
                target=_maintain, args=(weakref.ref(self), self._wake), daemon=True
            )
            self._thread.name = "geocache-client"
            self._thread.start()

    def _measure(self, seeds: list[str]) -> dict[str, list[float]]:
        """PING round trips (seconds) per seed, every seed at once, each on a socket of
        its own; a seed that fails gives what it gave before failing."""
        samples: dict[str, list[float]] = {addr: [] for addr in seeds}
        timeout_s = self._core.health.policy.probe_timeout_s

        def ping(addr: str) -> None:
            clock = self._clock
            try:
                conn = self._pool.connect(addr, timeout_s)
                try:
                    for _ in range(RTT_SAMPLES):
                        started = clock()
                        conn.send(PING_COMMAND, timeout_s)
                        conn.read(1, started + timeout_s, clock)
                        samples[addr].append(clock() - started)
                finally:
                    conn.close()
            except (OSError, ProtocolError):
                pass

        threads = [threading.Thread(target=ping, args=(a,), daemon=True) for a in seeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout_s * (RTT_SAMPLES + 1))
        return {addr: list(rtts) for addr, rtts in samples.items()}

    def _background_delay_s(self) -> float:
        with self._lock:
            wakeup = self._core.next_wakeup()
        return min(max(0.0, wakeup - self._clock()), _MAX_SLEEP_S)

    def _maintain_once(self) -> None:
        now = self._clock()
        with self._lock:
            probes = self._core.probes_due(now)
            refresh = self._core.refresh_due(now)
        for addr in probes:
            self._probe(addr)
        if refresh:
            self._refresh_topology()
            self._choose_home()  # if the first call could not: no map, or no seed answered

    def _choose_home(self) -> None:
        with self._lock:
            seeds = self._core.seeds_to_measure()
        if seeds:
            samples = self._measure(seeds)
            with self._lock:
                self._core.seeds_measured(samples, self._clock())

    def _probe(self, addr: str) -> None:
        started = self._clock()
        latency: float | None = None
        timeout_s = self._core.health.policy.probe_timeout_s
        try:
            conn = self._pool.connect(addr, timeout_s)
            try:
                conn.send(PROBE_COMMAND, timeout_s)
                (reply,) = conn.read(1, started + timeout_s, self._clock)
                if self._core.probe_answered(reply):
                    latency = self._clock() - started
            finally:
                conn.close()
        except (OSError, ProtocolError):
            pass
        finally:  # always report, or the node would never be probed again
            with self._lock:
                self._core.probed(addr, latency, self._clock())

    def _refresh_topology(self) -> None:
        with self._lock:
            item = self._core.nodes_item(TOPOLOGY_COMMAND, self._core.topology_sources())
            call = self._core.call([item], self._clock(), self._timeout_s)
        while True:
            with self._lock:
                attempts = call.next_round(self._clock())
            if not attempts:
                break
            self._round(call, attempts)
        with self._lock:
            self._core.topology_fetched(call, self._clock())


def _collected(pool: Pool, wake: threading.Event) -> None:
    pool.close()
    wake.set()


def _maintain(ref: weakref.ref[Client], wake: threading.Event) -> None:
    """The background thread. It holds the client weakly, so a client dropped without
    close() is still collected; its finalizer wakes the thread, which then ends."""
    while (client := ref()) is not None and not client._closed:
        delay = client._background_delay_s()
        del client
        wake.wait(delay)
        wake.clear()
        if (client := ref()) is None or client._closed:
            return
        try:
            client._maintain_once()
        except Exception:  # pragma: no cover - a bug must not stop failover
            log.exception("client background work failed")
            wake.wait(_BUG_PAUSE_S)
        del client
