"""Store speed and memory per entry next to cachetools, lru-dict and a real redis-server.

What it measures, in one run, on `--keys` keys (default 1,000,000; `--quick` 20,000) of
16 bytes with 100-byte values:

- ops/s of get, set (overwriting a key that is there) and a 90/10 get/set mix, over a
  shuffled key sequence in which every key comes once, for geocache's `Store`, `Store`
  with a one-hour TTL on every key (as TTLCache has), `LocalCache()` (its default
  serializer, `auto`: bytes stored as they are),
  `cachetools.TTLCache`, `cachetools.LRUCache` and `lru.LRU` (lru-dict, a C extension).
  Every cache is sized to hold all keys, so nothing is evicted. Each contender is built
  and timed in turn, and the whole sequence is repeated `--rounds` times (default 3):
  a burst of outside load then slows one round of every contender rather than all
  rounds of one. The best round counts (noise only ever slows a run down); every
  round is in the JSON. The garbage collector stays on, as in real use.
- bytes per entry, each in a fresh process so nothing left over from another structure
  counts: `tracemalloc` (the bytes Python asked for: keys, values, entries and the
  structure, made one at a time inside the measured region, as a server makes them),
  and the growth of the process's resident memory (RSS: adds the allocator's
  rounding). `Store (TTL)` holds the same keys with a one-hour TTL written with the
  value (one version per entry), `Store (TTL changed)` the same with each TTL set again
  after the write (an EXPIRE: the entry keeps the expiry's own version too); the
  difference between the two is reported as the bytes a TTL change costs. Beside them,
  a redis-server started here on a free port of 127.0.0.1
  (`--save "" --appendonly no`), loaded with the same keys and values through redis-py
  pipelines: the growth of `INFO memory` used_memory per key (what redis asked its
  allocator for, as tracemalloc counts ours) and of used_memory_rss (resident, as our
  RSS row). It is stopped by PID.

How to read it: "÷ TTLCache" and "÷ lru-dict" are ops/s ratios (higher is better for
geocache); memory "÷ redis" is bytes per entry over redis-server's (lower is better).
Targets from issue 19: LocalCache get and set >= 3x TTLCache, Store get and set >= 0.7x
lru-dict; memory per entry <= 1.4x redis-server's (tracemalloc, as the issue asks; RSS
is shown too). A missed target is shown, never fatal. Results go to bench/results/store.json.

    .venv/bin/python bench/store.py [--keys N | --quick] [--rounds R] [--no-redis]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cachetools
import lru
import redis
from rich.console import Console
from rich.table import Table

from _common import REPO, ServerSpec, cpu_info, free_port, raise_on_sigterm, results_path
from geocache import LocalCache, SystemClock
from geocache.store import Store

DEFAULT_KEYS = 1_000_000  # the size: large enough that the tables miss the CPU cache
QUICK_KEYS = 20_000  # --quick: a smoke test, a few seconds (with 1 round)
KEY_BYTES = 16
VALUE_BYTES = 100
SET_SHARE = 0.10  # the mix: 90% gets, 10% sets
TTL_S = 3600  # TTLCache's TTL, and Store's in the "Store (TTL)" row: nothing expires
SEED = 2024  # the same shuffled sequences in every run
PIPELINE = 10_000  # redis-py commands per pipeline round trip when loading redis
# Targets from the issue.
SPEED_VS_TTLCACHE = 3.0
SPEED_VS_LRU_DICT = 0.7
MEMORY_VS_REDIS = 1.4

OPS = ("get", "set", "mix")
# Structures whose bytes per entry are measured, each in a fresh process.
MEMORY_KINDS = ("Store", "Store (TTL)", "Store (TTL changed)", "TTLCache", "lru-dict")


def make_key(i: int) -> bytes:
    return b"k%015d" % i  # 16 bytes, distinct


def make_value(i: int) -> bytes:
    return b"%0100d" % i  # 100 bytes


# -- contenders: build, then one loop per operation ----------------------------------------
#
# Each loop uses its contender's fastest natural idiom: `cache[key]` for the mappings
# (cachetools' `.get` costs a `__contains__` more), bound methods for geocache.

Mix = list[tuple[bytes, bool]]


class Contender:
    name = ""

    def build(self, keys: list[bytes], value: bytes) -> Any:
        raise NotImplementedError

    def get(self, cache: Any, keys: list[bytes]) -> None:
        for key in keys:
            cache[key]

    def set(self, cache: Any, keys: list[bytes], value: bytes) -> None:
        for key in keys:
            cache[key] = value

    def mix(self, cache: Any, ops: Mix, value: bytes) -> None:
        for key, is_set in ops:
            if is_set:
                cache[key] = value
            else:
                cache[key]


class StoreContender(Contender):
    name = "Store"
    ttl = False

    def build(self, keys: list[bytes], value: bytes) -> Any:
        store = Store(SystemClock(), max_keys=len(keys))
        self.set(store, keys, value)
        return store

    def expires_at_ms(self) -> int:
        return time.time_ns() // 1_000_000 + TTL_S * 1000 if self.ttl else 0

    def get(self, cache: Any, keys: list[bytes]) -> None:
        get = cache.get
        for key in keys:
            get(key)

    def set(self, cache: Any, keys: list[bytes], value: bytes) -> None:
        set_, expires_at_ms = cache.set, self.expires_at_ms()
        for key in keys:
            set_(key, value, expires_at_ms)

    def mix(self, cache: Any, ops: Mix, value: bytes) -> None:
        get, set_, expires_at_ms = cache.get, cache.set, self.expires_at_ms()
        for key, is_set in ops:
            if is_set:
                set_(key, value, expires_at_ms)
            else:
                get(key)


class StoreTTLContender(StoreContender):
    name = "Store (TTL)"
    ttl = True


class LocalCacheContender(StoreContender):
    name = "LocalCache"

    def build(self, keys: list[bytes], value: bytes) -> Any:
        cache = LocalCache(max_keys=len(keys))  # the default serializer
        self.set(cache, keys, value)
        return cache

    def set(self, cache: Any, keys: list[bytes], value: bytes) -> None:
        set_ = cache.set
        for key in keys:
            set_(key, value)

    def mix(self, cache: Any, ops: Mix, value: bytes) -> None:
        get, set_ = cache.get, cache.set
        for key, is_set in ops:
            if is_set:
                set_(key, value)
            else:
                get(key)


class TTLCacheContender(Contender):
    name = "TTLCache"

    def build(self, keys: list[bytes], value: bytes) -> Any:
        cache = cachetools.TTLCache(maxsize=len(keys), ttl=TTL_S)
        self.set(cache, keys, value)
        return cache


class LRUCacheContender(Contender):
    name = "LRUCache"

    def build(self, keys: list[bytes], value: bytes) -> Any:
        cache = cachetools.LRUCache(maxsize=len(keys))
        self.set(cache, keys, value)
        return cache


class LruDictContender(Contender):
    name = "lru-dict"

    def build(self, keys: list[bytes], value: bytes) -> Any:
        cache = lru.LRU(len(keys))
        self.set(cache, keys, value)
        return cache


CONTENDERS: list[Contender] = [
    StoreContender(),
    StoreTTLContender(),
    LocalCacheContender(),
    TTLCacheContender(),
    LRUCacheContender(),
    LruDictContender(),
]


# -- speed ---------------------------------------------------------------------------------


def workload(count: int) -> tuple[list[bytes], list[bytes], Mix]:
    """The keys in insertion order, a shuffled sequence of them, and the 90/10 mix."""
    rnd = random.Random(SEED)
    keys = [make_key(i) for i in range(count)]
    order = keys[:]
    rnd.shuffle(order)
    mixed = keys[:]
    rnd.shuffle(mixed)
    return keys, order, [(key, rnd.random() < SET_SHARE) for key in mixed]


def timed(run: Callable[[], None], count: int) -> float:
    """ops/s of one pass of `run` over `count` operations."""
    gc.collect()
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def time_contender(
    contender: Contender, keys: list[bytes], order: list[bytes], mixed: Mix, value: bytes
) -> dict[str, float]:
    """Build one contender's cache, then time get, set and the mix on it."""
    cache = contender.build(keys, value)
    count = len(keys)
    return {
        "get": timed(lambda: contender.get(cache, order), count),
        "set": timed(lambda: contender.set(cache, order, value), count),
        "mix": timed(lambda: contender.mix(cache, mixed, value), count),
    }


def measure_speed(count: int, rounds: int, console: Console) -> dict[str, dict[str, list[float]]]:
    keys, order, mixed = workload(count)
    value = make_value(0)
    samples: dict[str, dict[str, list[float]]] = {
        c.name: {op: [] for op in OPS} for c in CONTENDERS
    }
    for round_no in range(1, rounds + 1):
        for contender in CONTENDERS:
            got = time_contender(contender, keys, order, mixed, value)
            for op in OPS:
                samples[contender.name][op].append(got[op])
            console.print(
                f"round {round_no}/{rounds} {contender.name:>14}: "
                + "  ".join(f"{op} {got[op]:>12,.0f}/s" for op in OPS)
            )
    return samples


# -- memory --------------------------------------------------------------------------------


def fill(kind: str, count: int) -> Any:
    """A structure of `kind` holding `count` fresh keys and values."""
    if kind.startswith("Store"):
        store = Store(SystemClock(), max_keys=count)
        ttl, changed = kind != "Store", kind == "Store (TTL changed)"
        base_ms = time.time_ns() // 1_000_000 + TTL_S * 1000
        for i in range(count):
            key = make_key(i)
            # An expiry int per key, as a server computing now + TTL per request makes.
            expires_at_ms = base_ms + i if ttl else 0
            store.set(key, make_value(i), expires_at_ms)
            if changed:
                store.expire_at(key, expires_at_ms + 1000)
        return store
    mapping: Any
    if kind == "TTLCache":
        mapping = cachetools.TTLCache(maxsize=count, ttl=TTL_S)
    elif kind == "lru-dict":
        mapping = lru.LRU(count)
    else:
        raise ValueError(f"no memory measurement for {kind}")
    for i in range(count):
        mapping[make_key(i)] = make_value(i)
    return mapping


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, count: int, how: str) -> float:
    """Bytes per entry of `kind`, in this (fresh) process: traced or resident."""
    gc.collect()
    if how == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = fill(kind, count)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    else:
        before = resident_bytes()
        kept = fill(kind, count)
        grown = resident_bytes() - before
    assert len(kept) == count
    return grown / count


def memory_in_fresh_process(kind: str, count: int, how: str) -> float:
    argv = [sys.executable, __file__, "--_memory-child", kind, how, "--keys", str(count)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def redis_bytes_per_key(count: int, logs: Path, console: Console) -> tuple[dict[str, float], str]:
    """used_memory and used_memory_rss growth per key of a redis-server loaded with the
    same keys."""
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port)]
    argv += ["--save", "", "--appendonly", "no"]
    with ServerSpec("redis-server", argv, port, logs / "store-redis.log").start() as server:
        console.print(f"redis-server pid {server.pid} on port {port}: loading {count:,} keys")
        client = redis.Redis(host="127.0.0.1", port=port)
        version = str(client.info("server")["redis_version"])
        before = client.info("memory")
        for start in range(0, count, PIPELINE):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + PIPELINE, count)):
                pipe.set(make_key(i), make_value(i))
            pipe.execute()
        assert client.dbsize() == count
        after = client.info("memory")
        client.close()
    grown = {
        how: (int(after[field]) - int(before[field])) / count
        for how, field in (("used_memory", "used_memory"), ("rss", "used_memory_rss"))
    }
    return grown, version


def measure_memory(
    count: int, with_redis: bool, logs: Path, console: Console
) -> dict[str, dict[str, float]]:
    memory: dict[str, dict[str, float]] = {}
    for kind in MEMORY_KINDS:
        memory[kind] = {
            how: memory_in_fresh_process(kind, count, how) for how in ("tracemalloc", "rss")
        }
        console.print(
            f"memory {kind:>9}: {memory[kind]['tracemalloc']:.1f} B/entry traced, "
            f"{memory[kind]['rss']:.1f} B/entry resident"
        )
    if with_redis:
        per_key, version = redis_bytes_per_key(count, logs, console)
        memory["redis-server"] = per_key
        console.print(
            f"memory redis-server {version}: {per_key['used_memory']:.1f} B/key used_memory, "
            f"{per_key['rss']:.1f} B/key resident"
        )
    extra = ttl_change_extra(memory)
    console.print(
        f"a TTL changed after the write costs {extra['tracemalloc']:+.1f} B/entry traced, "
        f"{extra['rss']:+.1f} B/entry resident"
    )
    return memory


def ttl_change_extra(memory: dict[str, dict[str, float]]) -> dict[str, float]:
    """Bytes per entry an expiry written apart from the value adds (traced, resident)."""
    changed, once = memory["Store (TTL changed)"], memory["Store (TTL)"]
    return {how: changed[how] - once[how] for how in ("tracemalloc", "rss")}


# -- report --------------------------------------------------------------------------------


def summarize(
    samples: dict[str, dict[str, list[float]]], memory: dict[str, dict[str, float]]
) -> dict[str, Any]:
    best = {name: {op: max(runs) for op, runs in ops.items()} for name, ops in samples.items()}
    ratios = {
        name: {
            f"{op}_vs_{base_key}": best[name][op] / best[base][op]
            for base, base_key in (("TTLCache", "ttlcache"), ("lru-dict", "lru_dict"))
            for op in OPS
        }
        for name in best
    }
    memory_ratio: dict[str, dict[str, float]] = {}
    if "redis-server" in memory:
        # Traced bytes against what redis asked its allocator for, resident against resident.
        redis = memory["redis-server"]
        base = {"tracemalloc": redis["used_memory"], "rss": redis["rss"]}
        memory_ratio = {
            kind: {how: value / base[how] for how, value in per.items()}
            for kind, per in memory.items()
            if kind != "redis-server"
        }
    store, local = ratios["Store"], ratios["LocalCache"]
    targets = {
        "localcache_get_vs_ttlcache": (local["get_vs_ttlcache"], SPEED_VS_TTLCACHE),
        "localcache_set_vs_ttlcache": (local["set_vs_ttlcache"], SPEED_VS_TTLCACHE),
        "store_get_vs_lru_dict": (store["get_vs_lru_dict"], SPEED_VS_LRU_DICT),
        "store_set_vs_lru_dict": (store["set_vs_lru_dict"], SPEED_VS_LRU_DICT),
    }
    if memory_ratio:
        targets["store_memory_vs_redis"] = (
            memory_ratio["Store"]["tracemalloc"],
            -MEMORY_VS_REDIS,  # negative: at most
        )
    return {
        "ops_per_s": best,
        "ratios": ratios,
        "memory_bytes_per_entry": memory,
        "memory_vs_redis": memory_ratio,
        "ttl_changed_extra_bytes_per_entry": ttl_change_extra(memory),
        "targets": {
            name: {
                "value": value,
                "target": abs(goal),
                "kind": "at most" if goal < 0 else "at least",
                "met": value <= -goal if goal < 0 else value >= goal,
            }
            for name, (value, goal) in targets.items()
        },
    }


def print_tables(summary: dict[str, Any], console: Console) -> None:
    speed = Table(title="ops/s (best round); ratios: higher is better for the row")
    speed.add_column("cache")
    for op in OPS:
        speed.add_column(f"{op}/s", justify="right")
    for op in OPS:
        speed.add_column(f"{op} ÷ TTLCache", justify="right")
    for op in OPS:
        speed.add_column(f"{op} ÷ lru-dict", justify="right")
    for name, ops in summary["ops_per_s"].items():
        ratio = summary["ratios"][name]
        speed.add_row(
            name,
            *(f"{ops[op]:,.0f}" for op in OPS),
            *(f"{ratio[f'{op}_vs_ttlcache']:.2f}x" for op in OPS),
            *(f"{ratio[f'{op}_vs_lru_dict']:.2f}x" for op in OPS),
        )
    console.print(speed)

    memory = Table(title="bytes per entry (16-byte key, 100-byte value); lower is better")
    for column in ("structure", "tracemalloc", "RSS growth", "÷ redis (traced)", "÷ redis (RSS)"):
        memory.add_column(column, justify="left" if column == "structure" else "right")
    ratios = summary["memory_vs_redis"]
    for kind, per in summary["memory_bytes_per_entry"].items():
        if kind == "redis-server":
            traced = f"{per['used_memory']:.1f} (used_memory)"
            memory.add_row(kind, traced, f"{per['rss']:.1f}", "1.00x", "1.00x")
            continue
        shown = ratios.get(kind, {})
        memory.add_row(
            kind,
            f"{per['tracemalloc']:.1f}",
            f"{per['rss']:.1f}",
            f"{shown['tracemalloc']:.2f}x" if shown else "-",
            f"{shown['rss']:.2f}x" if shown else "-",
        )
    console.print(memory)

    targets = Table(title="targets (from the issue)")
    for column in ("target", "value", "goal", "met"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    for name, target in summary["targets"].items():
        goal = f"{'<=' if target['kind'] == 'at most' else '>='} {target['target']}x"
        met = "[green]yes[/]" if target["met"] else "[red]no[/]"
        targets.add_row(name, f"{target['value']:.2f}x", goal, met)
    console.print(targets)


def reproduce_command() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    return f"cd {shlex.quote(str(REPO))} && " + shlex.join(
        [str(shown), "bench/store.py", *sys.argv[1:]]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--keys", type=int, help=f"keys (default {DEFAULT_KEYS:,})")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_KEYS:,} keys: a smoke test")
    p.add_argument("--rounds", type=int, help="interleaved rounds, best taken (default 3)")
    p.add_argument("--no-redis", action="store_true", help="skip the redis-server comparison")
    p.add_argument("--json", type=Path, help="results (default bench/results/store.json)")
    p.add_argument("--_memory-child", nargs=2, metavar=("KIND", "HOW"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.keys = args.keys or (QUICK_KEYS if args.quick else DEFAULT_KEYS)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.json = args.json or results_path("store", args.quick)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args._memory_child:
        print(memory_child(args._memory_child[0], args.keys, args._memory_child[1]))
        return 0
    console = Console()
    if not console.is_terminal:  # logs and CI: do not squeeze the tables into 80 columns
        console = Console(width=160)
    raise_on_sigterm()
    started = time.time()
    console.print(
        f"{args.keys:,} keys of {KEY_BYTES} bytes, {VALUE_BYTES}-byte values, "
        f"{args.rounds} rounds; Python {platform.python_version()}, "
        f"cachetools {cachetools.__version__}"
    )
    samples = measure_speed(args.keys, args.rounds, console)
    memory = measure_memory(args.keys, not args.no_redis, args.json.parent, console)
    summary = summarize(samples, memory)
    print_tables(summary, console)
    duration_s = round(time.time() - started, 1)
    out = {
        **cpu_info(),
        "command": reproduce_command(),
        "python": platform.python_version(),
        "keys": args.keys,
        "key_bytes": KEY_BYTES,
        "value_bytes": VALUE_BYTES,
        "set_share": SET_SHARE,
        "rounds": args.rounds,
        "duration_s": duration_s,
        **summary,
        "samples_ops_per_s": samples,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"took {duration_s} s; results: {args.json}\nreproduce: {out['command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
