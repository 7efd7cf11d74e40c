"""The Python client: its overhead beside redis-py, and a failover timeline around a kill.

1. Overhead. One standalone node on 127.0.0.1. The same calls (GET and SET of a 100-byte
   value over 1,000 keys) through geocache's `Client` and redis-py's `Redis`, one caller,
   then through `AsyncClient` and `redis.asyncio.Redis`, one task and 50 concurrent tasks.
   Both sides send bytes unchanged (`serializer="raw"`), so the figure is the client's
   own cost: routing, health bookkeeping and deadlines against redis-py's plain socket
   code. Sides run in interleaved rounds and each figure is the median over rounds.
   `ratio` is geocache ops/s over redis-py ops/s (above 1: geocache is faster).
2. Failover. A 3-node region (replicas=2). One client alternates SET and GET of one key
   as fast as it can; at 1 s the key's primary owner is SIGKILLed; at 3 s it is started
   again at the same port; the run ends 1 s after the client is using it again. Printed
   per 100 ms window: calls, errors, p50 / p99 / max latency, and which nodes served the
   calls (from the client's per-node request counters; a lone 1 at another node is the
   client's periodic GC.TOPOLOGY). A PNG plot is saved beside the
   JSON only if matplotlib is already installed (it is not a dependency).

The machine is shared: servers and load run on the same cores, so absolute figures
understate separate machines; the ratio and the failover shape are the point.

    .venv/bin/python bench/client.py [--quick] [--ops N] [--rounds R] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from rich.console import Console
from rich.table import Table

from _common import (
    REPO,
    ServerProcess,
    ServerSpec,
    cpu_info,
    free_port,
    raise_on_sigterm,
    results_path,
)
from geocache import AsyncClient, Client
from geocache.client.topology import Topology

DEFAULT_OPS = 20_000  # per side and round: about a second of calls here
QUICK_OPS = 2_000
KEYS = 1_000
VALUE = b"v" * 100
TASKS = 50  # concurrent tasks in the async load
SECRET = "bench-client"
IDS = ("n1", "n2", "n3")
KILL_AT_S, RESTART_AT_S = 1.0, 3.0
WINDOW_S = 0.1
AFTER_BACK_S = 1.0
# The client refreshes its map every second here (default 5 s), so the restarted node's
# return shows within the run; the probe that finds it back is the same either way.
REFRESH_S = 1.0
BACK_TIMEOUT_S = 20.0
CONVERGE_TIMEOUT_S = 20.0


def node_argv(port: int, *extra: str) -> list[str]:
    serve = ["-m", "geocache", "serve", "--bind", "127.0.0.1", "--port", str(port)]
    return [sys.executable, *serve, "--http-port", "0", "--log-level", "warning", *extra]


def region_argv(port: int, node_id: str, seed: int | None) -> list[str]:
    flags = ["--node-id", node_id, "--cluster-secret", SECRET]
    return node_argv(port, *flags, *(["--seeds", f"127.0.0.1:{seed}"] if seed else []))


# -- 1. overhead ------------------------------------------------------------------------------

Runner = Callable[[int], float]  # ops -> seconds


def sync_runner(client: Any) -> Runner:
    def run(ops: int) -> float:
        keys = [f"key:{i % KEYS}" for i in range(ops)]
        started = time.perf_counter()
        for i, key in enumerate(keys):
            if i % 2:
                client.get(key)
            else:
                client.set(key, VALUE)
        return time.perf_counter() - started

    return run


def async_runner(make: Callable[[], Any], tasks: int) -> Runner:
    async def main(ops: int) -> float:
        client = make()
        per_task = ops // tasks

        async def work(t: int) -> None:
            for i in range(per_task):
                key = f"key:{(t * per_task + i) % KEYS}"
                if i % 2:
                    await client.get(key)
                else:
                    await client.set(key, VALUE)

        await work(0)  # connect and warm before the clock starts
        started = time.perf_counter()
        await asyncio.gather(*(work(t) for t in range(tasks)))
        elapsed = time.perf_counter() - started
        await (client.close() if isinstance(client, AsyncClient) else client.aclose())
        return elapsed

    return lambda ops: asyncio.run(main(ops))


def overhead(port: int, args: argparse.Namespace, console: Console) -> list[dict[str, object]]:
    seed = f"127.0.0.1:{port}"
    gc_sync = Client([seed], serializer="raw")
    rp_sync = redis.Redis(port=port)
    sides: dict[str, tuple[Runner, Runner]] = {
        "sync, 1 caller": (sync_runner(gc_sync), sync_runner(rp_sync)),
        "async, 1 task": (
            async_runner(lambda: AsyncClient([seed], serializer="raw"), 1),
            async_runner(lambda: aredis.Redis(port=port), 1),
        ),
        f"async, {TASKS} tasks": (
            async_runner(lambda: AsyncClient([seed], serializer="raw"), TASKS),
            async_runner(lambda: aredis.Redis(port=port, max_connections=TASKS), TASKS),
        ),
    }
    rows = []
    try:
        sync_runner(gc_sync)(1000)  # warm both: first connections, topology
        sync_runner(rp_sync)(1000)
        for name, (ours, theirs) in sides.items():
            rates: dict[str, list[float]] = {"geocache": [], "redis-py": []}
            for _ in range(args.rounds):
                rates["geocache"].append(args.ops / ours(args.ops))
                rates["redis-py"].append(args.ops / theirs(args.ops))
            gc_rate = statistics.median(rates["geocache"])
            rp_rate = statistics.median(rates["redis-py"])
            rows.append(
                {
                    "load": name,
                    "geocache_ops_s": round(gc_rate),
                    "redis_py_ops_s": round(rp_rate),
                    "ratio": round(gc_rate / rp_rate, 3),
                    "rounds": {k: [round(r) for r in v] for k, v in rates.items()},
                }
            )
            console.print(f"[dim]{name}: {gc_rate:,.0f} vs {rp_rate:,.0f} ops/s[/]")
    finally:
        gc_sync.close()
        rp_sync.close()
    return rows


def print_overhead(rows: list[dict[str, object]], console: Console) -> None:
    table = Table(title="client overhead: GET+SET, 100-byte values, one node")
    for column in ("load", "geocache ops/s", "redis-py ops/s", "ratio"):
        table.add_column(column, justify="left" if column == "load" else "right")
    for row in rows:
        table.add_row(
            str(row["load"]),
            f"{row['geocache_ops_s']:,}",
            f"{row['redis_py_ops_s']:,}",
            f"{row['ratio']:.2f}",
        )
    console.print(table)


# -- 2. failover ------------------------------------------------------------------------------


@contextlib.contextmanager
def region(logs: Path) -> Iterator[list[ServerProcess]]:
    ports = [free_port() for _ in IDS]
    specs = [
        ServerSpec(
            f"client-{node_id}",
            region_argv(port, node_id, ports[0] if i else None),
            port,
            logs / f"client-{node_id}.log",
        )
        for i, (node_id, port) in enumerate(zip(IDS, ports, strict=True))
    ]
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(spec.start()) for spec in specs]


def wait_converged(nodes: list[ServerProcess]) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        alive = []
        for node in nodes:
            with redis.Redis(port=node.port, socket_timeout=5) as r:
                entries = r.execute_command("GC.TOPOLOGY")
            topology = Topology.from_reply(entries, f"127.0.0.1:{node.port}")
            alive.append(sum(1 for n in topology.nodes if n.state == "alive"))
        if alive == [len(nodes)] * len(nodes):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the region did not converge in {CONVERGE_TIMEOUT_S} s")


def failover(logs: Path, console: Console) -> dict[str, object]:
    with region(logs) as nodes:
        wait_converged(nodes)
        seeds = [f"127.0.0.1:{n.port}" for n in nodes]
        with Client(seeds, topology_refresh_s=REFRESH_S) as client:
            return timeline(client, nodes, logs, console)


def timeline(
    client: Client, nodes: list[ServerProcess], logs: Path, console: Console
) -> dict[str, object]:
    key = "failover-key"
    client.set(key, 0)
    primary = client.owners(key)[0]
    victim = next(i for i, n in enumerate(nodes) if f"127.0.0.1:{n.port}" == primary)
    console.print(f"[dim]key {key!r}: primary {primary} ({IDS[victim]}), killed at 1 s[/]")
    calls: list[tuple[float, float, bool]] = []  # (at_s, latency_s, ok)
    windows: list[dict[str, int]] = []  # requests per node per window
    events: dict[str, float] = {}
    # The restart runs beside the calls (a node takes a while to answer its first PING).
    with ThreadPoolExecutor(max_workers=1) as pool:
        restarted: Future[ServerProcess] | None = None
        start = time.perf_counter()
        next_window, last = WINDOW_S, requests_by_node(client)
        try:
            i = 0
            while (
                "back" not in events or time.perf_counter() - start < events["back"] + AFTER_BACK_S
            ):
                now = time.perf_counter() - start
                if now >= next_window:
                    current = requests_by_node(client)
                    windows.append({a: current[a] - last.get(a, 0) for a in current})
                    last, next_window = current, next_window + WINDOW_S
                    if restarted is not None and "back" not in events and windows[-1].get(primary):
                        events["back"] = now
                if "kill" not in events and now >= KILL_AT_S:
                    os.kill(nodes[victim].pid, signal.SIGKILL)
                    events["kill"] = time.perf_counter() - start
                if restarted is None and now >= RESTART_AT_S:
                    restarted = pool.submit(restart, nodes, victim, logs)
                    events["restart"] = now
                if now > RESTART_AT_S + BACK_TIMEOUT_S:
                    raise RuntimeError("the restarted node was never used again")
                started = time.perf_counter()
                ok = True
                try:
                    client.set(key, i) if i % 2 else client.get(key)
                except Exception:
                    ok = False
                calls.append((started - start, time.perf_counter() - started, ok))
                i += 1
        finally:
            if restarted is not None:
                restarted.result().stop()
    return {"primary": primary, "events": events, "calls": calls, "windows": windows}


def restart(nodes: list[ServerProcess], victim: int, logs: Path) -> ServerProcess:
    port = nodes[victim].port
    seed = nodes[1 if victim == 0 else 0].port
    spec = ServerSpec(
        f"client-{IDS[victim]}-again",
        region_argv(port, IDS[victim], seed),
        port,
        logs / f"client-{IDS[victim]}-again.log",
    )
    return spec.start()


def requests_by_node(client: Client) -> dict[str, int]:
    return {addr: s.requests for addr, s in client.stats().items()}


def summarize_timeline(run: dict[str, Any]) -> list[dict[str, object]]:
    calls, windows = run["calls"], run["windows"]
    rows = []
    for w, served in enumerate(windows):
        lo, hi = w * WINDOW_S, (w + 1) * WINDOW_S
        inside = [c for c in calls if lo <= c[0] < hi]
        latencies = sorted(c[1] for c in inside)
        if not latencies:
            continue
        rows.append(
            {
                "from_s": round(lo, 1),
                "calls": len(inside),
                "errors": sum(1 for c in inside if not c[2]),
                "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
                "max_ms": round(latencies[-1] * 1000, 3),
                "served_by": {a.rsplit(":", 1)[1]: n for a, n in sorted(served.items()) if n},
            }
        )
    return rows


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def after_kill(run: dict[str, Any], seconds: float) -> dict[str, float]:
    kill = run["events"]["kill"]
    latencies = sorted(c[1] for c in run["calls"] if kill <= c[0] < kill + seconds)
    failed = sum(1 for c in run["calls"] if kill <= c[0] < kill + seconds and not c[2])
    return {
        "calls": len(latencies),
        "errors": failed,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "max_ms": round(latencies[-1] * 1000, 3),
    }


def print_timeline(run: dict[str, Any], rows: list[dict[str, object]], console: Console) -> None:
    events = {int(at / WINDOW_S): name for name, at in run["events"].items()}
    table = Table(title=f"failover timeline: SET/GET of one key, primary {run['primary']}")
    for column in ("t (s)", "event", "calls", "errors", "p50 ms", "p99 ms", "max ms", "served by"):
        table.add_column(column, justify="right" if column != "served by" else "left")
    for row in rows:
        start = float(str(row["from_s"]))
        event = events.get(round(start / WINDOW_S), "")
        served = row["served_by"]
        assert isinstance(served, dict)
        table.add_row(
            f"{start:.1f}",
            event,
            str(row["calls"]),
            str(row["errors"]),
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['max_ms']:.3f}",
            " ".join(f":{port}={n}" for port, n in served.items()),
        )
    console.print(table)


def save_plot(run: dict[str, Any], path: Path, console: Console) -> None:
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        console.print("[dim]matplotlib is not installed: no PNG (the table is the record)[/]")
        return
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.scatter([c[0] for c in run["calls"]], [c[1] * 1000 for c in run["calls"]], s=1)
    for name, at in run["events"].items():
        axes.axvline(at, linestyle="--", color="grey")
        axes.annotate(name, (at, axes.get_ylim()[1]), rotation=90, va="top")
    axes.set_yscale("log")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("call latency (ms)")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    console.print(f"plot: {path}")


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="a smoke test: few calls, 1 round")
    p.add_argument("--ops", type=int, help=f"calls per side and round (default {DEFAULT_OPS})")
    p.add_argument("--rounds", type=int, help="interleaved rounds, median taken (default 3)")
    p.add_argument("--json", type=Path, help="results (default bench/results/client.json)")
    args = p.parse_args(argv)
    args.ops = args.ops or (QUICK_OPS if args.quick else DEFAULT_OPS)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.json = args.json or results_path("client", args.quick)
    return args


def reproduce_command() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    argv = shlex.join([str(shown), "bench/client.py", *sys.argv[1:]])
    return f"cd {shlex.quote(str(REPO))} && {argv}"


def main(argv: list[str]) -> int:
    raise_on_sigterm()
    args = parse_args(argv)
    console = Console()
    logs = args.json.parent
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    single = ServerSpec("client-single", node_argv(port), port, logs / "client-single.log")
    with single.start():
        rows = overhead(port, args, console)
    print_overhead(rows, console)
    run = failover(logs, console)
    timeline_rows = summarize_timeline(run)
    print_timeline(run, timeline_rows, console)
    summary = {"after_kill_2s": after_kill(run, 2.0), "events_s": run["events"]}
    console.print(f"calls in the 2 s after the kill: {summary['after_kill_2s']}")
    save_plot(run, args.json.with_suffix(".png"), console)
    result = {
        "reproduce": reproduce_command(),
        "machine": cpu_info(),
        "ops": args.ops,
        "rounds": args.rounds,
        "overhead": rows,
        "failover": {**summary, "windows": timeline_rows},
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
