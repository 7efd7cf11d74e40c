"""HTTP GET and PUT throughput and p99 on one node, beside RESP GET and SET on that node.

What it measures, on one geocache node started here on free ports of 127.0.0.1 with
KEYS keys of VALUE_BYTES preloaded:
- HTTP GET and PUT of random keys, driven by wrk (`-t1 -c50 --latency`, a Lua script
  picking the key). Without wrk on the machine, an aiohttp client loop drives it
  instead (it says so: a Python client is slower than the server, so its figure is a
  floor, not the server's capacity).
- RESP GET and SET of the same keys and value size via redis-benchmark (`-c 50`).
- The cost of per-command latency metrics on RESP: a second node started with
  GEOCACHE_COMMAND_LATENCY=off, and redis-benchmark on both, interleaved, without and
  with `-P 16` (where per-command overhead shows most). `on/off` is the ratio of
  medians; the target is >= 0.95. Beside ops/s it reads the node's CPU time per
  command from /proc, which other processes on a shared machine disturb far less.
- The timing's own cost in ns per command, in process (the real RespConnection with a
  transport that drops replies; fastest of several samples, so steady under outside
  load), and from it an estimate of each scenario's on/off ratio: the node's CPU per
  command without timing over that plus the timing's cost.

Every number is the median over `--rounds` interleaved rounds, so a burst of outside
load on this shared 2-core machine hits every side. `--taskset` pins the nodes to cpu 0
and the load generators to cpu 1. Targets from the issue: >= 10,000 HTTP GETs/s and
metrics on/off >= 0.95; a miss is reported, never fatal. Every run has a timeout, and
every server started here is stopped by its PID on the way out.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `http` package, and Python puts the
# script's folder first on sys.path: take it off until the real `http` is imported.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _BENCH)]
import http.client  # noqa: E402, F401 - the standard library's, cached in sys.modules

sys.path.append(_BENCH)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from _common import (  # noqa: E402
    REPO,
    ServerProcess,
    ServerSpec,
    cpu_info,
    free_port,
    raise_on_sigterm,
    results_path,
    start_all,
    taskset_prefix,
)

KEYS = 10_000  # distinct keys, all preloaded so every GET is a hit
VALUE_BYTES = 100  # a small cached value, as in bench/resp.py
CONNECTIONS = 50  # concurrent clients for both protocols
HTTP_DURATION_S = 5.0  # per wrk run: long enough for a stable rate, short for CI
RESP_REQUESTS = 100_000  # per redis-benchmark run: ~1-2 s at this node's speed
QUICK_HTTP_DURATION_S = 1.0  # --quick: a smoke run, wrk's shortest
QUICK_RESP_REQUESTS = 5_000
HTTP_GET_TARGET = 10_000  # ops/s, from the issue
METRICS_RATIO_TARGET = 0.95  # RESP ops/s with metrics on over off, from the issue
HTTP_READY_S = 20.0
LATENCY_ENV = "GEOCACHE_COMMAND_LATENCY"
KEY_FORMAT = "key:%012d"  # redis-benchmark's own key format for -r

WRK_SCRIPT = """
math.randomseed(%(seed)d)
local body = %(body)s
request = function()
  local path = string.format("/v1/keys/key:%%012d", math.random(0, %(keys)d - 1))
  return wrk.format("%(method)s", path, nil, body)
end
"""


# -- servers -----------------------------------------------------------------------------


def node_argv(resp_port: int, http_port: int, metrics: bool, pin: list[str]) -> list[str]:
    env = [] if metrics else ["env", f"{LATENCY_ENV}=off"]  # env execs: the PID stays ours
    serve = ["-m", "geocache", "serve", "--bind", "127.0.0.1", "--port", str(resp_port)]
    return [*pin, *env, sys.executable, *serve, "--http-port", str(http_port)]


def new_node(name: str, metrics: bool, pin: list[str], logs: Path) -> tuple[ServerSpec, int]:
    """A node (not started yet) on free ports, and its HTTP port; `metrics=False` turns
    RESP timing off."""
    port, http_port = free_port(), free_port()
    argv = node_argv(port, http_port, metrics, pin)
    return ServerSpec(name, argv, port, logs / f"{name}.log"), http_port


def http_get(port: int, path: str, timeout_s: float = 1.0) -> int:
    """Status of GET `path`, by hand over a socket (no client library in the way)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(64)
    return int(head.split(b" ", 2)[1])


def wait_http(port: int) -> None:
    deadline = time.monotonic() + HTTP_READY_S
    while time.monotonic() < deadline:
        try:
            if http_get(port, "/healthz") == 200:
                return
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"HTTP on port {port} did not answer /healthz")


def preload(resp_port: int) -> None:
    """SET every key once over RESP, pipelined, so GETs always hit."""
    value = b"x" * VALUE_BYTES
    with socket.create_connection(("127.0.0.1", resp_port), timeout=30) as sock:
        batch = []
        for i in range(KEYS):
            key = (KEY_FORMAT % i).encode()
            batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(key), key, len(value), value))  # fmt: skip
        sock.sendall(b"".join(batch))
        expected, got = b"+OK\r\n" * KEYS, b""
        while len(got) < len(expected):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            got += chunk
    if got != expected:
        raise RuntimeError("preload failed: not every SET answered +OK")


# -- load generators -----------------------------------------------------------------------


def parse_duration_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(text: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from `wrk --latency` output; fails on any non-2xx."""
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError("wrk saw errors:\n" + text[-800:])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = parse_duration_ms(re.search(r"\s50%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    p99 = parse_duration_ms(re.search(r"\s99%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def run_wrk(
    port: int, method: str, args: argparse.Namespace, workdir: Path
) -> tuple[float, float, float]:
    script = workdir / f"{method.lower()}.lua"
    body = "nil" if method == "GET" else f'string.rep("v", {VALUE_BYTES})'
    script.write_text(WRK_SCRIPT % {"seed": 7, "body": body, "keys": KEYS, "method": method})
    argv = [
        *taskset_prefix(1 if args.taskset else None),
        *(
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(args.http_duration_s))}s",
            "--latency",
        ),
        *("-s", str(script), f"http://127.0.0.1:{port}"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.http_duration_s + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exit {done.returncode}: {done.stderr[-500:]}")
    return parse_wrk(done.stdout)


async def _aiohttp_load(port: int, method: str, duration_s: float) -> tuple[float, float, float]:
    import random

    import aiohttp

    latencies_ms: list[float] = []
    body = b"v" * VALUE_BYTES if method == "PUT" else None
    rng = random.Random(7)
    deadline = time.perf_counter() + duration_s

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            path = "/v1/keys/" + KEY_FORMAT % rng.randrange(KEYS)
            started = time.perf_counter()
            async with session.request(method, f"http://127.0.0.1:{port}{path}", data=body) as r:
                await r.read()
                if r.status >= 300:
                    raise RuntimeError(f"{method} {path}: HTTP {r.status}")
            latencies_ms.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies_ms, n=100)
    return len(latencies_ms) / elapsed, q[49], q[98]


def run_http(
    port: int, method: str, args: argparse.Namespace, workdir: Path
) -> tuple[float, float, float]:
    if args.generator == "wrk":
        return run_wrk(port, method, args, workdir)
    return asyncio.run(_aiohttp_load(port, method, args.http_duration_s))


def parse_benchmark_csv(text: str) -> dict[str, tuple[float, float, float]]:
    """redis-benchmark --csv to {command: (rps, p50 ms, p99 ms)}."""
    rows: dict[str, tuple[float, float, float]] = {}
    header: list[str] = []
    for line in text.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] == "test":
            header = cells
        elif header and len(cells) == len(header):
            row = dict(zip(header, cells, strict=True))
            rps, p50, p99 = (float(row[k]) for k in ("rps", "p50_latency_ms", "p99_latency_ms"))
            rows[row["test"].split()[0].lower()] = (rps, p50, p99)
    return rows


def run_resp(
    port: int, tests: str, extra: list[str], args: argparse.Namespace
) -> dict[str, tuple[float, float, float]]:
    argv = [
        *taskset_prefix(1 if args.taskset else None),
        *("redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv", "-c", str(CONNECTIONS)),
        *("-n", str(args.resp_requests), "-r", str(KEYS), "-d", str(VALUE_BYTES), "-t", tests),
        *extra,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    rows = parse_benchmark_csv(done.stdout)
    if done.returncode != 0 or any(t not in rows for t in tests.split(",")):
        raise RuntimeError(f"redis-benchmark exit {done.returncode}: {done.stderr[-500:]}")
    return rows


# -- the runs ------------------------------------------------------------------------------

Triple = tuple[float, float, float]
FIELDS = ("rps", "p50_ms", "p99_ms")


def median(runs: list[Triple]) -> dict[str, float | None]:
    if not runs:
        return dict.fromkeys(FIELDS)
    return {k: statistics.median(r[i] for r in runs) for i, k in enumerate(FIELDS)}


def measure_http_and_resp(
    ports: tuple[int, int], args: argparse.Namespace, console: Console, workdir: Path
) -> dict[str, list[Triple]]:
    resp_port, http_port = ports
    runs: dict[str, list[Triple]] = {"HTTP GET": [], "HTTP PUT": [], "RESP GET": [], "RESP SET": []}
    for rnd in range(1, args.rounds + 1):
        for method in ("GET", "PUT"):
            console.print(f"[dim]round {rnd}: HTTP {method} ({args.generator})[/]")
            runs[f"HTTP {method}"].append(run_http(http_port, method, args, workdir))
        console.print(f"[dim]round {rnd}: RESP get,set (redis-benchmark)[/]")
        found = run_resp(resp_port, "set,get", [], args)
        runs["RESP GET"].append(found["get"])
        runs["RESP SET"].append(found["set"])
    return runs


SCENARIOS: tuple[tuple[str, list[str]], ...] = (
    ("50 clients", []),
    ("50 clients -P 16", ["-P", "16"]),
)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_metrics_cost(
    nodes: dict[str, ServerProcess], args: argparse.Namespace, console: Console
) -> tuple[dict[str, dict[str, list[Triple]]], dict[str, dict[str, list[float]]]]:
    """Interleaved runs, one command at a time so the node's CPU time is that command's.

    Returns (scenario|cmd -> side -> (rps, p50, p99) runs, scenario|cmd -> side -> CPU
    microseconds per command). CPU per command is the steadier of the two on a shared
    machine: other processes take wall time from a run, hardly the node's CPU time.
    """
    runs: dict[str, dict[str, list[Triple]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    for rnd in range(1, args.rounds + 1):
        for name, extra in SCENARIOS:
            for cmd in ("set", "get"):
                order = ("on", "off") if rnd % 2 else ("off", "on")
                for side in order:
                    console.print(f"[dim]round {rnd}: metrics {side}, {name}, {cmd}[/]")
                    node = nodes[side]
                    before = cpu_s(node.pid)
                    found = run_resp(node.port, cmd, extra, args)
                    used_us = (cpu_s(node.pid) - before) * 1e6 / args.resp_requests
                    key = f"{name}|{cmd}"
                    runs.setdefault(key, {"on": [], "off": []})[side].append(found[cmd])
                    cpu.setdefault(key, {"on": [], "off": []})[side].append(used_us)
    return runs, cpu


class _NullTransport:
    """Takes replies and drops them: the in-process measurement has no socket."""

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1)


INPROC_BATCH = 500  # commands per data_received, as a deep pipeline delivers them
INPROC_CALLS = 200  # data_received calls per sample
INPROC_SAMPLES = 7  # the fastest sample counts: it is the one least disturbed
QUICK_INPROC_SAMPLES = 1  # --quick: one sample, about a second for the whole table


def inprocess_ns_per_command(command: list[bytes], timed: bool, samples: int) -> float:
    """ns per command through the real RespConnection (reader, dispatch, writer, timing).

    Outside load slows samples down but never speeds them up, so the minimum over
    samples is a steady figure even on a shared machine, unlike wall-clock ops/s.
    """
    import asyncio as aio

    from geocache.config import NodeConfig
    from geocache.server.node import Node as GeoNode
    from geocache.server.resp import RespConnection

    async def run() -> float:
        node = GeoNode(NodeConfig(port=0, http_port=0))
        node.metrics.resp_timed = timed
        for i in range(100):
            node.store.set((KEY_FORMAT % i).encode(), b"x" * VALUE_BYTES)
        conn = RespConnection(node)
        conn.connection_made(_NullTransport())  # type: ignore[arg-type]
        one = b"*%d\r\n" % len(command) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in command)
        batch = one * INPROC_BATCH
        best = float("inf")
        # The timing allocates nothing the garbage collector tracks, so collections cost
        # the same either way; leaving them out keeps their timing noise out too.
        gc.collect()
        gc.disable()
        try:
            for _ in range(samples):
                started = time.perf_counter_ns()
                for _ in range(INPROC_CALLS):
                    conn.data_received(batch)
                elapsed = time.perf_counter_ns() - started
                best = min(best, elapsed / (INPROC_CALLS * INPROC_BATCH))
        finally:
            gc.enable()
        return best

    return aio.run(run())


def measure_inprocess(samples: int) -> list[dict[str, object]]:
    key, value = (KEY_FORMAT % 7).encode(), b"x" * VALUE_BYTES
    rows: list[dict[str, object]] = []
    for name, command in (("get", [b"GET", key]), ("set", [b"SET", key, value])):
        found: dict[bool, list[float]] = {True: [], False: []}
        for timed in (True, False, False, True, True, False):  # interleaved
            found[timed].append(inprocess_ns_per_command(command, timed, samples))
        on, off = min(found[True]), min(found[False])
        rows.append({"command": name, "on_ns": on, "off_ns": off, "timing_ns": on - off})
    return rows


def summarize_cost(
    cost: dict[str, dict[str, list[Triple]]], cpu: dict[str, dict[str, list[float]]]
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for key, sides in cost.items():
        scenario, cmd = key.split("|")
        on, off = median(sides["on"]), median(sides["off"])
        ratio = on["rps"] / off["rps"] if on["rps"] and off["rps"] else None
        cpu_on, cpu_off = (statistics.median(cpu[key][side]) for side in ("on", "off"))
        rounds = {side: [dict(zip(FIELDS, t, strict=True)) for t in r] for side, r in sides.items()}
        rows.append(
            {"scenario": scenario, "command": cmd, "on": on, "off": off, "ratio": ratio,
             "cpu_us_per_op": {"on": cpu_on, "off": cpu_off},
             "cpu_ratio": cpu_off / cpu_on if cpu_on else None,
             "rounds": rounds, "cpu_rounds": cpu[key]}
        )  # fmt: skip
    return rows


def verdict(ratio: float | None) -> str:
    """A ratio of metrics-off cost to metrics-on, marked against the 0.95 target."""
    if ratio is None:
        return "-"
    mark = "[green]pass[/]" if ratio >= METRICS_RATIO_TARGET else "[yellow]miss[/]"
    return f"{ratio:.3f} {mark}"


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_tables(report: dict[str, object], console: Console) -> None:
    table = Table(
        title=f"one node, {CONNECTIONS} connections, {VALUE_BYTES}-byte values: median of rounds"
    )
    for col in ("path", "ops/s", "p50 ms", "p99 ms", "target"):
        table.add_column(col, justify="left" if col == "path" else "right")
    rows = report["throughput"]
    assert isinstance(rows, dict)
    for path, numbers in rows.items():
        target = ""
        if path == "HTTP GET":
            ok = numbers["rps"] is not None and numbers["rps"] >= HTTP_GET_TARGET
            target = f">={HTTP_GET_TARGET:,} " + ("[green]pass[/]" if ok else "[yellow]miss[/]")
        table.add_row(
            path,
            fmt(numbers["rps"], ",.0f"),
            fmt(numbers["p50_ms"], ".3f"),
            fmt(numbers["p99_ms"], ".3f"),
            target,
        )
    console.print(table)
    cost = report["metrics_cost"]
    assert isinstance(cost, list)
    table = Table(title="RESP with per-command latency metrics on vs off (redis-benchmark)")
    columns = ("scenario", "cmd", "on ops/s", "off ops/s", "on/off ops", "CPU us/op on/off", "CPU")
    for col in columns:
        table.add_column(col, justify="left" if col in ("scenario", "cmd") else "right")
    for row in cost:
        cpu = row["cpu_us_per_op"]
        table.add_row(
            row["scenario"],
            row["command"].upper(),
            fmt(row["on"]["rps"], ",.0f"),
            fmt(row["off"]["rps"], ",.0f"),
            verdict(row["ratio"]),
            f"{fmt(cpu['on'], '.2f')}/{fmt(cpu['off'], '.2f')}",
            verdict(row["cpu_ratio"]),
        )
    console.print(table)


def print_inprocess(
    rows: list[dict[str, object]], cost: list[dict[str, object]], console: Console
) -> None:
    """The timing's own cost per command, and what it costs each scenario's throughput.

    The throughput estimate is the node's measured CPU per command without timing over
    that plus the timing's cost: what ops/s would be if the node's CPU were the limit.
    """
    table = Table(title="per-command latency timing, in process (min of samples)")
    for col in ("cmd", "on ns/cmd", "off ns/cmd", "timing ns", "scenario", "est. on/off"):
        table.add_column(col, justify="left" if col in ("cmd", "scenario") else "right")
    for row in rows:
        timing_us = float(row["timing_ns"]) / 1000  # type: ignore[arg-type]
        for scenario in cost:
            if scenario["command"] != row["command"]:
                continue
            cpu = scenario["cpu_us_per_op"]
            assert isinstance(cpu, dict)
            estimate = cpu["off"] / (cpu["off"] + timing_us) if cpu["off"] else None
            scenario["estimated_ratio"] = estimate
            table.add_row(
                str(row["command"]).upper(),
                f"{row['on_ns']:.0f}",
                f"{row['off_ns']:.0f}",
                f"{row['timing_ns']:.0f}",
                str(scenario["scenario"]),
                verdict(estimate),
            )
    console.print(table)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short runs, 1 round: a smoke test")
    p.add_argument("--rounds", type=int, help="interleaved rounds, median taken (default 3)")
    p.add_argument("--http-duration-s", type=float, help=f"per wrk run (default {HTTP_DURATION_S})")
    p.add_argument(
        "--resp-requests", type=int, help=f"per redis-benchmark run (default {RESP_REQUESTS})"
    )
    p.add_argument(
        "--generator", choices=("wrk", "aiohttp"), help="HTTP load (default: wrk if installed)"
    )
    p.add_argument("--skip-metrics-cost", action="store_true", help="only the throughput table")
    p.add_argument(
        "--taskset", action="store_true", help="nodes on cpu 0, load generators on cpu 1"
    )
    p.add_argument("--json", type=Path, help="results (default bench/results/http.json)")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.http_duration_s = args.http_duration_s or (
        QUICK_HTTP_DURATION_S if args.quick else HTTP_DURATION_S
    )
    args.resp_requests = args.resp_requests or (
        QUICK_RESP_REQUESTS if args.quick else RESP_REQUESTS
    )
    args.generator = args.generator or ("wrk" if shutil.which("wrk") else "aiohttp")
    args.json = args.json or results_path("http", args.quick)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    raise_on_sigterm()
    console = Console()
    if shutil.which("redis-benchmark") is None:
        console.print("[red]redis-benchmark is missing: scripts/setup.sh installs redis-tools[/]")
        return 2
    if args.generator == "aiohttp":
        console.print(
            "[yellow]wrk not found (apt-get install wrk): HTTP load from an aiohttp loop[/]"
        )
    pin = taskset_prefix(0 if args.taskset else None)
    logs = args.json.parent
    started = time.time()
    errors: list[str] = []
    throughput: dict[str, dict[str, float | None]] = {}
    cost_rows: list[dict[str, object]] = []
    inprocess: list[dict[str, object]] = []
    spec, http_port = new_node("http-node", True, pin, logs)
    with tempfile.TemporaryDirectory() as tmp, spec.start() as node:
        wait_http(http_port)
        preload(node.port)
        console.print(f"node pid {node.pid}: {shlex.join(node.argv)}")
        try:
            runs = measure_http_and_resp((node.port, http_port), args, console, Path(tmp))
            throughput = {path: median(r) for path, r in runs.items()}
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            errors.append(f"throughput: {exc}")
    if not args.skip_metrics_cost:
        # Two fresh nodes with the same history, so only the switch differs.
        (on_spec, _), (off_spec, _) = (
            new_node(f"resp-{side}", side == "on", pin, logs) for side in ("on", "off")
        )
        with contextlib.ExitStack() as stack:
            on, off = start_all(stack, [on_spec, off_spec])
            preload(on.port)
            preload(off.port)
            console.print(f"metrics-on node pid {on.pid}, metrics-off node pid {off.pid}")
            try:
                cost, cpu = measure_metrics_cost({"on": on, "off": off}, args, console)
                cost_rows = summarize_cost(cost, cpu)
                inprocess = measure_inprocess(
                    QUICK_INPROC_SAMPLES if args.quick else INPROC_SAMPLES
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(f"metrics cost: {exc}")
    report: dict[str, object] = {
        "started_unix_s": started,
        "duration_s": round(time.time() - started, 1),
        **cpu_info(),
        "command": "cd "
        + shlex.quote(str(REPO))
        + " && "
        + shlex.join([os.path.relpath(sys.executable, REPO), "bench/http.py", *argv]),
        "generator": args.generator,
        "rounds": args.rounds,
        "http_duration_s": args.http_duration_s,
        "resp_requests": args.resp_requests,
        "connections": CONNECTIONS,
        "keys": KEYS,
        "value_bytes": VALUE_BYTES,
        "taskset": bool(pin),
        "throughput": throughput,
        "metrics_cost": cost_rows,
        "inprocess_timing_cost": inprocess,
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report, console)
    if inprocess:
        print_inprocess(inprocess, cost_rows, console)
        args.json.write_text(json.dumps(report, indent=2) + "\n")  # with the estimates
    console.print(f"cores: {report['cpu_count']}; pinned: {bool(pin)}; rounds: {args.rounds}")
    console.print(f"results: {args.json}")
    console.print(f"reproduce: {report['command']}")
    for err in errors:
        console.print(f"[red]error: {err}[/]")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
