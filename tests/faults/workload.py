"""The workload: a few client threads making random SETs, DELs and GETs, all recorded.

Each client thread sends one request at a time to a node chosen at random (any node
answers any key), over plain RESP as any Redis client would, and records the operation
in the history (history.py) when it completes or fails. Two disjoint key families keep
the checker exact: `k*` keys are never given a TTL, `t*` keys always are (so the
checker knows which absences an expiry may explain).

Bounded: the threads stop at `stop()`, after `max_ops` operations in all, or after
`max_duration_s`, whichever comes first; each request has its own timeout. A short
pause between a client's requests leaves the two CPUs to the nodes.

A schedule's FLUSHALL (`Workload.flush`) goes through the same recording, as client
`HARNESS_CLIENT`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from support.resp import RawClient

from . import wire
from .history import ALL_KEYS, DEL, FAIL, FLUSH, GET, INFO, OK, SET, History, Op

# Outcomes of error replies that certainly did nothing: the node refused the request
# before touching any key (still joining). Every other error may follow a local write.
REFUSED_PREFIXES = ("LOADING",)
# The client id of operations the harness makes itself (a schedule's FLUSHALL).
HARNESS_CLIENT = -1


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    clients: int = 4
    plain_keys: int = 30  # k000.. : never a TTL
    ttl_keys: int = 10  # t000.. : always a TTL
    # Operation mix (the rest are GETs).
    set_share: float = 0.5
    del_share: float = 0.15
    # TTLs of t* keys: long enough to outlive replication, short enough to expire
    # during a run, so expiry meets faults.
    min_ttl_ms: int = 1_500
    max_ttl_ms: int = 6_000
    # A request that has no answer in this time is recorded as unknown (info). Longer than
    # the node's own failover (a forwarded write waits 1.2 s for its primary, then as long
    # for the next owner: router.py), so that failover reaches the client as an answer,
    # as it does for a Redis client with a timeout of a few seconds or none.
    op_timeout_s: float = 3.0
    # Between a client's requests: about 100 requests/s per client at most.
    pause_s: float = 0.01
    max_ops: int = 50_000
    max_duration_s: float = 120.0


def is_ttl_key(key: str) -> bool:
    return key.startswith("t")


class Workload:
    """Client threads recording into a history until stopped or out of budget."""

    def __init__(
        self,
        config: WorkloadConfig,
        targets: dict[str, str],
        port: int,
        history: History,
        clock: Callable[[], float],
        seed: int,
    ) -> None:
        """`targets`: node id -> address; `clock`: seconds since the run began."""
        self.config = config
        self.targets = targets
        self.port = port
        self.history = history
        self.clock = clock
        self.seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._count_lock = threading.Lock()
        self._count = 0
        self.errors: list[BaseException] = []

    @property
    def keys(self) -> list[str]:
        c = self.config
        return [f"k{i:03d}" for i in range(c.plain_keys)] + [f"t{i:03d}" for i in range(c.ttl_keys)]

    def start(self) -> None:
        deadline = time.monotonic() + self.config.max_duration_s
        for client in range(self.config.clients):
            thread = threading.Thread(
                target=self._guarded, args=(client, deadline), name=f"workload-{client}"
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.config.op_timeout_s * 3 + 5)
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError("a workload thread did not stop")

    def flush(self, node: str, addr: str) -> None:
        """FLUSHALL through `node` (at `addr`), recorded as a `flush` of every key."""
        client = _Client(self, HARNESS_CLIENT, {node: addr})
        try:
            client.request(node, FLUSH, ALL_KEYS, None, 0, ["FLUSHALL"])
        finally:
            client.close()

    def _take(self) -> bool:
        with self._count_lock:
            if self._count >= self.config.max_ops:
                return False
            self._count += 1
            return True

    def _guarded(self, client: int, deadline: float) -> None:
        try:
            _Client(self, client).run(deadline)
        except BaseException as exc:  # surfaced by the runner: never lost in a thread
            self.errors.append(exc)


class _Client:
    def __init__(
        self, workload: Workload, client: int, targets: dict[str, str] | None = None
    ) -> None:
        self.w = workload
        self.client = client
        self.targets = targets or workload.targets
        self.rng = random.Random(workload.seed * 1_000 + client)
        self.conns: dict[str, RawClient] = {}
        self.seq = 0

    def run(self, deadline: float) -> None:
        w = self.w
        try:
            while not w._stop.is_set() and time.monotonic() < deadline and w._take():
                self.one()
                w._stop.wait(w.config.pause_s)
        finally:
            self.close()

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()

    def one(self) -> None:
        c, rng = self.w.config, self.rng
        key = rng.choice(self.w.keys)
        roll = rng.random()
        node = rng.choice(sorted(self.targets))
        if roll < c.set_share:
            self.seq += 1
            value = f"{self.client}.{self.seq}"
            ttl_ms = rng.randint(c.min_ttl_ms, c.max_ttl_ms) if is_ttl_key(key) else 0
            argv = ["SET", key, value] + (["PX", str(ttl_ms)] if ttl_ms else [])
            self.request(node, SET, key, value, ttl_ms, argv)
        elif roll < c.set_share + c.del_share:
            self.request(node, DEL, key, None, 0, ["DEL", key])
        else:
            self.request(node, GET, key, None, 0, ["GET", key])

    def request(
        self, node: str, kind: str, key: str, value: str | None, ttl_ms: int, argv: list[str]
    ) -> None:
        w = self.w
        start_s, start_wall_ms = w.clock(), time.time_ns() // 1_000_000
        outcome, result, error = self.send(node, argv)
        if kind == GET:
            value = result
        op = Op(
            op_id=w.history.next_id(),
            client=self.client,
            kind=kind,
            key=key,
            value=value,
            ttl_ms=ttl_ms,
            node=node,
            start_s=start_s,
            end_s=w.clock(),
            start_wall_ms=start_wall_ms,
            outcome=outcome,
            error=error,
        )
        w.history.add(op)

    def send(self, node: str, argv: list[str]) -> tuple[str, str | None, str]:
        """(outcome, value read, error) of one request."""
        conn = self.conns.get(node)
        if conn is None:
            try:
                conn = wire.connect(self.targets[node], self.w.port, self.w.config.op_timeout_s)
            except OSError as exc:
                return FAIL, None, f"connect: {exc}"
            self.conns[node] = conn
        try:
            reply = wire.call(conn, *argv)
        except (OSError, ValueError) as exc:  # timeout, reset, or a garbled reply
            self.conns.pop(node).close()  # a late reply must not answer the next request
            return INFO, None, f"{type(exc).__name__}: {exc}"
        return classify(reply)


def classify(reply: object) -> tuple[str, str | None, str]:
    """(outcome, value read, error) of a reply."""
    if isinstance(reply, wire.Error):
        refused = reply.startswith(REFUSED_PREFIXES)
        return (FAIL if refused else INFO), None, str(reply)
    # A GET's value, or a SET's OK (which its caller ignores), or nil, or DEL's count.
    return OK, (reply.decode() if isinstance(reply, bytes) else None), ""
