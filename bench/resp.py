"""RESP throughput and latency of a geocache node next to a real redis-server.

What it measures: the same `redis-benchmark` loads against a redis-server and a geocache
node, both started here on free ports of 127.0.0.1: SET and GET (100-byte values, random
keys out of 100,000) with 50 clients, 50 clients and `-P 16`, and 1 client; then INCR and
MSET with `-P 16`. The machine is shared and noisy, so runs are interleaved (redis,
geocache, redis, geocache, ...) for `--rounds` rounds and each number is the median over
rounds: a burst of outside load then hits both sides rather than one. Nothing is pinned
by default; `--taskset` puts both servers on cpu 0 and redis-benchmark on cpu 1.

How to read it: `ratio` is geocache ops/s over redis ops/s (higher is better); `p99 ratio`
is geocache p99 latency over redis p99 (lower is better). Targets from the issue: ratio
>= 0.8 without pipelining, >= 0.5 with -P 16, p99 ratio <= 1.5; a miss is shown, never
fatal. `--target-cmd 'redis-server --port {port} --save "" --appendonly no'` compares
redis with itself: the spread of those ratios around 1.0 is this machine's noise floor,
and smaller differences mean nothing. Exit status 1 means a run broke (server did not
start, timeout, error reply), not that geocache was slow.

`--tls`: each server also listens on a TLS port (certificates made here: a CA, the
servers' certificate, a client certificate that redis-benchmark presents, since both
require one by default), and every load runs four ways, interleaved: redis and geocache,
plaintext and TLS. The second table is what TLS costs each (TLS ops/s over plaintext
ops/s) and the ratio of ratios: geocache's TLS cost over redis-server's (1.0: TLS costs
geocache what it costs Redis; the issue's target is >= 0.9).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from _common import (
    REPO,
    ServerSpec,
    cpu_info,
    free_port,
    raise_on_sigterm,
    replies_differ,
    results_path,
    start_all,
    taskset_prefix,
)
from geocache.cli.certs import CertFiles, make_certs

DEFAULT_REQUESTS = 100_000  # per command per run: ~1 s at redis speed with 50 clients
QUICK_REQUESTS = 10_000  # --quick: a smoke test of the whole pipeline, not a measurement
KEYSPACE = 100_000  # -r: random keys, so the store grows and hashes like real traffic
VALUE_BYTES = 100  # -d: a small cached value, the common case for a cache
# Targets from the issue: geocache ops/s over redis ops/s, and p99 over redis p99.
RATIO_TARGET_PLAIN = 0.8
RATIO_TARGET_PIPELINED = 0.5
P99_RATIO_TARGET = 1.5

# Checked once before the runs: redis-benchmark fails on an error reply but would count
# a wrong reply as a fast one.
PREFLIGHT = (
    "DEL bp:s bp:n; SET bp:s hi; GET bp:s; INCR bp:n; INCR bp:n; MSET bp:a 1 bp:b 2; GET bp:b"
)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    flags: str  # redis-benchmark flags, split on spaces
    tests: str  # redis-benchmark -t list
    ratio_target: float


SCENARIOS = (
    Scenario("50 clients", "-c 50", "set,get", RATIO_TARGET_PLAIN),
    Scenario("50 clients -P 16", "-c 50 -P 16", "set,get", RATIO_TARGET_PIPELINED),
    Scenario("1 client", "-c 1", "set,get", RATIO_TARGET_PLAIN),
    Scenario("extra 50 clients -P 16", "-c 50 -P 16", "incr,mset", RATIO_TARGET_PIPELINED),
)


TLS_TARGET = 0.9  # ratio of ratios: geocache's TLS cost over redis-server's (the issue)
# Sides: the plaintext pair, and with --tls the TLS pair, compared the same way.
PAIRS = (("redis", "geocache"), ("redis+tls", "geocache+tls"))

METRICS = ("rps", "p50_ms", "p99_ms")
Runs = list[list[float]]  # one [rps, p50_ms, p99_ms] per round, for one side and command


def medians(runs: Runs) -> dict[str, float | None]:
    columns = list(zip(*runs, strict=True)) or [()] * len(METRICS)
    return {m: statistics.median(c) if c else None for m, c in zip(METRICS, columns, strict=True)}


Found = dict[str, list[float]]  # command -> [rps, p50_ms, p99_ms] from one run


def parse_csv(text: str) -> Found:
    """redis-benchmark --csv output to Found; its "MSET (10 keys)" becomes "mset"."""
    rows = csv.DictReader(line for line in text.splitlines() if line.startswith('"'))
    cols = ("rps", "p50_latency_ms", "p99_latency_ms")
    return {row["test"].split()[0].lower(): [float(row[c]) for c in cols] for row in rows}


def run_benchmark(
    port: int, scenario: Scenario, args: argparse.Namespace, tls: list[str] | None = None
) -> Found:
    argv = [
        *taskset_prefix(1 if args.taskset else None),
        *("redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv"),
        *(tls or []),
        *("-n", str(args.requests), "-r", str(KEYSPACE), "-d", str(VALUE_BYTES)),
        *scenario.flags.split(),
        *("-t", scenario.tests),
    ]
    # The timeout also covers redis-benchmark retrying forever against a dead server.
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=args.run_timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"redis-benchmark timed out after {args.run_timeout_s} s") from None
    found = parse_csv(done.stdout)
    wanted = scenario.tests.split(",")
    if done.returncode != 0 or any(cmd not in found for cmd in wanted):
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return found


def measure(
    ports: dict[str, int],
    label: str,
    args: argparse.Namespace,
    console: Console,
    tls: list[str] | None = None,
) -> tuple[dict[str, dict[str, dict[str, Runs]]], list[str]]:
    """Interleaved runs; returns results[scenario][command][side] and a list of errors."""
    results: dict[str, dict[str, dict[str, Runs]]] = {}
    errors: list[str] = []
    for scenario in SCENARIOS:
        per_cmd: dict[str, dict[str, Runs]] = {
            c: {s: [] for s in ports} for c in scenario.tests.split(",")
        }
        results[scenario.name] = per_cmd
        for rnd in range(1, args.rounds + 1):
            for side, port in ports.items():
                who = side.replace("geocache", label)
                console.print(f"[dim]{scenario.name} ({scenario.tests}) round {rnd}: {who}[/]")
                try:
                    found = run_benchmark(port, scenario, args, tls if "+tls" in side else None)
                except RuntimeError as exc:
                    errors.append(f"{scenario.name} round {rnd} {who}: {exc}")
                    console.print(f"[red]  failed: {exc}[/]")
                    continue
                for cmd, numbers in found.items():
                    if cmd in per_cmd:
                        per_cmd[cmd][side].append(numbers)
    return results, errors


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def summarize(
    results: dict[str, dict[str, dict[str, Runs]]], pair: tuple[str, str] = PAIRS[0]
) -> list[dict[str, object]]:
    """One row per scenario and command: medians, ratios, and pass/miss against targets,
    for one pair of sides (the plaintext pair by default, or the TLS pair)."""
    targets = {s.name: s.ratio_target for s in SCENARIOS}
    rows: list[dict[str, object]] = []
    for name, per_cmd in results.items():
        for cmd, sides in per_cmd.items():
            redis, geo = medians(sides[pair[0]]), medians(sides[pair[1]])
            rps_ratio = ratio(geo["rps"], redis["rps"])
            p99_ratio = ratio(geo["p99_ms"], redis["p99_ms"])
            rows.append(
                {
                    "scenario": name,
                    "command": cmd,
                    "redis": redis,
                    "geocache": geo,
                    "tls": "+tls" in pair[0],
                    "rounds": {
                        k: [dict(zip(METRICS, r, strict=True)) for r in v]
                        for k, v in sides.items()
                        if k in pair
                    },
                    "ratio": rps_ratio,
                    "ratio_target": targets[name],
                    "ratio_pass": None if rps_ratio is None else rps_ratio >= targets[name],
                    "p99_ratio": p99_ratio,
                    "p99_ratio_target": P99_RATIO_TARGET,
                    "p99_pass": None if p99_ratio is None else p99_ratio <= P99_RATIO_TARGET,
                }
            )
    return rows


def tls_costs(plain: list[dict[str, object]], tls: list[dict[str, object]]) -> list[Row]:
    """Per scenario and command: what TLS costs each server (TLS ops/s over plaintext
    ops/s) and the ratio of ratios, geocache's cost over redis-server's (>= 0.9 the
    target: TLS may cost geocache no more than a tenth more than it costs Redis)."""
    rows: list[Row] = []
    for p, t in zip(plain, tls, strict=True):
        redis_p, geo_p, redis_t, geo_t = p["redis"], p["geocache"], t["redis"], t["geocache"]
        assert isinstance(redis_p, dict) and isinstance(geo_p, dict)
        assert isinstance(redis_t, dict) and isinstance(geo_t, dict)
        redis_cost, geo_cost = (
            ratio(redis_t["rps"], redis_p["rps"]),
            ratio(geo_t["rps"], geo_p["rps"]),
        )
        both = ratio(geo_cost, redis_cost)
        rows.append(
            {
                "scenario": p["scenario"],
                "command": p["command"],
                "redis_tls_cost": redis_cost,
                "geocache_tls_cost": geo_cost,
                "ratio_of_ratios": both,
                "target": TLS_TARGET,
                "pass": None if both is None else both >= TLS_TARGET,
            }
        )
    return rows


Row = dict[str, object]


def print_tls_table(rows: list[Row], label: str, console: Console) -> None:
    table = Table(title="what TLS costs: TLS ops/s over plaintext ops/s, median of rounds")
    table.add_column("scenario")
    table.add_column("cmd")
    for col in ("redis", label, f"ratio of ratios (>={TLS_TARGET})"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            str(row["scenario"]),
            str(row["command"]).upper(),
            fmt(row["redis_tls_cost"], ".2f"),
            fmt(row["geocache_tls_cost"], ".2f"),
            verdict(row["ratio_of_ratios"], row["pass"]),
        )
    console.print(table)


def fmt(x: object, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def verdict(value: object, ok: object) -> str:
    mark = "" if ok is None else (" [green]pass[/]" if ok else " [yellow]miss[/]")
    return fmt(value, ".2f") + mark


def print_table(rows: list[dict[str, object]], label: str, console: Console) -> None:
    tls = " over TLS" if rows and rows[0].get("tls") else ""
    table = Table(title=f"redis vs {label}{tls}: median of rounds; latency p50/p99 in ms")
    table.add_column("scenario")
    table.add_column("cmd")
    for col in ("redis ops/s", f"{label} ops/s", "ratio", "target", "redis lat", f"{label} lat"):
        table.add_column(col, justify="right")
    table.add_column(f"p99 ratio (<={P99_RATIO_TARGET})", justify="right")
    for row in rows:
        redis, geo = row["redis"], row["geocache"]
        assert isinstance(redis, dict) and isinstance(geo, dict)
        table.add_row(
            str(row["scenario"]),
            str(row["command"]).upper(),
            fmt(redis["rps"], ",.0f"),
            fmt(geo["rps"], ",.0f"),
            verdict(row["ratio"], row["ratio_pass"]),
            f">={row['ratio_target']}",
            f"{fmt(redis['p50_ms'], '.3f')}/{fmt(redis['p99_ms'], '.3f')}",
            f"{fmt(geo['p50_ms'], '.3f')}/{fmt(geo['p99_ms'], '.3f')}",
            verdict(row["p99_ratio"], row["p99_pass"]),
        )
    console.print(table)


def target_argv(args: argparse.Namespace, port: str) -> list[str]:
    """The server under test; `port` is a number, or "{port}" to show the template."""
    if args.target_cmd:
        return shlex.split(args.target_cmd.replace("{port}", port))
    serve = ["-m", "geocache", "serve", "--bind", "127.0.0.1", "--port", port]
    return [sys.executable, *serve, "--http-port", "0"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="10,000 requests, 1 round: a smoke test")
    p.add_argument("--requests", type=int, help=f"per command per run (default {DEFAULT_REQUESTS})")
    p.add_argument("--rounds", type=int, help="interleaved rounds, median taken (default 3)")
    p.add_argument("--json", type=Path, help="results (default bench/results/resp.json)")
    p.add_argument("--target-cmd", help="run this instead of geocache; {port} is replaced")
    p.add_argument("--taskset", action="store_true", help="servers on cpu 0, client on cpu 1")
    p.add_argument(
        "--tls", action="store_true", help="also a TLS port on each server: plaintext and TLS"
    )
    # 300 s: 1 client at a slow 1,000 ops/s needs 200 s for 100,000 SETs and GETs.
    p.add_argument("--run-timeout-s", type=float, default=300.0, help="per redis-benchmark run")
    args = p.parse_args(argv)
    args.requests = args.requests or (QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.json = args.json or results_path("resp-tls" if args.tls else "resp", args.quick)
    if args.tls and args.target_cmd:
        p.error("--tls runs geocache and redis-server; it takes no --target-cmd")
    return args


def reproduce_command() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    argv = shlex.join([str(shown), "bench/resp.py", *sys.argv[1:]])
    return f"cd {shlex.quote(str(REPO))} && {argv}"


def tls_files(args: argparse.Namespace) -> CertFiles:
    """A CA, the servers' certificate and the client's, next to the JSON."""
    return make_certs(args.json.parent / "tls", ["127.0.0.1", "localhost"])


def server_tls(certs: CertFiles, port: int) -> list[str]:
    """The same flags for redis-server and geocache (geocache took Redis's names)."""
    return [
        *("--tls-port", str(port), "--tls-cert-file", str(certs.node_cert)),
        *("--tls-key-file", str(certs.node_key), "--tls-ca-cert-file", str(certs.ca_cert)),
    ]


def client_tls(certs: CertFiles) -> list[str]:
    return [
        *("--tls", "--cacert", str(certs.ca_cert)),
        *("--cert", str(certs.client_cert), "--key", str(certs.client_key)),
    ]


def servers(
    args: argparse.Namespace, label: str, certs: CertFiles | None = None
) -> tuple[ServerSpec, ServerSpec]:
    """redis-server and the server under test, not started yet; logs go next to the JSON.
    With `certs`, each also listens on a TLS port (`tls_ports`)."""
    pin = taskset_prefix(0 if args.taskset else None)
    port, target_port = free_port(), free_port()
    redis_cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port)]
    redis_cmd += ["--save", "", "--appendonly", "no"]
    target_cmd = [*pin, *target_argv(args, str(target_port))]
    if certs is not None:
        args.tls_ports = {"redis+tls": free_port(), "geocache+tls": free_port()}
        redis_cmd += server_tls(certs, args.tls_ports["redis+tls"])
        target_cmd += server_tls(certs, args.tls_ports["geocache+tls"])
    logs = args.json.parent
    return (
        ServerSpec("redis-server", [*pin, *redis_cmd], port, logs / "resp-redis.log"),
        ServerSpec(label, target_cmd, target_port, logs / f"resp-{label}.log"),
    )


def report(
    args: argparse.Namespace, rows: list[dict[str, object]], **extra: object
) -> dict[str, object]:
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, timeout=10
    )
    return {
        **cpu_info(),
        "command": reproduce_command(),
        "target_cmd": shlex.join(target_argv(args, "{port}")).replace("'{port}'", "{port}"),
        "redis_version": version.stdout.strip(),
        **{k: vars(args)[k] for k in ("requests", "rounds", "taskset", "run_timeout_s", "tls")},
        "keyspace": KEYSPACE,
        "value_bytes": VALUE_BYTES,
        **extra,
        "rows": rows,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # logs and CI: do not squeeze the table into 80 columns
        console = Console(width=140)
    raise_on_sigterm()
    label = "target" if args.target_cmd else "geocache"
    if args.taskset and not taskset_prefix(0):
        console.print("[yellow]taskset not found: running unpinned[/]")
    started = time.time()
    certs = tls_files(args) if args.tls else None
    with contextlib.ExitStack() as stack:
        redis, target = start_all(stack, servers(args, label, certs))
        console.print(f"redis pid {redis.pid}, {label} pid {target.pid}: {shlex.join(target.argv)}")
        ports = {"redis": redis.port, "geocache": target.port}
        differs = replies_differ(ports, PREFLIGHT)
        if differs:
            console.print(f"[yellow]warning: {label} replies differ from redis: {differs}[/]")
        if certs is not None:
            ports.update(args.tls_ports)
        tls = client_tls(certs) if certs is not None else None
        results, errors = measure(ports, label, args, console, tls)
    rows = summarize(results)
    print_table(rows, label, console)
    extra: dict[str, object] = {}
    if certs is not None:
        extra["tls_rows"] = tls_rows = summarize(results, PAIRS[1])
        print_table(tls_rows, label, console)
        extra["tls_costs"] = costs = tls_costs(rows, tls_rows)
        print_tls_table(costs, label, console)
    duration_s = round(time.time() - started, 1)
    out = report(args, rows, duration_s=duration_s, replies_differ=differs, errors=errors, **extra)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    console.print(
        f"cores: {out['cpu_count']} (usable {out['usable_cpus']}); pinned: {args.taskset}; "
        f"rounds: {args.rounds}; requests per run: {args.requests}; took {duration_s} s"
    )
    console.print(f"results: {args.json}\nreproduce: {out['command']}")
    for err in errors:
        console.print(f"[red]error: {err}[/]")
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RuntimeError as exc:  # a server did not start; its log tail is in the message
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # the servers were already stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
