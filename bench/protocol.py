"""Request parsing speed: geocache's RequestReader next to a bare hiredis.Reader.

What it measures: 100,000 `SET <16-byte key> <100-byte value>` commands fed in 16 KiB
chunks, then `gets()` until False after each chunk, as the server does. `raw hiredis` is
the floor (no limits, no inline commands, no validation); `RequestReader` is ours; `exact
parser` is the pure-Python grammar that takes over for anything unusual. Each number is
the best of `--rounds` runs (best, not mean: the machine is shared and noise only slows).
The ratio is RequestReader over raw hiredis, higher is better (the issue aims at >= 0.7).

    .venv/bin/python bench/protocol.py [--quick] [--commands N] [--rounds R]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import hiredis

from geocache.protocol.pyparser import PythonRequestParser
from geocache.protocol.reader import RequestReader

CHUNK_BYTES = 16 * 1024
DEFAULT_COMMANDS, DEFAULT_ROUNDS = 100_000, 7
QUICK_COMMANDS, QUICK_ROUNDS = 10_000, 1  # --quick: a smoke run, well under a second


def _chunks(count: int) -> list[bytes]:
    command = b"*3\r\n$3\r\nSET\r\n$16\r\n" + b"k" * 16 + b"\r\n$100\r\n" + b"v" * 100 + b"\r\n"
    data = command * count
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


def _run(make: Callable[[], object], chunks: list[bytes], count: int) -> float:
    reader = make()
    feed, gets = reader.feed, reader.gets  # type: ignore[attr-defined]
    seen = 0
    start = time.perf_counter()
    for chunk in chunks:
        feed(chunk)
        while gets() is not False:
            seen += 1
    elapsed = time.perf_counter() - start
    assert seen == count, seen
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: few commands")
    parser.add_argument("--commands", type=int, help=f"default {DEFAULT_COMMANDS:,}")
    parser.add_argument("--rounds", type=int, help=f"best of (default {DEFAULT_ROUNDS})")
    args = parser.parse_args()
    args.commands = args.commands or (QUICK_COMMANDS if args.quick else DEFAULT_COMMANDS)
    args.rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    chunks = _chunks(args.commands)
    big = 1 << 40
    contenders: dict[str, Callable[[], object]] = {
        "raw hiredis": hiredis.Reader,
        "RequestReader": RequestReader,
        "exact parser": lambda: PythonRequestParser(
            max_bulk_bytes=big, max_query_buffer_bytes=big, max_count=big
        ),
    }
    best = {
        name: min(_run(make, chunks, args.commands) for _ in range(args.rounds))
        for name, make in contenders.items()
    }
    for name, seconds in best.items():
        print(
            f"{name:14} {args.commands / seconds:12,.0f} commands/s"
            f" {seconds / args.commands * 1e9:7.0f} ns/command"
        )
    print(f"ratio RequestReader / raw hiredis: {best['raw hiredis'] / best['RequestReader']:.2f}")


if __name__ == "__main__":
    main()
