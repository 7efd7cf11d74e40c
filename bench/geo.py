"""Cross-region replication: lag at rising write rates over a delayed link, and the bytes
that coalescing saves (issue 6).

What it measures, all on 127.0.0.1 with processes started here on free ports:

1. Lag. Two regions, A and B (`--nodes-per-region`, 1 by default), every node of one
   region reaching every node of the other through a relay that delays each direction
   by `--delay-ms` (50 ms one way: a 100 ms round trip); nodes of a region talk directly.
   Writes of unique keys (100-byte values) go into region A at each rate of `--rates`,
   paced every millisecond, each to its key's primary (as an owner-routing client does)
   pipelined over `--connections` connections per node, for `--seconds` per step.
   After a step the streams drain, then CONFIG RESETSTAT clears the lag samples and
   counters on every node. Per step:
   - `achieved`: writes answered OK during the step, per second; `short` when under 90%
     of the rate: region A (or this generator) could not take the load, and the rates
     stop rising there too;
   - `lag p50/p99` (the table's lag): as the nodes measure it, from INFO regions, the
     worst of region A's nodes. That is B's gateway's wall clock when B's owners applied
     the write minus the write's version time, over the last 4096 writes of the stream,
     read once the step's writes have drained (at 5,000 writes/s: its last 0.8 s).
     `worst p99` is the highest p99 INFO showed while the step ran (sampled every
     100 ms), so a bad moment early in a long step is not hidden;
   - `e2e p50/p99`: the cross-check, measured from outside: a marker key written to A
     every 20 ms and polled for on B's nodes every millisecond (GC.FETCH, as a peer: the
     node's own store); from the write's send time to the poll that first found it on
     any of B's nodes: an upper bound, by about one poll and one local round trip.
     Unlike the nodes' lag it also counts the time a write waits to be read by A's node,
     and it shares this process's loop with the load, so at the highest rates it can
     exceed the nodes' figure for reasons of its own;
   - `queued end / max`: records waiting in A's stream queues when the writes stopped,
     and the most seen while they ran;
   - `behind`: the stream fell behind: a resync was needed, or the queue held more than
     half a second of writes when the writes stopped, or the median of the stream's
     latest-batch lag (INFO `lag_ms`) rose by more than 4 one-way delays from the first
     third of the step to the last (`lag rise`). The rates stop rising after the first
     step that falls behind.
2. Bytes. Writes to `--hot-keys` hot keys (chosen uniformly, seeded) at `--hot-rate`,
   with coalescing on (the regions above) and off (regions started again with
   `--no-geo-coalesce`). The `bytes` counter is the GC.GEO commands a stream sent
   (encoded; retries included; not TCP/IP headers, the replies or membership traffic).
   Shown per record acknowledged by B (`B/record`: about the same either way, as each
   record is a key, a version and a value) and per write accepted in A (`B/write`: what
   coalescing saves), with the ratio off / on.

The relays run in a child process of their own (geocache.relay's RelaySet, on its own
thread there): in this process they would share the interpreter lock with the load
generator, and waits for it (the 5 ms switch interval) would show up as lag that no
network had. The nodes, the relays and the load still share the machine's cores, so a
busy moment of the machine shows up too: read a single bad step with that in mind.

`--tls`: the nodes' links to each other are mutual TLS (`--tls-cluster yes`, each node
on a TLS port beside its plaintext one; certificates made here), so the streams between
the regions, replication and membership all run over TLS through the relays; the load
and the probes still talk plaintext to the nodes' plaintext ports, so what changes is
the links between nodes alone. Results go to geo-tls.json.

The issue's target, p99 lag <= delay + 20 ms at 5,000 writes/s, is shown with each
run; a miss is never fatal. Exit status 1 means the run broke (a process did not start,
the regions did not converge, error replies, a lost connection), not that it was slow.
GEOCACHE_* variables are removed from the environment the nodes start with.

One file, over 800 lines, as each benchmark here is one script beside _common.py: the
relay child process, the two-region setup, the paced generator and the marker probe
serve this benchmark only.

    .venv/bin/python bench/geo.py [--quick] [--rates 500,1000,...] [--seconds S]
        [--delay-ms MS] [--nodes-per-region N] [--hot-keys K] [--hot-rate R] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any, TypeAlias

import hiredis
from rich.console import Console
from rich.table import Table

from _common import (
    READY_TIMEOUT_S,
    REPO,
    STOP_TIMEOUT_S,
    ServerProcess,
    ServerSpec,
    cpu_info,
    free_port,
    geocache_env,
    raise_on_sigterm,
    results_path,
    start_all,
)
from cluster import member_states, node_argv, run_async
from geocache import auth
from geocache.cli.certs import CertFiles, make_certs
from geocache.cluster import placement
from geocache.relay import RelaySet
from resp import fmt

DEFAULT_RATES = (500, 1_000, 2_000, 5_000, 10_000)  # writes/s: the steps
QUICK_RATES = (1_000, 5_000)  # --quick: a smoke test of the whole pipeline
# 5 s per step: long enough for a queue that keeps growing to show it (and for 4096 lag
# samples at every rate from 1,000 up), short enough for the whole run to take ~1.5 min.
DEFAULT_SECONDS = 5.0
QUICK_SECONDS = 2.0
DELAY_MS = 50.0  # one way between the regions (the issue)
TARGET_RATE = 5_000  # writes/s at which the issue sets the target
TARGET_SLACK_MS = 20.0  # the target: p99 lag at most the one-way delay plus this
HOT_KEYS = 1_000  # the bytes part's repeated keys (the issue)
HOT_RATE = 5_000  # writes/s of the bytes part: the target rate
HOT_SEED = 6  # the hot keys' order is the same in both runs
# Client connections to each node of region A. A write that waits for in-region
# replication holds its connection's pipeline until it is answered (a 1-node region
# answers on the next turn of its loop; a larger one after a replica's ack), so one
# connection alone would cap the rate at one write per replica round trip.
CONNECTIONS = 4
VALUE = b"v" * 100  # a small cached value, as the other benches
SECRET = "bench-geo"  # one secret for both regions: their nodes form one cluster
PROBE_ID = "bench-probe"  # the peer id the marker probe proves the secret as
# Pacing: the writes due are sent every millisecond (batches of ~10 at 10,000 writes/s),
# so the stream sees a steady flow, not bursts of a second's writes.
TICK_S = 0.001
# At most this many writes in one tick: after a stall of this process the generator
# catches up over several ticks instead of one huge pipeline.
MAX_BURST = 2_000
# Unanswered writes before the generator stops sending: a node that cannot keep up
# shows as a lower achieved rate instead of an ever-growing client buffer.
MAX_OUTSTANDING = 20_000
MARKER_EVERY_S = 0.02  # end-to-end markers: 50 a second, 1% of the writes at 5,000/s
POLL_S = 0.001  # region B is polled for the markers every millisecond
MARKERS_PER_POLL = 64  # oldest pending markers asked for per poll (one pipeline)
MARKER_TIMEOUT_S = 5.0  # a marker not in B this long after it was written is missing
SAMPLE_S = 0.1  # INFO regions of region A's nodes while a step runs: 50 samples a step
IO_TIMEOUT_S = 5.0  # one request/reply to a node (INFO, CONFIG, GC.TOPOLOGY)
REPLY_WAIT_S = 10.0  # the writes' replies after the last was sent
DRAIN_TIMEOUT_S = 20.0  # the queues emptied and acknowledged after a step
DRAIN_POLL_S = 0.02
# Falling behind (module docstring): the queue holds this much of a second's writes when
# the writes stop, or the latest-batch lag rose by more than this many one-way delays
# during the step. A stream that keeps up sends a batch's oldest write anywhere from
# at once to a round trip late (its batches wait for a free slot), so its latest-batch
# lag swings by up to 2 delays from sample to sample; one that falls behind adds the
# whole backlog, which grows with every second of the step.
BEHIND_QUEUE_S = 0.5
BEHIND_RISE_DELAYS = 4
# A step whose writes were answered at under this share of the rate asked for is
# `short`: region A could not take the load (its nodes, or this generator, share two
# cores with everything else), and higher rates would measure the same ceiling.
SHORT_FRACTION = 0.9
# Before the first step: a second of writes, so connections, the gateway choice and the
# first RTT probes are not in the first step's figures.
WARMUP_RATE = 500
WARMUP_S = 1.0
# Both regions' nodes see each other alive: SWIM joins take a few probe rounds, which the
# relays' delay makes longer; a loaded machine longer still.
CONVERGE_TIMEOUT_S = 30.0
STREAM_TIMEOUT_S = 10.0  # region A's streams to B exist and have measured an RTT
# Every node answers keyed commands. A node answers LOADING until it has joined and
# warmed up (cluster/warmup.py); one alone in its region whose seeds are in the other
# region first waits a second for region peers that never come (repair.JOIN_GRACE_S):
# so B's node does, in the default 1-node regions.
SERVING_TIMEOUT_S = 20.0
# INFO regions fields: summed over region A's nodes, or the worst of them.
SUMMED = ("queued", "sent", "acked", "coalesced", "failures", "resyncs", "bytes", "resync")
WORST = ("lag_ms", "lag_p50_ms", "lag_p99_ms", "rtt_ms")

Row: TypeAlias = dict[str, Any]


# -- the relays, in a process of their own -------------------------------------------------


def relay_child(spec: str, delay_ms: float) -> int:
    """Child mode: relays for `spec` ([[group, target], ...]); print each group's routes
    as one JSON line, then relay until our stdin closes (the parent is done or gone)."""
    raise_on_sigterm()
    pairs = [(str(g), str(t)) for g, t in json.loads(spec)]
    with RelaySet() as relays:
        for group, target in pairs:
            relays.add(target, delay_ms, group=group)
        routes = {group: relays.routes(group) for group in sorted({g for g, _ in pairs})}
        print(json.dumps(routes), flush=True)
        sys.stdin.buffer.read()
    return 0


@contextlib.contextmanager
def relay_process(
    pairs: list[tuple[str, str]], delay_ms: float, log_path: Path
) -> Iterator[tuple[int, dict[str, dict[str, str]]]]:
    """The relay child process: yields its PID and routes; always stops it by PID (its
    stdin closed: it exits; else SIGTERM, then SIGKILL)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--delay-ms", str(delay_ms)]
    argv += ["--relay-child", json.dumps(pairs)]
    env = geocache_env()  # src/ on PYTHONPATH, as for the nodes
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # A new session: a terminal Ctrl-C reaches only us, and we stop the child.
        proc = subprocess.Popen(
            argv, stdin=PIPE, stdout=PIPE, stderr=log, env=env, start_new_session=True
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
        line = proc.stdout.readline() if ready else b""
        if not line:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the relay process did not start:\n{tail}")
        yield proc.pid, json.loads(line)
    finally:
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        for stop in (None, proc.terminate, proc.kill):
            if stop is not None:
                stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT_S)
                break


# -- the two regions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Regions:
    """Region A's and region B's node processes, started and converged."""

    a: list[ServerProcess]
    b: list[ServerProcess]

    @property
    def nodes(self) -> list[ServerProcess]:
        return [*self.a, *self.b]


def addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def tls_flags(certs: CertFiles, tls_port: int) -> list[str]:
    """Mutual TLS between the nodes, on `tls_port`; clients may stay plaintext."""
    return [
        *("--tls-port", str(tls_port), "--tls-cluster", "yes", "--tls-auth-clients", "no"),
        *("--tls-cert-file", str(certs.node_cert), "--tls-key-file", str(certs.node_key)),
        *("--tls-ca-cert-file", str(certs.ca_cert)),
    ]


def node_flags(
    node_id: str, region: str, seed: int | None, routes: dict[str, str], coalesce: bool
) -> list[str]:
    """`seed`: the seed's peer port (its TLS port with --tls)."""
    flags = ["--node-id", node_id, "--region", region, "--cluster-secret", SECRET]
    flags += ["--peer-map", ",".join(f"{t}={via}" for t, via in routes.items())]
    flags += ["--seeds", addr(seed)] if seed is not None else []
    return flags + ([] if coalesce else ["--no-geo-coalesce"])


@contextlib.contextmanager
def regions_running(
    args: argparse.Namespace, coalesce: bool, label: str, console: Console
) -> Iterator[Regions]:
    """Relays, then region A's first node (the seed), then every other node in parallel;
    wait until all see each other and A's streams to B are up. Every process started
    here is stopped by its PID on the way out, whatever happened."""
    n, logs = args.nodes_per_region, args.json.parent
    ports = {"A": [free_port() for _ in range(n)], "B": [free_port() for _ in range(n)]}
    # Where peers reach each node: its TLS port with --tls, else its plaintext port.
    peer = {p: free_port() if args.tls else p for r in ports.values() for p in r}
    certs = make_certs(logs / "geo-tls-certs", ["127.0.0.1"]) if args.tls else None
    # Group = the region that dials: A's nodes reach each B node through its own relay.
    pairs = [(src, addr(peer[p])) for src, dst in (("A", "B"), ("B", "A")) for p in ports[dst]]
    with contextlib.ExitStack() as stack:
        relay_pid, routes = stack.enter_context(
            relay_process(pairs, args.delay_ms, logs / f"geo-{label}-relays.log")
        )
        seed = ports["A"][0]
        specs: dict[str, list[ServerSpec]] = {}
        for region, region_ports in ports.items():
            specs[region] = []
            for i, port in enumerate(region_ports):
                name = f"{region.lower()}{i + 1}"
                flags = node_flags(
                    name, region, None if port == seed else peer[seed], routes[region], coalesce
                )
                if certs is not None:
                    flags += tls_flags(certs, peer[port])
                spec = ServerSpec(
                    f"{label}/{name}",
                    node_argv(port, *flags),
                    port,
                    logs / f"geo-{label}-{name}.log",
                )
                specs[region].append(spec)
        # The seed first, then every other node at once; each process is on the stack
        # from its start, so a failure here still stops every node that started.
        a = start_all(stack, specs["A"][:1])
        rest = start_all(stack, [*specs["A"][1:], *specs["B"]])
        regions = Regions([*a, *rest[: n - 1]], rest[n - 1 :])
        pids = ", ".join(f"{p.kind} {p.pid}" for p in regions.nodes)
        console.print(f"[dim]{label}: relays pid {relay_pid}; nodes {pids}; converging[/]")
        run_async(wait_ready(regions))
        yield regions


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, poll_s: float) -> bool:
    """Poll `check` until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_s)
    return True


async def wait_ready(regions: Regions) -> None:
    """Every node sees every node alive, A's streams to B have measured an RTT, and
    every node answers keyed commands (not LOADING)."""
    nodes = regions.nodes

    async def converged() -> bool:
        seen = [await member_states(n.port) for n in nodes]
        return all(list(s.values()).count("alive") == len(nodes) for s in seen)

    async def streams_up() -> bool:
        infos = [await regions_info(n.port) for n in regions.a]
        return all(i.get("rtt_ms", -1) > 0 for i in infos)

    async def serving() -> bool:
        replies = [await one_call(n.port, b"GET", b"bench:probe") for n in nodes]
        return not any(isinstance(r, hiredis.ReplyError) for r in replies)

    for check, timeout_s, what in (
        (converged, CONVERGE_TIMEOUT_S, "the regions did not converge"),
        (streams_up, STREAM_TIMEOUT_S, "region A's streams to B did not come up"),
        (serving, SERVING_TIMEOUT_S, "the nodes did not answer GET (LOADING)"),
    ):
        if not await until(check, timeout_s, 0.1):
            raise RuntimeError(f"{what} in {timeout_s:g} s")


# -- a pipelining RESP client --------------------------------------------------------------


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class Conn:
    """One client connection: commands out in one write, replies parsed by hiredis."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = hiredis.Reader()

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT_S
        )
        return cls(reader, writer)

    async def next_reply(self) -> Any:
        """The next reply (an error reply is a hiredis.ReplyError value, not raised)."""
        while (reply := self.parser.gets()) is False:
            data = await self.reader.read(1 << 16)
            if not data:
                raise ConnectionError("the node closed the connection")
            self.parser.feed(data)
        return reply

    @classmethod
    async def open_peer(cls, port: int) -> Conn:
        """A connection that proved the cluster secret: it may read a node's own store
        (GC.FETCH), which no client command does without routing or read-through."""
        conn = await cls.open(port)
        nonce = auth.new_nonce()
        [hello] = await conn.pipeline(command(b"GC.HELLO", PROBE_ID.encode(), nonce), 1)
        if not isinstance(hello, list) or len(hello) != 3:
            raise RuntimeError(f"GC.HELLO on port {port} answered {hello!r}")
        server_id, server_nonce, server_proof = hello
        t = auth.Transcript(PROBE_ID, server_id.decode(), nonce, server_nonce)
        if not auth.verify(SECRET, auth.SERVER_TO_CLIENT, t, server_proof):
            raise RuntimeError(f"the node on port {port} did not prove the cluster secret")
        proof = auth.proof(SECRET, auth.CLIENT_TO_SERVER, t)
        [ok] = await conn.pipeline(command(b"GC.AUTH", proof), 1)
        if ok != b"OK":
            raise RuntimeError(f"GC.AUTH on port {port} answered {ok!r}")
        return conn

    async def pipeline(self, payload: bytes, count: int) -> list[Any]:
        self.writer.write(payload)
        return [await self.next_reply() for _ in range(count)]

    def close(self) -> None:
        self.writer.close()


async def one_call(port: int, *args: bytes) -> Any:
    conn = await Conn.open(port)
    try:
        [reply] = await asyncio.wait_for(conn.pipeline(command(*args), 1), IO_TIMEOUT_S)
        return reply
    finally:
        conn.close()


def parse_regions(info: str) -> dict[str, dict[str, float]]:
    """INFO regions: `region_<name>:k=v,k=v` lines -> {name: {k: v}}."""
    out: dict[str, dict[str, float]] = {}
    for line in info.splitlines():
        if line.startswith("region_") and ":" in line:
            name, _, fields = line.partition(":")
            pairs = (f.split("=", 1) for f in fields.split(",") if "=" in f)
            out[name.removeprefix("region_")] = {k: float(v) for k, v in pairs}
    return out


async def regions_info(port: int, region: str = "B") -> dict[str, float]:
    """One node's stream to `region` (empty while it has none)."""
    reply = await one_call(port, b"INFO", b"regions")
    text = reply.decode() if isinstance(reply, bytes) else ""
    return parse_regions(text).get(region, {})


async def streams(regions: Regions) -> dict[str, float]:
    """Region A's streams to B as one: counters summed, lags the worst node's."""
    infos = await asyncio.gather(*(regions_info(n.port) for n in regions.a))
    out = {k: sum(i.get(k, 0.0) for i in infos) for k in SUMMED}
    out.update({k: max(i.get(k, 0.0) for i in infos) for k in WORST})
    return out


async def reset_stats(regions: Regions) -> None:
    for node in regions.nodes:
        reply = await one_call(node.port, b"CONFIG", b"RESETSTAT")
        if reply != b"OK":
            raise RuntimeError(f"CONFIG RESETSTAT on {node.kind} answered {reply!r}")


# -- one step: paced writes into A, markers polled in B, A's streams sampled ---------------


@dataclass(slots=True)
class Tally:
    """One writing connection's counts."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    first_error: str = ""


async def count_replies(conn: Conn, tally: Tally) -> None:
    """Count the writes' replies until cancelled (the step ends it)."""
    while True:
        reply = await conn.next_reply()
        if isinstance(reply, hiredis.ReplyError):
            tally.errors += 1
            tally.first_error = tally.first_error or str(reply)
        else:
            tally.ok += 1


@dataclass(slots=True)
class Markers:
    """End-to-end lag: marker keys written to A, found (or not) in B."""

    tag: str
    written: int = 0
    pending: dict[bytes, int] = field(default_factory=dict)  # key -> send time (ns)
    lags_ms: list[float] = field(default_factory=list)
    missing: int = 0

    def due(self, elapsed_s: float) -> bool:
        return elapsed_s >= self.written * MARKER_EVERY_S

    def new(self) -> tuple[bytes, bytes]:
        """The next marker: its key and its SET; its send time is now."""
        key = b"marker:%s:%d" % (self.tag.encode(), self.written)
        self.written += 1
        self.pending[key] = time.time_ns()
        return key, command(b"SET", key, VALUE)

    def found(self, key: bytes, now_ns: int) -> None:
        self.lags_ms.append((now_ns - self.pending.pop(key)) / 1e6)

    def expire(self, now_ns: int) -> None:
        for key, sent_ns in list(self.pending.items()):
            if now_ns - sent_ns > MARKER_TIMEOUT_S * 1e9:
                del self.pending[key]
                self.missing += 1


async def poll_markers(conns: list[Conn], markers: Markers, writing: asyncio.Event) -> None:
    """Ask every node of B for the pending markers every POLL_S, until the writes are
    over and none is pending (each expires after MARKER_TIMEOUT_S, so this ends). A
    marker is in B once any of B's nodes holds it: GC.FETCH reads that node's own store.
    (A GET would do, but for 30 s after a membership change a miss at an owner asks the
    region's other owners first, one pipelined miss after another: a poll of 64 missing
    markers then takes seconds, and the figure would be the poll's, not the stream's.)"""
    while writing.is_set() or markers.pending:
        keys = list(markers.pending)[:MARKERS_PER_POLL]
        if keys:
            payload = b"".join(command(b"GC.FETCH", k) for k in keys)
            polls = [c.pipeline(payload, len(keys)) for c in conns]
            held = await asyncio.wait_for(asyncio.gather(*polls), IO_TIMEOUT_S)
            now_ns = time.time_ns()
            for i, key in enumerate(keys):
                if any(isinstance(r[i], list) and len(r[i]) == 4 for r in held):
                    markers.found(key, now_ns)
            markers.expire(now_ns)
        await asyncio.sleep(POLL_S)


async def sample_streams(
    regions: Regions, samples: list[dict[str, float]], writing: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while writing.is_set():
        sample = await streams(regions)
        sample["t_s"] = loop.time() - start
        samples.append(sample)
        await asyncio.sleep(SAMPLE_S)


KeyOf: TypeAlias = Callable[[int], bytes]  # the i-th write's key


@dataclass(slots=True)
class Writers:
    """The client connections writing into A: `per_node` to each of A's nodes, a key's
    writes to its primary (as an owner-routing client does), round robin among them. A
    write the node must wait for (in-region replication) holds its connection's
    pipeline until answered, so several connections share a node's writes."""

    conns: list[Conn]
    tallies: list[Tally]
    node_ids: list[str]
    per_node: int
    turn: int = 0

    def route(self, key: bytes) -> int:
        node = 0
        if len(self.node_ids) > 1:
            primary = placement.key_owners(key, self.node_ids, 1)[0]
            node = self.node_ids.index(primary)
        self.turn += 1
        return node * self.per_node + self.turn % self.per_node

    def unanswered(self) -> int:
        return sum(t.sent - t.ok - t.errors for t in self.tallies)

    def send(self, commands: list[tuple[bytes, bytes]]) -> None:
        """(key, encoded command) pairs, each on its key's connection, one write each."""
        parts: list[list[bytes]] = [[] for _ in self.conns]
        for key, encoded in commands:
            parts[self.route(key)].append(encoded)
        for conn, tally, chunk in zip(self.conns, self.tallies, parts, strict=True):
            if chunk:
                conn.writer.write(b"".join(chunk))
                tally.sent += len(chunk)


async def write_paced(
    writers: Writers, rate: int, seconds: float, key_of: KeyOf, markers: Markers
) -> float:
    """Send rate * elapsed writes by now, every TICK_S, until `seconds`, and a marker
    every MARKER_EVERY_S; return the time taken."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent, max_ticks = 0, int(seconds / TICK_S) + 1
    for _ in range(max_ticks):  # sleep() only ever oversleeps: time ends the loop first
        elapsed = loop.time() - start
        if elapsed >= seconds:
            break
        due = min(int(rate * elapsed) - sent, MAX_BURST)
        if due <= 0 or writers.unanswered() >= MAX_OUTSTANDING:
            due = 0
        keys = [key_of(i) for i in range(sent, sent + due)]
        commands = [(k, command(b"SET", k, VALUE)) for k in keys]
        if markers.due(elapsed):
            commands.append(markers.new())
        writers.send(commands)
        sent += due
        await asyncio.sleep(TICK_S)
    return loop.time() - start


async def drain(regions: Regions, settle_s: float) -> float:
    """Wait until A's queues are empty and every record sent is acknowledged (after a
    failure the counts never meet: then wait `settle_s` for the batches in flight)."""
    start = time.monotonic()
    state: dict[str, float] = {}

    async def drained() -> bool:
        state.update(await streams(regions))
        return state["queued"] == 0 and (state["acked"] >= state["sent"] or state["failures"] > 0)

    if not await until(drained, DRAIN_TIMEOUT_S, DRAIN_POLL_S):
        raise RuntimeError(f"region A's streams did not drain in {DRAIN_TIMEOUT_S} s: {state}")
    if state["failures"] > 0:
        await asyncio.sleep(settle_s)
    return time.monotonic() - start


async def run_step(
    regions: Regions, rate: int, seconds: float, key_of: KeyOf, tag: str, args: argparse.Namespace
) -> Row:
    """One step: writes at `rate` for `seconds`, then drain, read INFO, RESETSTAT."""
    conns = [await Conn.open(n.port) for n in regions.a for _ in range(args.connections)]
    probes = [await Conn.open_peer(n.port) for n in regions.b]
    ids = [n.kind.rsplit("/", 1)[1] for n in regions.a]
    writers = Writers(conns, [Tally() for _ in conns], ids, args.connections)
    markers, writing = Markers(tag), asyncio.Event()
    samples: list[dict[str, float]] = []
    writing.set()
    pairs = zip(conns, writers.tallies, strict=True)
    tasks = [asyncio.create_task(count_replies(c, t)) for c, t in pairs]
    poller = asyncio.create_task(poll_markers(probes, markers, writing))
    sampler = asyncio.create_task(sample_streams(regions, samples, writing))
    try:
        elapsed_s = await write_paced(writers, rate, seconds, key_of, markers)
        ok_in_time = sum(t.ok for t in writers.tallies)

        async def answered_all() -> bool:
            return writers.unanswered() == 0

        answered = await until(answered_all, REPLY_WAIT_S, 0.01)
        end = await streams(regions)
        writing.clear()
        await sampler
        drain_s = await drain(regions, settle_s=4 * args.delay_ms / 1000)
        await asyncio.wait_for(poller, MARKER_TIMEOUT_S + IO_TIMEOUT_S)
        final = await streams(regions)
    finally:
        for task in (*tasks, poller, sampler):
            task.cancel()
        await asyncio.gather(*tasks, poller, sampler, return_exceptions=True)
        for conn in (*conns, *probes):
            conn.close()
    await reset_stats(regions)
    row = step_row(rate, args.delay_ms, elapsed_s, writers.tallies, markers, samples, end, final)
    # Writes answered by the end of the step: a node that falls behind its clients
    # answers the rest later, which must not count toward the rate it achieved.
    row["achieved_wps"] = round(max(0, ok_in_time - markers.written) / elapsed_s)
    row["short"] = row["achieved_wps"] < SHORT_FRACTION * rate
    row["drain_s"] = round(drain_s, 2)
    row["answered"] = answered
    return row


def percentile(values: list[float], q: float) -> float | None:
    """As the nodes compute theirs (geo.py): the value at index int(q * n) of the sorted."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def lag_rise_ms(samples: list[dict[str, float]]) -> float:
    """Median latest-batch lag of the step's last third minus that of its first third."""
    thirds = len(samples) // 3
    if thirds == 0:
        return 0.0
    first = [s["lag_ms"] for s in samples[:thirds]]
    last = [s["lag_ms"] for s in samples[-thirds:]]
    return statistics.median(last) - statistics.median(first)


def behind_why(
    rate: int, delay_ms: float, end: dict[str, float], final: dict[str, float], rise: float
) -> str:
    """Why the stream fell behind in a step ('' if it kept up): the module docstring."""
    why = []
    if final["resync"] or final["resyncs"] or end["resync"]:
        why.append("resync")
    if end["queued"] > rate * BEHIND_QUEUE_S:
        why.append(f"queue {end['queued']:.0f} > {BEHIND_QUEUE_S:g} s of writes")
    if rise > BEHIND_RISE_DELAYS * delay_ms:
        why.append(f"lag rose {rise:.0f} ms")
    return "; ".join(why)


def step_row(
    rate: int,
    delay_ms: float,
    elapsed_s: float,
    tallies: list[Tally],
    markers: Markers,
    samples: list[dict[str, float]],
    end: dict[str, float],
    final: dict[str, float],
) -> Row:
    writes_ok = sum(t.ok for t in tallies) - markers.written
    rise = lag_rise_ms(samples)
    why = behind_why(rate, delay_ms, end, final, rise)
    return {
        "rate": rate,
        "seconds": round(elapsed_s, 2),
        "writes_ok": writes_ok,
        "errors": sum(t.errors for t in tallies),
        "first_error": next((t.first_error for t in tallies if t.first_error), ""),
        "lag_p50_ms": final["lag_p50_ms"],
        "lag_p99_ms": final["lag_p99_ms"],
        "lag_p99_worst_window_ms": max([s["lag_p99_ms"] for s in samples] + [final["lag_p99_ms"]]),
        "e2e_p50_ms": percentile(markers.lags_ms, 0.5),
        "e2e_p99_ms": percentile(markers.lags_ms, 0.99),
        "e2e_max_ms": max(markers.lags_ms, default=None),
        "markers": markers.written,
        "markers_missing": markers.missing,
        "queued_end": end["queued"],
        "queued_max": max([s["queued"] for s in samples] + [end["queued"]]),
        "lag_rise_ms": rise,
        "rtt_ms": final["rtt_ms"],
        **{k: final[k] for k in ("sent", "acked", "coalesced", "failures", "resyncs", "bytes")},
        "behind": bool(why),
        "behind_why": why,
        "samples": samples,
    }


# -- the two parts -------------------------------------------------------------------------


async def lag_steps(
    regions: Regions, args: argparse.Namespace, console: Console, errors: list[str]
) -> list[Row]:
    await warm_up(regions, "lag", args, errors)
    rows: list[Row] = []
    for rate in args.rates:
        if rows and (rows[-1]["behind"] or rows[-1]["short"]):
            what = "the stream fell behind" if rows[-1]["behind"] else "A fell short of the rate"
            console.print(f"[dim]{rate} writes/s: skipped, {what} already[/]")
            rows.append({"rate": rate, "skipped": True})
            continue
        console.print(f"[dim]lag: {rate} writes/s for {args.seconds:g} s[/]")
        row = await run_step(regions, rate, args.seconds, unique_keys(rate), f"r{rate}", args)
        check_step(f"lag {rate} writes/s", row, errors)
        rows.append(row)
    return rows


def unique_keys(rate: int) -> KeyOf:
    """A new key for every write: nothing to coalesce, every write crosses."""
    return lambda i: b"w:%d:%d" % (rate, i)


async def warm_up(
    regions: Regions, label: str, args: argparse.Namespace, errors: list[str]
) -> None:
    row = await run_step(
        regions, WARMUP_RATE, WARMUP_S, lambda i: b"warm:%d" % i, f"warm-{label}", args
    )
    check_step(f"warm-up ({label})", row, errors)


async def bytes_step(
    regions: Regions, coalesce: bool, args: argparse.Namespace, errors: list[str]
) -> Row:
    rng = random.Random(HOT_SEED)
    order = [rng.randrange(args.hot_keys) for _ in range(int(args.hot_rate * args.seconds) + 1)]
    label = "on" if coalesce else "off"
    row = await run_step(
        regions,
        args.hot_rate,
        args.seconds,
        lambda i: b"hot:%d" % order[i % len(order)],
        f"hot-{label}",
        args,
    )
    check_step(f"bytes, coalescing {label}", row, errors)
    writes = row["writes"] = row["writes_ok"] + row["markers"]  # markers were shipped too
    row["coalescing"] = label
    row["bytes_per_record"] = row["bytes"] / row["acked"] if row["acked"] else None
    row["bytes_per_write"] = row["bytes"] / writes if writes else None
    return row


def check_step(what: str, row: Row, errors: list[str]) -> None:
    """A step that broke (error replies, unanswered writes, lost markers) is an error."""
    if row["errors"]:
        errors.append(f"{what}: {row['errors']} error replies, first: {row['first_error']}")
    if not row["answered"]:
        errors.append(f"{what}: writes still unanswered {REPLY_WAIT_S} s after the last")
    if row["markers_missing"]:
        errors.append(f"{what}: {row['markers_missing']} markers never reached region B")


# -- output ----------------------------------------------------------------------------------


Cell: TypeAlias = Callable[[Row], str]


def num(key: str, spec: str = ",.0f") -> Cell:
    """A table cell: the row's `key` formatted ('-' when absent, as in a skipped step)."""
    return lambda row: fmt(row.get(key), spec)


def achieved_cell(row: Row) -> str:
    return num("achieved_wps")(row) + (" [yellow]short[/]" if row.get("short") else "")


def behind_cell(row: Row) -> str:
    if row.get("skipped"):
        return "skipped"
    return f"[red]yes[/]: {row['behind_why']}" if row["behind"] else "no"


LAG_COLUMNS: list[tuple[str, Cell]] = [
    ("writes/s", num("rate")),
    ("achieved", achieved_cell),
    ("lag p50", num("lag_p50_ms")),
    ("lag p99", num("lag_p99_ms")),
    ("worst p99", num("lag_p99_worst_window_ms")),
    ("e2e p50", num("e2e_p50_ms", ".1f")),
    ("e2e p99", num("e2e_p99_ms", ".1f")),
    ("queue end", num("queued_end")),
    ("queue max", num("queued_max")),
    ("lag rise", num("lag_rise_ms", "+.0f")),
    ("acked", num("acked")),
    ("behind", behind_cell),
]
BYTES_COLUMNS: list[tuple[str, Cell]] = [
    ("coalescing", lambda row: str(row["coalescing"])),
    ("writes", num("writes")),
    ("records acked", num("acked")),
    ("coalesced", num("coalesced")),
    ("bytes", num("bytes")),
    ("B/record", num("bytes_per_record", ".1f")),
    ("B/write", num("bytes_per_write", ".1f")),
    ("lag p50 ms", num("lag_p50_ms")),
    ("lag p99 ms", num("lag_p99_ms")),
    ("behind", behind_cell),
]


def print_rows(title: str, columns: list[tuple[str, Cell]], rows: list[Row], c: Console) -> None:
    table = Table(title=title)
    for i, (name, _) in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 or name == "behind" else "right")
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    c.print(table)


def target_verdict(rows: list[Row], args: argparse.Namespace) -> Row:
    """The issue's target at TARGET_RATE; `met` is None when no such step ran."""
    limit = args.delay_ms + TARGET_SLACK_MS
    row = next((r for r in rows if r["rate"] == TARGET_RATE and not r.get("skipped")), {})
    p99 = row.get("lag_p99_ms")
    return {
        "rate": TARGET_RATE,
        "limit_ms": limit,
        "lag_p99_ms": p99,
        "e2e_p99_ms": row.get("e2e_p99_ms"),
        "met": None if p99 is None else p99 <= limit,
        "over_ms": None if p99 is None else max(0.0, p99 - limit),
    }


def report(found: Row, args: argparse.Namespace, console: Console) -> None:
    """The two tables, the target's verdict and the bytes ratio."""
    title = f"replication lag A -> B, {args.delay_ms:g} ms one way, "
    title += f"{args.nodes_per_region} node(s) per region, {args.seconds:g} s per step\n"
    title += "lag: nodes' INFO (last 4096 writes, worst A node); e2e: markers polled in B; "
    title += "times in ms"
    print_rows(title, LAG_COLUMNS, found["steps"], console)
    target = found["target"]
    head = f"target: p99 lag <= {target['limit_ms']:g} ms at {target['rate']:,} writes/s: "
    if target["met"] is None:
        console.print(head + "not measured (no such step in --rates)")
    else:
        got = f"{target['lag_p99_ms']:.0f} ms (e2e {fmt(target['e2e_p99_ms'], '.1f')} ms) - "
        over = f"[yellow]missed by {target['over_ms']:.0f} ms[/]"
        console.print(head + got + ("[green]met[/]" if target["met"] else over))
    title = f"bytes per replicated write: {args.hot_keys:,} hot keys at {args.hot_rate:,} "
    title += f"writes/s for {args.seconds:g} s (GC.GEO bytes the streams sent)"
    print_rows(title, BYTES_COLUMNS, found["bytes"], console)
    if found["ratio"] is not None:
        saved = 1 - 1 / found["ratio"]
        console.print(
            f"bytes per write, off / on: {found['ratio']:.2f} "
            f"(coalescing sends {saved:.0%} fewer bytes)"
        )


def bytes_ratio(rows: list[Row]) -> float | None:
    """Bytes per write with coalescing off over bytes per write with it on."""
    per_write = {r["coalescing"]: r["bytes_per_write"] for r in rows}
    on, off = per_write.get("on"), per_write.get("off")
    return off / on if on and off else None


# -- the run ---------------------------------------------------------------------------------


def rates(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("comma-separated positive writes/s")
    return values


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a smoke test: 2 rates, 2 s steps")
    p.add_argument("--rates", type=rates, help="writes/s steps (default 500,...,10000)")
    p.add_argument("--seconds", type=float, help=f"per step (default {DEFAULT_SECONDS:g})")
    p.add_argument("--delay-ms", type=float, default=DELAY_MS, help="one way between regions")
    p.add_argument("--nodes-per-region", type=int, default=1)
    p.add_argument("--connections", type=int, default=CONNECTIONS, help="per node of A")
    p.add_argument("--hot-keys", type=int, default=HOT_KEYS, help="keys of the bytes part")
    p.add_argument("--hot-rate", type=int, default=HOT_RATE, help="writes/s of the bytes part")
    p.add_argument("--json", type=Path, help="results (default bench/results/geo.json)")
    p.add_argument("--tls", action="store_true", help="mutual TLS between the nodes")
    p.add_argument("--relay-child", help=argparse.SUPPRESS)  # internal: the relay process
    args = p.parse_args(argv)
    args.rates = args.rates or (QUICK_RATES if args.quick else DEFAULT_RATES)
    args.seconds = args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    args.json = args.json or results_path("geo-tls" if args.tls else "geo", args.quick)
    if min(args.nodes_per_region, args.connections, args.hot_keys, args.hot_rate) < 1:
        p.error("--nodes-per-region, --connections, --hot-keys and --hot-rate are at least 1")
    return args


def reproduce_command() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    argv = shlex.join([str(shown), "bench/geo.py", *sys.argv[1:]])
    return f"cd {shlex.quote(str(REPO))} && {argv}"


def measure(args: argparse.Namespace, console: Console, errors: list[str]) -> Row:
    """Rising rates and the coalescing-on bytes step on one pair of regions, then the
    coalescing-off bytes step on a pair started again with --no-geo-coalesce."""
    found: Row = {}
    with regions_running(args, True, "coalesce", console) as regions:
        found["steps"] = run_async(lag_steps(regions, args, console, errors))
        console.print(f"[dim]bytes: coalescing on, {args.hot_rate} writes/s[/]")
        on = run_async(bytes_step(regions, True, args, errors))
    with regions_running(args, False, "no-coalesce", console) as regions:
        run_async(warm_up(regions, "no-coalesce", args, errors))
        console.print(f"[dim]bytes: coalescing off, {args.hot_rate} writes/s[/]")
        off = run_async(bytes_step(regions, False, args, errors))
    found["bytes"] = [on, off]
    return found


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.relay_child is not None:
        return relay_child(args.relay_child, args.delay_ms)
    console = Console()
    if not console.is_terminal:  # logs and CI: do not squeeze the tables into 80 columns
        console = Console(width=160)
    raise_on_sigterm()
    # Nodes read settings from GEOCACHE_* variables: the caller's shell must not change
    # the nodes under test (the servers inherit this process's environment).
    for name in [n for n in os.environ if n.startswith("GEOCACHE_")]:
        console.print(f"[yellow]ignoring {name} for the nodes started here[/]")
        del os.environ[name]
    started, load_before = time.time(), os.getloadavg()
    errors: list[str] = []
    found = measure(args, console, errors)
    found["target"] = target_verdict(found["steps"], args)
    found["ratio"] = bytes_ratio(found["bytes"])
    load = {"before": load_before, "after": os.getloadavg()}
    report(found, args, console)
    duration_s = round(time.time() - started, 1)
    settings = (
        *("delay_ms", "nodes_per_region", "connections", "seconds", "hot_keys", "hot_rate"),
        "tls",
    )
    out = {
        **cpu_info(),
        "command": reproduce_command(),
        **{k: vars(args)[k] for k in settings},
        "rates": list(args.rates),
        "value_bytes": len(VALUE),
        "lag_source": "INFO regions lag_p50_ms/lag_p99_ms, worst node of region A",
        "duration_s": duration_s,
        "load_average": load,
        "errors": errors,
        "target": found["target"],
        "steps": found["steps"],
        "bytes": found["bytes"],
        "bytes_per_write_ratio_off_on": found["ratio"],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    # Other work on the machine shows up as lag: the load says how busy it was.
    before, after = (" / ".join(f"{x:.1f}" for x in v) for v in load.values())
    console.print(f"load average (1, 5, 15 min) before: {before}; after: {after}")
    console.print(f"took {duration_s} s; results: {args.json}\nreproduce: {out['command']}")
    for err in errors:
        console.print(f"[red]error: {err}[/]")
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (RuntimeError, OSError, TimeoutError) as exc:  # a process, a connection, a wait
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # every process was already stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
