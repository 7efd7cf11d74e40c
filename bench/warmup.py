"""Warm-up of a whole region restarted empty: how long until it is ready, and what it holds.

Two regions of two nodes each on 127.0.0.1 (replicas=2: every node holds every key, so
each restarted node pulls the whole data set). Region A takes `--keys` SETs (100-byte
values) through pipelines; region B receives them by replication. Then both B nodes are
SIGKILLed and restarted empty at their addresses, and the figure is the time from the
restart until every B node says ready (INFO `cluster_ready:1`), with the keys each holds
at that moment, which must be all of them (exit 1 otherwise). The restart itself (a
Python process starting, about 1 s here) is inside the figure; `ready_after_join_s`
leaves it out (from the moment the node first answered PING).

    .venv/bin/python bench/warmup.py [--quick] [--keys N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import redis

from _common import REPO, cpu_info, raise_on_sigterm, results_path
from support.cluster import cluster_args, poll, start_at
from support.procs import ServerProcess, free_port

KEYS = 100_000
QUICK_KEYS = 5_000
VALUE = b"v" * 100
PIPELINE = 1_000  # SETs per pipeline while filling
# Warm-up's bound, far above what it takes: the figure must be the pull, not the bound.
WARMUP_MAX_S = 120
READY_TIMEOUT_S = 150.0
FILL_TIMEOUT_S = 120.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_KEYS} keys: a smoke run")
    parser.add_argument("--keys", type=int, default=None, help=f"keys (default {KEYS})")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures")
    args = parser.parse_args()
    raise_on_sigterm()
    keys = args.keys or (QUICK_KEYS if args.quick else KEYS)
    with tempfile.TemporaryDirectory(prefix="geocache-warmup-") as tmp:
        result = run(Path(tmp), keys)
    result["cpu"] = cpu_info()
    print(json.dumps(result, indent=2))
    path = args.json or results_path("warmup", args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0 if all(n == keys for n in result["held_at_ready"].values()) else 1


def run(tmp: Path, keys: int) -> dict[str, object]:
    ports = {name: free_port() for name in ("a1", "a2", "b1", "b2")}
    seed = f"127.0.0.1:{ports['a1']}"
    extra = ("--replicas", "2", "--warmup-max-s", str(WARMUP_MAX_S))

    def start(name: str) -> ServerProcess:
        region = "A" if name.startswith("a") else "B"
        node_seed = None if name == "a1" else seed
        return start_at(ports[name], tmp, cluster_args(name, node_seed, "--region", region, *extra))

    nodes: dict[str, ServerProcess] = {}
    try:
        for name in ports:
            nodes[name] = start(name)
        for name in ports:
            poll(lambda n=name: ready(ports[n]), READY_TIMEOUT_S, f"{name} ready")
        fill(ports["a1"], keys)
        for name in ("b1", "b2"):
            poll(lambda n=name: dbsize(ports[n]) >= keys, FILL_TIMEOUT_S, f"{name} filled")
        for name in ("b1", "b2"):
            nodes[name].proc.send_signal(signal.SIGKILL)
            nodes[name].proc.wait(10)
        restarted = time.monotonic()
        answered: dict[str, float] = {}
        for name in ("b1", "b2"):
            nodes[name] = start(name)  # returns once it answers PING
            answered[name] = time.monotonic()
        ready_at: dict[str, float] = {}
        held: dict[str, int] = {}
        deadline = restarted + READY_TIMEOUT_S
        while len(ready_at) < 2 and time.monotonic() < deadline:
            for name in ("b1", "b2"):
                if name not in ready_at and ready(ports[name]):
                    ready_at[name] = time.monotonic()
                    held[name] = dbsize(ports[name])
            time.sleep(0.02)
        if len(ready_at) < 2:
            raise SystemExit(f"region B not ready within {READY_TIMEOUT_S} s")
        return {
            "keys": keys,
            "value_bytes": len(VALUE),
            "ready_s": round(max(ready_at.values()) - restarted, 2),
            "ready_after_join_s": {n: round(ready_at[n] - answered[n], 2) for n in ready_at},
            "held_at_ready": held,
            "warmup": {n: warm_stats(ports[n]) for n in ("b1", "b2")},
        }
    finally:
        for node in nodes.values():
            node.stop()


def fill(port: int, keys: int) -> None:
    with redis.Redis(port=port, socket_timeout=30) as c:
        for start in range(0, keys, PIPELINE):
            pipe = c.pipeline(transaction=False)
            for i in range(start, min(start + PIPELINE, keys)):
                pipe.set(f"warm:{i}", VALUE)
            pipe.execute()


def ready(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=5) as c:
            return bool(c.info("geocache").get("cluster_ready") == 1)
    except redis.RedisError:
        return False


def dbsize(port: int) -> int:
    with redis.Redis(port=port, socket_timeout=5) as c:
        return int(c.dbsize())


def warm_stats(port: int) -> dict[str, int]:
    with redis.Redis(port=port, socket_timeout=5) as c:
        info = c.info("geocache")
    return {
        k.removeprefix("cluster_warmup_"): int(v)
        for k, v in info.items()
        if k.startswith("cluster_warmup_")
    }


if __name__ == "__main__":
    sys.exit(main())
