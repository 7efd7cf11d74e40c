"""Cluster throughput and latency: a 3-node region beside a single node, and write acks.

What it measures, all on 127.0.0.1 with servers started here on free ports:

1. Forwarding: `redis-benchmark` SET and GET (100-byte values, random keys out of
   100,000; 50 clients, then 50 clients with `-P 16`) against a standalone node (no
   cluster flags) and against ONE node of a 3-node region (replicas=2, write-acks quorum),
   so about two requests in three are forwarded to a key's owner.
   The same loads through `redis-benchmark --cluster`, which reads the region's slot
   map (CLUSTER NODES) and sends each key to its slot's primary.
2. Owner routing: a small asyncio load generator (50 connections' worth of workers, no
   pipelining) that asks `GC.OWNERS` once per key, caches the primary, and sends each
   request straight to it; beside the same generator sending everything to one node of
   the region (forwarding) and to the standalone node; and the same 50 workers through
   redis-py's asyncio `RedisCluster` (it routes by CLUSTER SLOTS). Each run is bounded
   by a request count and a time budget.
3. Write acks: SET through one node of 3-node regions at write-acks one, quorum and all,
   for replicas=2 and replicas=3, with 50 clients and with 1 client (latency alone), beside
   the standalone node.

The machine is shared and noisy (two cores run the servers and the load), so every part
runs in interleaved rounds (single, region, single, region, ...) and each figure is the
median over rounds: a burst of outside load then hits every side rather than one. The
servers and the load generator share the cores, so absolute figures understate what
separate machines would do; the ratios are the point.

The summary's headline row is the owner-routed SET of part 2 (a 3-node region,
replicas=2, write-acks quorum, against one node on the same cores). `--baseline-src
DIR` also starts a second such region from another source tree (`DIR/src`, e.g. a
worktree of main), measured as one more side of part 2 in the same rounds: a before
and after from one run. `--parts` runs some of the three parts only.

How to read it: `ratio` is ops/s over the single node's ops/s (higher is better); `p99 x`
is p99 latency over the single node's p99 (lower is better). Exit status 1 means a run
broke (a server did not start, a timeout, an error reply), not that something was slow.
GEOCACHE_* variables are removed from the environment the nodes start with.

    .venv/bin/python bench/cluster.py [--quick] [--requests N] [--rounds R] [--json PATH]
        [--parts acks,forwarding,owner] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeAlias, TypeVar

from rich.console import Console
from rich.table import Table

from _common import (
    REPO,
    ServerSpec,
    cpu_info,
    free_port,
    raise_on_sigterm,
    results_path,
    start_all,
)
from resp import METRICS, Runs, fmt, medians, parse_csv

DEFAULT_REQUESTS = 50_000  # per redis-benchmark run with 50 clients: ~1-3 s per run here
QUICK_REQUESTS = 5_000  # --quick: a smoke test of the whole pipeline, not a measurement
KEYSPACE = 100_000  # -r: random keys, as bench/resp.py
VALUE_BYTES = 100  # -d: a small cached value, as bench/resp.py
# One client waits a full round trip (and a forward, and a replica ack) per request, so
# it gets a tenth of the requests: its runs take about as long as the 50-client ones.
ONE_CLIENT_SHARE = 10
# Owner-routing generator: 50 workers (as redis-benchmark's 50 clients), 10,000 keys
# whose owners are looked up once; each run stops at --requests or after this long.
GEN_WORKERS = 50
GEN_KEYS = 10_000
GEN_SECONDS = 3.0
GEN_SECONDS_QUICK = 1.0
# A generator run that has not finished this long after its time budget is hung.
GEN_GRACE_S = 15.0
# A region is converged when every node sees every member alive; SWIM joins take a few
# probe rounds (well under a second when healthy), a loaded machine can take longer.
CONVERGE_TIMEOUT_S = 30.0
# A node reads through to its peers on every miss for 30 s after it starts or its region's
# membership changes (WARM_WINDOW_MS in src/geocache/cluster/cluster.py), which halves GET
# throughput; reads are measured in the steady state, after that window and a margin.
WARM_WAIT_S = 32.0
ACKS = ("one", "quorum", "all")
REPLICAS = (2, 3)
# --quick: a smoke run of every part in well under a minute: two ack levels at one
# replica count, and reads measured without waiting out the warm-up window.
QUICK_ACKS = ("one", "quorum")
QUICK_REPLICAS = (2,)
REGION_SIZE = 3
SINGLE = "single node"
OWNER_ROUTED = "region owner-routed"
BASELINE = "owner-routed, baseline"
PARTS = ("acks", "forwarding", "owner")
T = TypeVar("T")


# -- servers ---------------------------------------------------------------------------------


def node_argv(port: int, *extra: str, src: Path | None = None) -> list[str]:
    """A node's command line; `src`: run the geocache package found there instead."""
    serve = ["serve", "--bind", "127.0.0.1", "--port", str(port)]
    if src is None:
        python = [sys.executable, "-m", "geocache"]
    else:  # ahead of the PYTHONPATH the nodes are started with
        run = "import sys; sys.path.insert(0, sys.argv.pop(1)); from geocache.cli.main import main"
        python = [sys.executable, "-c", f"{run}; sys.exit(main())", str(src)]
    return [*python, *serve, "--http-port", "0", "--log-level", "warning", *extra]


def cluster_flags(node_id: str, secret: str, seed_port: int | None, *extra: str) -> list[str]:
    flags = ["--node-id", node_id, "--cluster-secret", secret, *extra]
    return flags + (["--seeds", f"127.0.0.1:{seed_port}"] if seed_port else [])


@dataclass(frozen=True, slots=True)
class Region:
    """A region's node processes (planned, started by `running`); `nodes[0]` is the seed
    and entry node."""

    name: str
    nodes: list[ServerSpec]

    @property
    def entry(self) -> int:
        return self.nodes[0].port


def plan_region(name: str, logs: Path, *extra: str, src: Path | None = None) -> Region:
    ports = [free_port() for _ in range(REGION_SIZE)]
    secret = f"bench-{name}"  # a region per secret: no stray node can join another region
    nodes = [
        ServerSpec(
            f"{name}/n{i + 1}",
            node_argv(
                port,
                *cluster_flags(f"n{i + 1}", secret, ports[0] if i else None, *extra),
                src=src,
            ),
            port,
            logs / f"cluster-{name}-n{i + 1}.log",
        )
        for i, port in enumerate(ports)
    ]
    return Region(name, nodes)


@contextlib.contextmanager
def running(regions: list[Region], console: Console) -> Iterator[None]:
    """Start the regions (seeds first, then the rest in parallel), wait until converged,
    and stop every process we started by its PID on the way out, whatever happened."""
    with contextlib.ExitStack() as stack:
        pid_of: dict[str, int] = {}
        for wave in ([r.nodes[0] for r in regions], [n for r in regions for n in r.nodes[1:]]):
            # Every process is on the stack from its start: a failure or a Ctrl-C here
            # still stops every node that did start.
            pid_of.update((s.kind, s.pid) for s in start_all(stack, wave))
        for region in regions:
            pids = ", ".join(str(pid_of[n.kind]) for n in region.nodes)
            console.print(f"[dim]region {region.name}: pids {pids}; waiting for convergence[/]")
            wait_converged(region)
        yield


def wait_converged(region: Region) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    seen: dict[int, dict[str, str]] = {}
    while time.monotonic() < deadline:
        seen = {n.port: asyncio.run(member_states(n.port)) for n in region.nodes}
        if all(list(s.values()).count("alive") == REGION_SIZE for s in seen.values()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"region {region.name} did not converge in {CONVERGE_TIMEOUT_S} s: {seen}")


# -- a minimal RESP client over asyncio streams ------------------------------------------------


@dataclass(frozen=True, slots=True)
class RespError:
    message: str


Reply: TypeAlias = "bytes | int | RespError | list[Reply] | None"


def encode(args: tuple[bytes, ...]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return RespError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    size = int(rest)
    if size < 0:
        return None
    if kind == b"$":
        return (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        return [await read_reply(reader) for _ in range(size)]
    raise ConnectionError(f"unexpected reply type {line!r}")


@dataclass(slots=True)
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, *args: bytes) -> Reply:
        self.writer.write(encode(args))
        return await read_reply(self.reader)

    async def pipeline(self, commands: list[tuple[bytes, ...]]) -> list[Reply]:
        self.writer.write(b"".join(encode(c) for c in commands))
        return [await read_reply(self.reader) for _ in commands]

    def close(self) -> None:
        self.writer.close()


async def one_call(port: int, *args: bytes) -> Reply:
    conn = await asyncio.wait_for(Conn.open(port), 5.0)
    try:
        return await asyncio.wait_for(conn.call(*args), 5.0)
    finally:
        conn.close()


def as_record(item: Reply) -> dict[bytes, Reply]:
    """One GC.TOPOLOGY member: a RESP2 flat array of field, value, field, value..."""
    assert isinstance(item, list)
    return {k: v for k, v in zip(item[::2], item[1::2], strict=True) if isinstance(k, bytes)}


async def topology(port: int) -> list[dict[bytes, Reply]]:
    reply = await one_call(port, b"GC.TOPOLOGY")
    return [as_record(item) for item in reply] if isinstance(reply, list) else []


async def member_states(port: int) -> dict[str, str]:
    try:
        members = await topology(port)
    except (OSError, EOFError):  # not listening yet, or closed mid-reply (TimeoutError too)
        return {}
    return {text(m[b"id"]): text(m[b"state"]) for m in members}


def text(reply: Reply) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else repr(reply)


# -- the owner-routing load generator ----------------------------------------------------------


@dataclass(slots=True)
class LoadResult:
    issued: int = 0
    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    first_error: str = ""

    def numbers(self) -> list[float]:
        """[ops/s, p50 ms, p99 ms]: one round of `Runs`."""
        lat = sorted(self.latencies_ns) or [0]
        p50, p99 = (lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6 for q in (0.50, 0.99))
        return [self.ops / self.seconds if self.seconds else 0.0, p50, p99]


PortOf: TypeAlias = Callable[[bytes], int]  # where the generator sends a key's request


async def primaries(port: int, keys: list[bytes]) -> dict[bytes, int]:
    """Each key's primary owner's RESP port: GC.OWNERS once per key, GC.TOPOLOGY once."""
    conn = await asyncio.wait_for(Conn.open(port), 5.0)
    try:
        replies = await asyncio.wait_for(conn.pipeline([(b"GC.OWNERS", k) for k in keys]), 30.0)
    finally:
        conn.close()
    port_of = {
        text(m[b"id"]): int(text(m[b"addr"]).rsplit(":", 1)[1]) for m in await topology(port)
    }
    result: dict[bytes, int] = {}
    for key, reply in zip(keys, replies, strict=True):
        if not isinstance(reply, list) or not reply:
            raise RuntimeError(f"GC.OWNERS {key!r} answered {reply!r}")
        result[key] = port_of[text(reply[0])]
    return result


async def worker(
    port_of: PortOf, keys: list[bytes], op: bytes, limit: int, deadline: float, out: LoadResult
) -> None:
    rng = random.Random()
    value = b"v" * VALUE_BYTES
    conns: dict[int, Conn] = {}
    try:
        while out.issued < limit and time.perf_counter() < deadline:
            out.issued += 1  # no await since the check: workers never overshoot the limit
            key = rng.choice(keys)
            port = port_of(key)
            conn = conns.get(port)
            if conn is None:
                conn = conns[port] = await Conn.open(port)
            args = (b"SET", key, value) if op == b"SET" else (b"GET", key)
            start = time.perf_counter_ns()
            reply = await conn.call(*args)
            out.latencies_ns.append(time.perf_counter_ns() - start)
            if isinstance(reply, RespError):
                out.errors += 1
                out.first_error = out.first_error or reply.message
            else:
                out.ops += 1
    finally:
        for conn in conns.values():
            conn.close()


async def generate(
    port_of: PortOf, keys: list[bytes], op: bytes, limit: int, seconds: float
) -> LoadResult:
    """GEN_WORKERS workers, one request in flight each, until `limit` requests or `seconds`."""
    out = LoadResult()
    start = time.perf_counter()
    work = [worker(port_of, keys, op, limit, start + seconds, out) for _ in range(GEN_WORKERS)]
    try:
        await asyncio.wait_for(asyncio.gather(*work), seconds + GEN_GRACE_S)
    except TimeoutError:  # before OSError, of which it is a subclass
        out.errors += 1
        out.first_error = out.first_error or f"hung: not done {GEN_GRACE_S} s after its budget"
    except (OSError, EOFError, ValueError) as exc:  # a connection lost, a garbled reply
        out.errors += 1
        out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"
    out.seconds = time.perf_counter() - start
    return out


def run_async(coro: Coroutine[object, object, T]) -> T:
    """Run on uvloop when it is installed (as the node does), asyncio otherwise."""
    try:
        import uvloop  # optional: the node runs without it too
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# -- measurements ------------------------------------------------------------------------------

Found: TypeAlias = dict[str, list[float]]  # command -> [ops/s, p50 ms, p99 ms] of one run
Measure: TypeAlias = Callable[[], Found]


def redis_benchmark(port: int, flags: str, tests: str, requests: int, timeout_s: float) -> Found:
    argv = [
        *("redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv"),
        *("-n", str(requests), "-r", str(KEYSPACE), "-d", str(VALUE_BYTES)),
        *flags.split(),
        *("-t", tests),
    ]
    # The timeout also covers redis-benchmark retrying forever against a dead server.
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"redis-benchmark timed out after {timeout_s} s") from None
    found = parse_csv(done.stdout)
    if done.returncode != 0 or any(t not in found for t in tests.split(",")):
        tail = (done.stderr.strip() or done.stdout.strip())[-500:]
        raise RuntimeError(f"redis-benchmark exit {done.returncode}: {tail}")
    return found


def load(port_of: PortOf, keys: list[bytes], op: str, args: argparse.Namespace) -> Found:
    result = run_async(generate(port_of, keys, op.encode(), args.requests, args.gen_seconds))
    if result.errors:
        raise RuntimeError(f"{result.errors} errors of {result.issued}: {result.first_error}")
    return {op.lower(): result.numbers()}


Results: TypeAlias = dict[str, dict[str, dict[str, Runs]]]  # row -> command -> side -> runs


Trials: TypeAlias = list[tuple[str, dict[str, Measure]]]  # (row, {side: measure})


def interleave(trials: Trials, rounds: int, console: Console, errors: list[str]) -> Results:
    """Run every trial `rounds` times, sides interleaved within each row and round."""
    results: Results = {}
    for rnd in range(1, rounds + 1):
        for row, sides in trials:
            for side, measure in sides.items():
                console.print(f"[dim]{row}: round {rnd}: {side}[/]")
                try:
                    found = measure()
                except RuntimeError as exc:
                    errors.append(f"{row} round {rnd} {side}: {exc}")
                    console.print(f"[red]  failed: {exc}[/]")
                    continue
                for cmd, numbers in found.items():
                    per_side = results.setdefault(row, {}).setdefault(cmd, {})
                    per_side.setdefault(side, []).append(numbers)
    return results


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def summarize(section: str, results: Results, base: str) -> list[dict[str, object]]:
    """One row per (row, command, side): medians and ratios against the `base` side."""
    rows: list[dict[str, object]] = []
    for row, per_cmd in results.items():
        for cmd, sides in per_cmd.items():
            ref = medians(sides.get(base, []))
            for side, runs in sides.items():
                mid = medians(runs)
                rows.append(
                    {
                        "section": section,
                        "load": row,
                        "command": cmd,
                        "side": side,
                        **mid,
                        "ratio": ratio(mid["rps"], ref["rps"]),
                        "p99_ratio": ratio(mid["p99_ms"], ref["p99_ms"]),
                        "rounds": [dict(zip(METRICS, r, strict=True)) for r in runs],
                    }
                )
    return rows


def print_table(title: str, rows: list[dict[str, object]], console: Console) -> None:
    table = Table(title=f"{title}\nmedian of rounds; ratio = ops/s over the single node's")
    for col in ("load", "cmd", "side"):
        table.add_column(col)
    for col in ("ops/s", "ratio", "p50 ms", "p99 ms", "p99 x"):
        table.add_column(col, justify="right")
    last = ""
    for row in rows:
        group = f"{row['load']} {row['command']}"
        if last and group != last:
            table.add_section()
        last = group
        table.add_row(
            str(row["load"]),
            str(row["command"]).upper(),
            str(row["side"]),
            fmt(row["rps"], ",.0f"),
            fmt(row["ratio"], ".2f"),
            fmt(row["p50_ms"], ".3f"),
            fmt(row["p99_ms"], ".3f"),
            fmt(row["p99_ratio"], ".2f"),
        )
    console.print(table)


# -- the three parts ---------------------------------------------------------------------------


def forwarding_trials(single: int, region: Region, args: argparse.Namespace) -> Trials:
    def bench(port: int, flags: str) -> Measure:
        return partial(redis_benchmark, port, flags, "set,get", args.requests, args.run_timeout_s)

    loads = (("50 clients", "-c 50"), ("50 clients -P 16", "-c 50 -P 16"))
    return [
        (
            name,
            {
                SINGLE: bench(single, flags),
                "region via n1": bench(region.entry, flags),
                "region --cluster": bench(region.entry, f"--cluster {flags}"),
            },
        )
        for name, flags in loads
    ]


def owner_routing_trials(
    single: int, region: Region, args: argparse.Namespace, baseline: Region | None = None
) -> Trials:
    keys = [b"gen:%d" % i for i in range(GEN_KEYS)]
    owner_port = run_async(primaries(region.entry, keys))
    entry = region.entry
    port_of: dict[str, PortOf] = {
        SINGLE: lambda key: single,
        "region via n1": lambda key: entry,
        OWNER_ROUTED: owner_port.__getitem__,
    }
    if baseline is not None:
        port_of[BASELINE] = run_async(primaries(baseline.entry, keys)).__getitem__
    row = f"generator, {GEN_WORKERS} workers"
    # SET first in every round, so each side's GETs find the keys its SETs wrote.
    return [
        (
            row,
            {
                **{side: partial(load, fn, keys, op, args) for side, fn in port_of.items()},
                "region RedisCluster": partial(cluster_client_load, entry, keys, op, args),
            },
        )
        for op in ("SET", "GET")
    ]


async def cluster_client_generate(
    entry: int, keys: list[bytes], op: bytes, limit: int, seconds: float
) -> LoadResult:
    """GEN_WORKERS tasks sharing one redis-py asyncio RedisCluster (slot-map routing)."""
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import RedisError

    out = LoadResult()
    client = RedisCluster(host="127.0.0.1", port=entry, max_connections=GEN_WORKERS * 4)
    value = b"v" * VALUE_BYTES
    start = time.perf_counter()
    deadline = start + seconds

    async def work() -> None:
        rng = random.Random()
        while out.issued < limit and time.perf_counter() < deadline:
            out.issued += 1
            key = rng.choice(keys)
            began = time.perf_counter_ns()
            try:
                await (client.set(key, value) if op == b"SET" else client.get(key))
            except RedisError as exc:
                out.errors += 1
                out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"
                continue
            out.latencies_ns.append(time.perf_counter_ns() - began)
            out.ops += 1

    try:
        await client.initialize()
        await asyncio.wait_for(
            asyncio.gather(*(work() for _ in range(GEN_WORKERS))), seconds + GEN_GRACE_S
        )
    finally:
        await client.aclose()
    out.seconds = time.perf_counter() - start
    return out


def cluster_client_load(entry: int, keys: list[bytes], op: str, args: argparse.Namespace) -> Found:
    result = run_async(
        cluster_client_generate(entry, keys, op.encode(), args.requests, args.gen_seconds)
    )
    if result.errors:
        raise RuntimeError(f"{result.errors} errors of {result.issued}: {result.first_error}")
    return {op.lower(): result.numbers()}


def acks_trials(single: int, regions: list[Region], args: argparse.Namespace) -> Trials:
    def bench(port: int, flags: str, requests: int) -> Measure:
        return partial(redis_benchmark, port, flags, "set", requests, args.run_timeout_s)

    loads = (("50 clients", "-c 50", args.requests), ("1 client", "-c 1", args.one_client))
    trials: Trials = []
    for name, flags, requests in loads:
        sides = {SINGLE: bench(single, flags, requests)}
        for region in regions:
            acks = region.name.rsplit("-", 1)[1]
            sides[f"via n1, acks={acks}"] = bench(region.entry, flags, requests)
        trials.append((name, sides))
    return trials


def reads_agree(region: Region) -> str | None:
    """None if keys written through n1 read back alike through every node, else what differs."""

    async def check() -> str | None:
        keys = [b"check:%d" % i for i in range(30)]
        for key in keys:
            await one_call(region.entry, b"SET", key, key)
        for node in region.nodes:
            for key in keys:
                got = await one_call(node.port, b"GET", key)
                if got != key:
                    return f"GET {key!r} through {node.kind} answered {got!r}"
        return None

    return run_async(check())


# -- the run -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a smoke test: few requests, 1 round")
    p.add_argument("--requests", type=int, help=f"per 50-client run (default {DEFAULT_REQUESTS})")
    p.add_argument("--rounds", type=int, help="interleaved rounds, median taken (default 3)")
    p.add_argument("--json", type=Path, help="results (default bench/results/cluster.json)")
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure owner-routed writes on a region run from DIR/src (before/after)",
    )
    # 120 s: 50,000 requests at a slow 1,000 ops/s take 50 s; past 120 s a run is stuck.
    p.add_argument("--run-timeout-s", type=float, default=120.0, help="per redis-benchmark run")
    args = p.parse_args(argv)
    args.requests = args.requests or (QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.one_client = max(1, args.requests // ONE_CLIENT_SHARE)
    args.gen_seconds = GEN_SECONDS_QUICK if args.quick else GEN_SECONDS
    args.acks = QUICK_ACKS if args.quick else ACKS
    args.replicas = QUICK_REPLICAS if args.quick else REPLICAS
    args.warm_wait_s = 0.0 if args.quick else WARM_WAIT_S
    args.json = args.json or results_path("cluster", args.quick)
    args.parts = set(args.parts.split(","))
    if not args.parts <= set(PARTS):
        p.error(f"--parts takes {', '.join(PARTS)}")
    if args.baseline_src is not None:
        args.baseline_src = (args.baseline_src / "src").resolve()
        if not (args.baseline_src / "geocache").is_dir():
            p.error(f"--baseline-src: no geocache package in {args.baseline_src}")
    args.node_info = {}  # node name -> INFO fields, filled in after each part
    return args


def reproduce_command() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    argv = shlex.join([str(shown), "bench/cluster.py", *sys.argv[1:]])
    return f"cd {shlex.quote(str(REPO))} && {argv}"


Sections: TypeAlias = dict[str, list[dict[str, object]]]


def measure_all(args: argparse.Namespace, console: Console, errors: list[str]) -> Sections:
    """The write-acks parts run first (writes do not read through), while the forwarding
    region's warm-up window passes; then its reads are measured in the steady state."""
    logs = args.json.parent
    sections: Sections = {}
    port = free_port()
    single_spec = ServerSpec(SINGLE, node_argv(port), port, logs / "cluster-single.log")
    with single_spec.start() as single:
        console.print(f"[dim]single node: pid {single.pid}[/]")
        fwd = plan_region("fwd", logs)
        regions = [fwd]
        base = None
        if args.baseline_src is not None and "owner" in args.parts:
            base = plan_region("base", logs, src=args.baseline_src)
            regions.append(base)
        with running(regions, console):
            warm_at = time.monotonic() + args.warm_wait_s
            for replicas in args.replicas if "acks" in args.parts else ():
                name = f"write acks, replicas={replicas}"
                sections[name] = measure_acks(name, port, replicas, args, console, errors)
            wait_s = warm_at - time.monotonic()
            if wait_s > 0:
                console.print(f"[dim]waiting {wait_s:.0f} s for the end of warm-up reads[/]")
                time.sleep(wait_s)
            for region in regions:
                differs = reads_agree(region)
                if differs:
                    errors.append(f"preflight {region.name}: {differs}")
            if "forwarding" in args.parts:
                found = interleave(forwarding_trials(port, fwd, args), args.rounds, console, errors)
                sections["forwarding"] = summarize("forwarding", found, SINGLE)
            if "owner" in args.parts:
                trials = owner_routing_trials(port, fwd, args, base)
                found = interleave(trials, args.rounds, console, errors)
                sections["owner routing"] = summarize("owner routing", found, SINGLE)
            after_phase(regions, args, errors)
    return sections


def measure_acks(
    name: str,
    single: int,
    replicas: int,
    args: argparse.Namespace,
    console: Console,
    errors: list[str],
) -> list[dict[str, object]]:
    logs = args.json.parent
    flags = ("--replicas", str(replicas), "--write-acks")
    regions = [plan_region(f"r{replicas}-{acks}", logs, *flags, acks) for acks in args.acks]
    with running(regions, console):
        found = interleave(acks_trials(single, regions, args), args.rounds, console, errors)
        after_phase(regions, args, errors)
    return summarize(name, found, SINGLE)


# INFO fields kept per node after each part: what forwarding and replication did.
KEPT_INFO = ("cluster_", "total_error_replies", "evicted_keys", "db0")


def after_phase(regions: list[Region], args: argparse.Namespace, errors: list[str]) -> None:
    """Keep each node's cluster counters; a member not alive at the end is an error (its
    region's owners moved during the measurement)."""
    for region in regions:
        for node in region.nodes:
            states = run_async(member_states(node.port))
            if list(states.values()).count("alive") != REGION_SIZE:
                errors.append(f"{node.kind}: members not all alive after the runs: {states}")
            info = run_async(one_call(node.port, b"INFO", b"everything"))
            lines = text(info).splitlines()
            kept = dict(line.split(":", 1) for line in lines if line.startswith(KEPT_INFO))
            args.node_info[node.kind] = kept


COUNTERS = (
    "cluster_forwarded",
    "cluster_replicated",
    "cluster_replica_failures",
    "cluster_hints",
    "cluster_hints_dropped",
    "total_error_replies",
)


def print_counters(node_info: dict[str, dict[str, str]], console: Console) -> None:
    table = Table(title="node counters at the end of each part (INFO)")
    table.add_column("node")
    for col in COUNTERS:
        table.add_column(col.removeprefix("cluster_"), justify="right")
    table.add_column("keys", justify="right")
    for node, info in node_info.items():
        keys = info.get("db0", "keys=0").split(",")[0].removeprefix("keys=")
        table.add_row(node, *(info.get(c, "-") for c in COUNTERS), keys)
    console.print(table)


TITLES = {
    "forwarding": "redis-benchmark -r 100000 -d 100: single node vs ONE node of a 3-node region",
    "owner routing": "asyncio generator: single node vs region through n1 vs owner-routed",
}


def headline(sections: Sections) -> list[dict[str, object]]:
    """The summary: owner-routed SET on a 3-node region (replicas=2, quorum) against one
    node on the same cores, and the baseline region's when one ran."""
    label = {OWNER_ROUTED: "owner-routed", BASELINE: "owner-routed, --baseline-src"}
    return [
        {"measure": f"SET, 3-node region (replicas 2, quorum), {label[str(row['side'])]}", **row}
        for row in sections.get("owner routing", [])
        if row["command"] == "set" and row["side"] in label
    ]


def print_headline(rows: list[dict[str, object]], console: Console) -> None:
    table = Table(title="summary: vs one node on the same cores, median of rounds")
    table.add_column("measure")
    for col in ("ops/s", "single ops/s", "ratio", "p99 x"):
        table.add_column(col, justify="right")
    for row in rows:
        rps, ratio_ = row["rps"], row["ratio"]
        single = rps / ratio_ if isinstance(rps, float) and isinstance(ratio_, float) else None
        table.add_row(
            str(row["measure"]),
            fmt(rps, ",.0f"),
            fmt(single, ",.0f"),
            fmt(ratio_, ".2f"),
            fmt(row["p99_ratio"], ".2f"),
        )
    console.print(table)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # logs and CI: do not squeeze the tables into 80 columns
        console = Console(width=120)
    raise_on_sigterm()
    # Nodes read settings from GEOCACHE_* variables: the caller's shell must not change
    # the nodes under test (the servers inherit this process's environment).
    for name in [n for n in os.environ if n.startswith("GEOCACHE_")]:
        console.print(f"[yellow]ignoring {name} for the nodes started here[/]")
        del os.environ[name]
    started = time.time()
    errors: list[str] = []
    sections = measure_all(args, console, errors)
    for name in sorted(sections, key=lambda n: (n not in TITLES, n)):
        title = TITLES.get(name, f"SET through n1 of a 3-node region, {name}")
        if name.endswith("replicas=2"):  # 2 owners: a quorum (2 // 2 + 1) is all of them
            title += " (quorum = all here)"
        print_table(title, sections[name], console)
    print_counters(args.node_info, console)
    summary = headline(sections)
    print_headline(summary, console)
    duration_s = round(time.time() - started, 1)
    version = subprocess.run(
        ["redis-benchmark", "--version"], capture_output=True, text=True, timeout=10
    )
    out = {
        **cpu_info(),
        "command": reproduce_command(),
        "redis_benchmark": version.stdout.strip(),
        **{
            k: vars(args)[k]
            for k in ("requests", "one_client", "rounds", "gen_seconds", "run_timeout_s")
        },
        "region_size": REGION_SIZE,
        "keyspace": KEYSPACE,
        "value_bytes": VALUE_BYTES,
        "gen_workers": GEN_WORKERS,
        "gen_keys": GEN_KEYS,
        "duration_s": duration_s,
        "errors": errors,
        "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        "summary": [{k: v for k, v in r.items() if k != "rounds"} for r in summary],
        "sections": sections,
        "node_info": args.node_info,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    console.print(
        f"cores: {out['cpu_count']} (usable {out['usable_cpus']}); rounds: {args.rounds}; "
        f"requests per 50-client run: {args.requests}; took {duration_s} s"
    )
    console.print(f"results: {args.json}\nreproduce: {out['command']}")
    for err in errors:
        console.print(f"[red]error: {err}[/]")
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RuntimeError as exc:  # a server did not start or converge; the reason is in exc
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # the servers were already stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
