"""The RESP command loop in one process, no sockets: CPU nanoseconds per command.

Feeds `RespConnection.data_received` pipelines of 16 commands (as `redis-benchmark -P
16` sends them) through a transport that drops the replies: SET and GET of random keys
out of 100,000 with 100-byte values (the keys loaded first, as redis-benchmark's SET
run does before its GET run), INCR of random counters, and MSET of 10 such keys. What
it leaves out is the network: the event loop, reads and writes, which `bench/resp.py`
measures with everything else. A figure is the best of `--rounds` rounds (the least
disturbed by other work on the shared machine).

`--baseline-src DIR` also runs the same workload from another checkout (`DIR/src`, its
compiled modules built there), in alternating rounds in its own process, and quotes each
command's ns against it: a before and after from one run. Results go to
bench/results/loop.json.

    .venv/bin/python bench/loop.py [--quick] [--rounds R] [--baseline-src DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's `http` (which geocache's imports
# need) while this script's folder is first on sys.path.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _BENCH)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

PIPELINE = 16
KEYS = 100_000
VALUE = b"x" * 100
MSET_KEYS = 10
COMMANDS = ("SET", "GET", "INCR", "MSET")
SEED = 1


def encode(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out += [b"$%d\r\n" % len(arg), arg, b"\r\n"]
    return b"".join(out)


def key(rnd: random.Random) -> bytes:
    return b"key:%012d" % rnd.randrange(KEYS)


MAKERS: dict[str, Callable[[random.Random], bytes]] = {
    "SET": lambda rnd: encode(b"SET", key(rnd), VALUE),
    "GET": lambda rnd: encode(b"GET", key(rnd)),
    "INCR": lambda rnd: encode(b"INCR", b"counter:%012d" % rnd.randrange(KEYS)),
    "MSET": lambda rnd: encode(b"MSET", *[x for _ in range(MSET_KEYS) for x in (key(rnd), VALUE)]),
}


class NullTransport:
    """Enough of asyncio.Transport for RespConnection; replies are dropped."""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1)

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def measure(batches: int, rounds: int) -> dict[str, float]:
    """ns per command, best of `rounds`, for each of COMMANDS, in this process's geocache."""
    from geocache.config import NodeConfig
    from geocache.server.node import Node
    from geocache.server.resp import RespConnection

    node = Node(NodeConfig(http_port=0, port=0))
    conn = RespConnection(node)
    conn.connection_made(NullTransport())  # type: ignore[arg-type]
    for i in range(KEYS):
        conn.data_received(encode(b"SET", b"key:%012d" % i, VALUE))
    gc.collect()
    gc.freeze()
    rnd = random.Random(SEED)
    best: dict[str, float] = {}
    for name in COMMANDS:
        data = [b"".join(MAKERS[name](rnd) for _ in range(PIPELINE)) for _ in range(batches)]
        for _ in range(rounds):
            started = time.perf_counter_ns()
            for batch in data:
                conn.data_received(batch)
            ns = (time.perf_counter_ns() - started) / (batches * PIPELINE)
            best[name] = min(best.get(name, ns), ns)
    return best


def run_tree(src: Path | None, batches: int, rounds: int) -> dict[str, object]:
    """One measurement in a fresh process, of this checkout or of `src`."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(batches), str(rounds)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def child(batches: int, rounds: int) -> None:
    from geocache import compiled

    ns = asyncio.run(measure(batches, rounds))
    print(json.dumps({"compiled": compiled.compiled(), "ns": ns}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of processes")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny counts")
    parser.add_argument("--baseline-src", type=Path, help="another checkout to compare with")
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    args = parser.parse_args()
    batches, inner = (50, 2) if args.quick else (1000, 5)
    rounds = 1 if args.quick else args.rounds
    sides: dict[str, Path | None] = {"this": None}
    if args.baseline_src is not None:
        base = (args.baseline_src / "src").resolve()
        if not (base / "geocache").is_dir():
            parser.error(f"--baseline-src: no geocache package in {base}")
        sides["baseline"] = base
    best: dict[str, dict[str, float]] = {side: {} for side in sides}
    compiled: dict[str, object] = {}
    for round_ in range(rounds):
        for side, src in sides.items():
            result = run_tree(src, batches, inner)
            compiled[side] = result["compiled"]
            for name, ns in result["ns"].items():  # type: ignore[attr-defined]
                best[side][name] = min(best[side].get(name, ns), ns)
            print(f"round {round_ + 1}: {side} done", file=sys.stderr)
    print(f"ns per command, {PIPELINE} to a pipeline, no sockets; best of {rounds} x {inner}")
    for name in COMMANDS:
        line = f"{name:5s} {best['this'][name]:8,.0f}"
        if "baseline" in best:
            before, ratio = best["baseline"][name], best["this"][name] / best["baseline"][name]
            line += f"   baseline {before:8,.0f}   this / baseline {ratio:.2f}"
        print(line)
    print(f"compiled: {compiled}")
    name = "quick/loop.json" if args.quick else "loop.json"
    path = Path(__file__).resolve().parent / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ns_per_command": best, "compiled": compiled}, indent=2) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
