"""A node's lifecycle: its store, its listeners, its background cycles, its shutdown.

`Node` is the one composition root: it builds the store, the cluster (membership,
router, replication) and the read-through origin from the settings, or takes the parts
it is given (the simulator passes its own store, peer connections, clock and random
source), and chooses once, here, the path every command takes: the local dispatch, the
cluster's router, or a standalone origin's miss filler around the local dispatch.

It owns one event loop's worth of state: the store, the client sessions and the
counters that INFO and /metrics read. `start()` binds the listeners, `run()` serves
until `request_stop()` (SIGTERM/SIGINT), and `stop()` stops accepting, lets the replies
already produced reach their clients, and closes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import platform
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, fields

from geocache._version import __version__
from geocache.clock import HLC, Clock, OffsetClock, SystemClock
from geocache.cluster.advertise import with_advertise_addr
from geocache.cluster.cluster import Cluster
from geocache.cluster.handlers import peer_commands
from geocache.cluster.journal import JournaledStore
from geocache.cluster.peers import Peers
from geocache.commands.context import Session, Topology
from geocache.commands.slowlog import SlowLog
from geocache.commands.table import Command, build_table, dispatch
from geocache.compiled import compiled, pure_requested
from geocache.config import NodeConfig
from geocache.fill import Filler
from geocache.observability.events import EventLog
from geocache.observability.metrics import Metrics
from geocache.observability.throttle import LogThrottle
from geocache.origin.readthrough import ReadThrough
from geocache.origin.service import Dispatch, StandaloneMisses, open_origin
from geocache.server.http import HttpServer, start_http
from geocache.server.limits import ClientBudget, Refusals, largest, plan_fds
from geocache.server.pause import ClientPause
from geocache.server.resp import CommandGate, RespConnection
from geocache.server.tls import RESP_REFUSAL, TlsCounters, TlsListener
from geocache.store.databases import DATABASES, Databases
from geocache.store.keyspace import Store
from geocache.store.scan import Scanner
from geocache.store.tombstones import Tombstones
from geocache.tls import LogLimiter, peer_context, reload, server_context

log = logging.getLogger("geocache.node")

# The active expiry cycle runs every 100 ms and may take 25 ms of it (Redis's
# ACTIVE_EXPIRE_CYCLE_SLOW_TIME_PERC), checking the clock every 200 keys.
EXPIRE_TICK_S = 0.1
EXPIRE_BUDGET_S = 0.025
EXPIRE_BATCH_KEYS = 200
# How often idle connections are looked for, when idle_timeout_s is set.
IDLE_CHECK_S = 1.0
# How often a joining node looks whether the join timeout has passed (s).
JOIN_WATCH_S = 0.1
# How often connections are checked against the auth timeout, the output stall timeout
# and the client memory budget (s): a quarter second is well inside each timeout.
LIMITS_CHECK_S = 0.25
# How long a graceful stop waits for replies to drain before closing hard.
DRAIN_TIMEOUT_S = 5.0


@dataclass(slots=True)
class NodeStats:
    """Plain counters bumped on the hot path and read at scrape time."""

    connections_received: int = 0
    rejected_connections: int = 0
    commands_processed: int = 0
    net_input_bytes: int = 0
    net_output_bytes: int = 0
    protocol_errors: int = 0
    output_limit_disconnects: int = 0
    idle_disconnects: int = 0
    handler_errors: int = 0
    expire_cycles: int = 0
    # Wrong passwords: AUTH and HELLO AUTH on RESP, the bearer token over HTTP.
    auth_failures: int = 0
    auth_disconnects: int = 0
    http_auth_failures: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


class Node:
    def __init__(
        self,
        config: NodeConfig,
        clock: Clock | None = None,
        *,
        store: Store | None = None,
        peers: Peers | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Parts not given are made from `config`: `store` (a `JournaledStore` in cluster
        mode), `peers` (the connections to other nodes) and `rng` (membership's and
        repair's random choices)."""
        if config.clustered and not (config.port or config.tls_port) and not config.advertise_addr:
            raise ValueError("cluster mode needs a fixed --port or an --advertise-addr")
        if config.clustered and not config.advertise_addr:
            # Where peers reach this node, chosen once (a wildcard bind looks toward
            # the first seed); ValueError when it cannot tell. `geocache serve` chose
            # it already, before logging started (the node id may be that address).
            config, why = with_advertise_addr(config)
            log.info("advertising", extra={"addr": config.advertise_addr, "chosen_by": why})
        self.config = config
        if clock is None:
            clock = SystemClock()
            if config.clock_offset_ms:
                clock = OffsetClock(clock, config.clock_offset_ms)
        self.clock: Clock = clock
        self.node_id = config.effective_node_id
        # TLS (tls.py): the server context (TLS port, HTTPS) and the one peers are
        # dialled with; SIGHUP loads new certificates into both (reload_tls).
        self.tls_context: ssl.SSLContext | None = server_context(config) if config.tls else None
        self.peer_tls: ssl.SSLContext | None = peer_context(config) if config.tls_cluster else None
        self.tls_counters = TlsCounters()
        self.tls_log = LogLimiter(logging.getLogger("geocache.tls"))
        self._tls_listeners: list[TlsListener] = []
        main = store if store is not None else _make_store(config, clock)
        # SELECT's databases: 0 is `main`; a cluster has no others (commands/databases.py).
        self.databases = Databases(main, self.clock, 1 if config.clustered else DATABASES)
        self.slowlog = SlowLog()
        # What happened to the cluster, as this node saw it: the dashboard's timeline.
        self.events = EventLog(self.clock, self.node_id)
        self.cluster: Cluster | None = None
        extra: list[Command] = []
        if config.clustered:
            self.cluster = self._make_cluster(peers, rng)
            extra = peer_commands(self.cluster)
        self.table: dict[bytes, Command] = build_table(extra)
        # The read-through origin, if one is configured (origin/); it hears of every
        # change to the store, so no value it loaded outlives a write or delete.
        self.origin: Filler | None = open_origin(self) if config.origin else None
        if isinstance(self.origin, ReadThrough):
            self.store.on_change = self.origin.forget
        # What runs a command, chosen once: the local dispatch, the cluster's router, or
        # a standalone origin's miss filler around the local dispatch.
        self.dispatch: Dispatch = self._dispatch_path()
        # max_concurrent_commands: client commands in progress at once (server/resp.py).
        self.gate = CommandGate(config.max_concurrent_commands)
        self.scanner = Scanner(self.clock)
        # CLIENT PAUSE wraps `dispatch` while a pause is on, and only then (server/pause.py).
        self.client_pause = ClientPause(self)
        self.stats = NodeStats()
        self.metrics = Metrics(self.table)
        # True from listening until stop begins; `ready` (what /readyz reports) also
        # waits for a clustered node's warm-up.
        self._listening = False
        self.started_ms = self.clock.wall_ms()
        self._started_mono_ms = self.clock.mono_ms()
        self._connections: dict[int, RespConnection] = {}
        # The doors and the client memory budget (server/limits.py).
        self.peer_connections = 0
        self.refusals = Refusals()
        self.budget = ClientBudget(config.client_memory_limit)
        self._next_id = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        # The plaintext RESP port once listening (the TLS one with --port 0), and the TLS one.
        self.resp_port = config.port or config.tls_port
        self.tls_port = config.tls_port
        self.http_port = config.http_port
        self._http: HttpServer | None = None
        # What `geocache serve` exits with: 1 when a clustered node could not join
        # (its seeds refused its proof of the secret) and allow_solo is off.
        self.exit_code = 0
        self._log = LogThrottle(log)

    def _make_cluster(self, peers: Peers | None, rng: random.Random | None) -> Cluster:
        config = self.config
        if not isinstance(self.store, JournaledStore):
            raise TypeError("a clustered node needs a JournaledStore")
        if peers is None:
            peers = Peers(
                self.node_id,
                config.cluster_secret,
                config.peer_routes,
                tls=self.peer_tls,
                tls_log=self.tls_log,
            )
        return Cluster(
            self,
            self.store,
            self.clock,
            peers,
            rng or random.Random(),
            config.peer_addr,
            self.events,
        )

    def _dispatch_path(self) -> Dispatch:
        if self.cluster is not None:
            return self.cluster.router.dispatch
        if isinstance(self.origin, ReadThrough):
            return StandaloneMisses(self, dispatch, self.origin)
        return dispatch

    @property
    def topology(self) -> Topology | None:
        return self.cluster

    # -- NodeContext ---------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """Database 0: the store every part of the node uses (SELECT aside)."""
        return self.databases.main

    def sleep_ms(self, delay_ms: int) -> Awaitable[None]:
        return asyncio.sleep(delay_ms / 1000)

    def sessions(self) -> Iterator[Session]:
        for conn in list(self._connections.values()):
            if conn.session is not None:
                yield conn.session

    def reset_stats(self) -> None:
        self.stats.reset()
        self.metrics.reset()
        for _index, store in self.databases.held():
            store.hits = store.misses = store.evictions = store.expirations = 0
        if self.cluster is not None:
            self.cluster.streams.reset_stats()

    def apply_config(self, config: NodeConfig) -> None:
        """CONFIG SET: limits take effect at once; a smaller max_bytes evicts on next write."""
        self.config = config
        self.budget.limit = config.client_memory_limit
        self.databases.set_limits(config.max_bytes, config.max_keys)

    def kill_client(self, client_id: int) -> bool:
        """CLIENT KILL: close a connection once the replies already made are sent."""
        conn = self._connections.get(client_id)
        if conn is None:
            return False
        conn.close()
        return True

    def pause_clients(self, timeout_ms: int, all_commands: bool) -> None:
        self.client_pause.pause(timeout_ms, all_commands)

    def unpause_clients(self) -> None:
        self.client_pause.unpause()

    def info_sections(self) -> dict[str, dict[str, object]]:
        from geocache.server.info import info_sections

        return info_sections(self)

    # -- connections ---------------------------------------------------------------------

    def next_client_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def connection_count(self) -> int:
        """RESP connections open, peers' included (INFO's connected_clients)."""
        return len(self._connections)

    def client_count(self) -> int:
        """RESP connections at the client door (peers and HTTP have their own doors)."""
        return len(self._connections) - self.peer_connections

    def http_count(self) -> int:
        return self._http.connections() if self._http is not None else 0

    def door(self) -> str | None:
        """Which door a new RESP connection comes in by: "client", "peer" (on probation,
        the client door being full), or None (refused)."""
        if self.client_count() < self.config.max_clients:
            return "client"
        if self.cluster is not None and self.peer_connections < self.config.max_peer_connections:
            return "peer"
        return None

    def refused_reason(self) -> str:
        return "max_peer_connections" if self.cluster is not None else "max_clients"

    def register(self, conn: RespConnection, peer: bool = False) -> None:
        assert conn.session is not None
        self._connections[conn.session.id] = conn
        if peer:
            self.peer_connections += 1

    def unregister(self, conn: RespConnection) -> None:
        session = conn.session
        if session is not None and self._connections.pop(session.id, None) is not None:
            self.budget.change(-conn.held_bytes)
            if conn.is_peer or conn.on_probation:
                self.peer_connections -= 1
            if session.handshake is not None and self.cluster is not None:
                # The peer got this node's proof and left without proving itself: it may
                # have refused that proof (another secret), so this side logs it too.
                self.cluster.trust.handshake_refused(
                    session.addr,
                    session.handshake.client_id,
                    "closed before proving itself (did it refuse this node's proof?)",
                )

    def promote(self, conn: RespConnection, was_probation: bool) -> None:
        """A connection proved the cluster secret: it counts at the peer door now."""
        if not was_probation:
            self.peer_connections += 1

    def client_memory_changed(self, delta: int) -> None:
        if self.budget.change(delta):
            self.budget.enforce(c for c in self._connections.values() if not c.is_peer)

    def largest_client_buffers(self, n: int = 3) -> list[int]:
        return largest((c for c in self._connections.values() if not c.is_peer), n)

    @property
    def ready(self) -> bool:
        """Serving, not stopping, and (in a cluster) warmed up or past warm-up's time
        bound, and trusted by a seed (or allowed to serve alone)."""
        return not self.not_ready_reason()

    def not_ready_reason(self) -> str:
        """Why /readyz says not ready; "" when ready."""
        if not self._listening:
            return "starting or stopping"
        return self.cluster.not_ready_reason() if self.cluster is not None else ""

    def serving_alone_reason(self) -> str:
        """Why this node serves alone although it was given seeds (allow_solo), or ""."""
        return self.cluster.trust.failure() if self.cluster is not None else ""

    # -- failed authentication -------------------------------------------------------------

    def auth_failed(self, session: Session) -> None:
        """A wrong password on RESP (AUTH, HELLO AUTH): counted, logged (rate-limited)."""
        self.stats.auth_failures += 1
        if session.closing:
            self.stats.auth_disconnects += 1
        self._log.warning(
            "authentication failed",
            kind="auth",
            client=session.addr,
            in_a_row=session.auth_failures,
            closing=session.closing,
        )

    def http_auth_failed(self, client: str) -> None:
        """A missing or wrong bearer token over HTTP: counted, logged (rate-limited)."""
        self.stats.http_auth_failures += 1
        self._log.warning("http authentication failed", kind="http auth", client=client)

    def uptime_s(self) -> int:
        return (self.clock.mono_ms() - self._started_mono_ms) // 1000

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._fit_fds()
        config = self.config
        if config.port or not config.tls_port:  # port 0 alone: any free port (tests)
            server = await loop.create_server(
                lambda: RespConnection(self),
                config.bind,
                config.port,
                reuse_address=True,
                backlog=1024,
            )
            self._servers.append(server)
            self.resp_port = server.sockets[0].getsockname()[1]
        if self.tls_context is not None:
            listener = self.tls_listener("resp", lambda: RespConnection(self), RESP_REFUSAL)
            self.tls_port = listener.listen(config.bind, config.tls_port)
            if not config.port:
                self.resp_port = self.tls_port
        if self.cluster is not None:
            await self.cluster.start()
        if isinstance(self.origin, ReadThrough) and self.origin.refresher is not None:
            self.origin.refresher.start()
        if self.config.http_port:
            self._http = await start_http(self)
            self.http_port = self._http.port
        self._tasks.append(asyncio.create_task(self._expire_loop()))
        self._tasks.append(asyncio.create_task(self._limits_loop()))
        if self.config.idle_timeout_s:
            self._tasks.append(asyncio.create_task(self._idle_loop()))
        if self.cluster is not None and self.config.seed_list:
            self._tasks.append(asyncio.create_task(self._join_watch()))
        # Entries are untracked tuples; freezing what startup allocated keeps full GC
        # passes short (they would otherwise walk every long-lived object).
        gc.freeze()
        self._listening = True
        log.info(
            "node ready",
            extra={
                "resp": f"{self.config.bind}:{self.resp_port}" if self._servers else "off",
                "tls": f"{self.config.bind}:{self.tls_port}" if self.tls_context else "off",
                "http": f"{self.config.bind}:{self.http_port}" if self._http else "off",
                "pid": os.getpid(),
                "compiled": "yes" if compiled() else "no",
            },
        )
        if not compiled() and not pure_requested():
            # The build fell back (no C compiler) or the .so files are gone: say so loudly,
            # the node is several times slower than it would be.
            log.warning(
                "running pure Python: the hot path is not compiled "
                "(reinstall where a C compiler is available; INFO server says compiled:no)"
            )

    def tls_listener(
        self, name: str, factory: Callable[[], asyncio.BaseProtocol], refusal: bytes
    ) -> TlsListener:
        """A TLS listener of this node (RESP, or HTTPS), closed when the node stops."""
        assert self.tls_context is not None
        listener = TlsListener(
            name, factory, self.tls_context, refusal, self.tls_counters, self.tls_log
        )
        self._tls_listeners.append(listener)
        return listener

    def reload_tls(self) -> None:
        """SIGHUP: load the certificate, key and CA files again. New handshakes use them;
        open connections keep going. Files that do not load change nothing."""
        contexts = [c for c in (self.tls_context, self.peer_tls) if c is not None]
        if not contexts:
            log.info("SIGHUP: no TLS configured, nothing to reload")
            return
        try:
            reload(contexts, self.config)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS reload failed; the old certificates stay", extra={"error": str(exc)})
            return
        log.info("TLS certificates reloaded", extra={"cert": self.config.tls_cert_file})

    def _fit_fds(self) -> None:
        """Raise the soft fd limit; lower max_clients, and say so, if it still cannot fit."""
        config = self.config
        others = config.max_peer_connections if config.clustered else 0
        others += config.max_http_connections if config.http_port else 0
        plan = plan_fds(config.max_clients, others)
        if plan.lowered:
            log.warning(
                "max_clients lowered to fit the file descriptor limit",
                extra={
                    "max_clients": plan.max_clients,
                    "asked": config.max_clients,
                    "nofile": plan.soft_limit,
                },
            )
            self.apply_config(config.replace(max_clients=plan.max_clients))

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Serve until request_stop(), then stop gracefully."""
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        self._listening = False
        log.info("node stopping", extra={"clients": len(self._connections)})
        for server in self._servers:
            server.close()
        for listener in self._tls_listeners:
            listener.close()
        if self.cluster is not None:
            await self.cluster.stop()
        if isinstance(self.origin, ReadThrough):
            await self.origin.close()
        if self._http is not None:
            await self._http.close()
        for task in self._tasks:
            task.cancel()
        for conn in list(self._connections.values()):
            conn.close()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self._connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._connections.values()):
            conn.abort()
        for server in self._servers:
            await server.wait_closed()
        log.info("node stopped")

    # -- background cycles -----------------------------------------------------------------

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_TICK_S)
            self.expire_cycle()

    def expire_cycle(self) -> int:
        """Reclaim expired keys for at most EXPIRE_BUDGET_S; returns keys looked at."""
        self.stats.expire_cycles += 1
        deadline = time.perf_counter() + EXPIRE_BUDGET_S
        total = 0
        for _index, store in self.databases.held():
            while time.perf_counter() < deadline:
                done = store.active_expire(EXPIRE_BATCH_KEYS)
                total += done
                if done < EXPIRE_BATCH_KEYS:
                    break
        return total

    async def _join_watch(self) -> None:
        """Once the join timeout has passed: a node no seed trusts stops (exit 1), or
        with allow_solo serves alone, and says so either way."""
        cluster = self.cluster
        assert cluster is not None
        while not cluster.repairer.ready:  # warmed up, or the join timeout passed
            await asyncio.sleep(JOIN_WATCH_S)
        failure = cluster.trust.failure()
        if not failure:
            return
        if self.config.allow_solo:
            log.warning("serving alone (allow_solo)", extra={"reason": failure})
            return
        log.error(
            "cannot join the cluster: stopping (allow_solo would serve alone)",
            extra={"reason": failure},
        )
        self.exit_code = 1
        self.request_stop()

    async def _limits_loop(self) -> None:
        while True:
            await asyncio.sleep(LIMITS_CHECK_S)
            self.check_limits()

    def check_limits(self) -> None:
        """Close connections past the auth or output stall timeout; re-measure what the
        others hold (a write buffer drains without telling) and keep the memory budget."""
        config = self.config
        now = self.clock.mono_ms()
        auth_ms = config.auth_timeout_s * 1000
        stall_ms = config.output_stall_timeout_s * 1000
        check_auth = bool(config.requirepass) or self.cluster is not None
        for conn in list(self._connections.values()):
            if check_auth and now - conn.accepted_ms > auth_ms and conn.needs_auth():
                conn.evict("auth_timeout")
            elif conn.stalled_since_ms and now - conn.stalled_since_ms > stall_ms:
                self.stats.output_limit_disconnects += 1
                conn.evict("output_stall")
            else:
                conn.report()
        self.budget.enforce(c for c in self._connections.values() if not c.is_peer)

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            limit_ms = self.config.idle_timeout_s * 1000
            if not limit_ms:
                continue
            now = self.clock.mono_ms()
            for conn in list(self._connections.values()):
                if conn.session is not None and now - conn.session.last_ms > limit_ms:
                    self.stats.idle_disconnects += 1
                    conn.close()


def _make_store(config: NodeConfig, clock: Clock) -> Store:
    """In cluster mode deletes leave tombstones and local writes are journaled for
    replication; a standalone node needs neither."""
    store_class = JournaledStore if config.clustered else Store
    return store_class(
        clock,
        max_bytes=config.max_bytes,
        max_keys=config.max_keys,
        node_id=config.effective_node_id,
        tombstones=Tombstones() if config.clustered else None,
        hlc=HLC(clock, config.max_clock_skew_ms),
    )


def server_facts() -> dict[str, object]:
    return {
        "redis_version": "7.0.15",
        "geocache_version": __version__,
        "redis_mode": "standalone",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "arch_bits": 64,
        "multiplexing_api": "epoll",
        "python_version": platform.python_version(),
        # yes: the hot path runs as mypyc-compiled C (geocache/compiled.py); no: pure Python.
        "compiled": "yes" if compiled() else "no",
        "process_id": os.getpid(),
    }
