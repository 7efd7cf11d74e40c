"""The RESP command loop in one process, no sockets: nanoseconds per pipelined command.

Feeds `RespConnection.data_received` batches of 1,000 pipelined GETs or SETs through a
transport that drops the replies, and prints the best of `--rounds` rounds (the least
disturbed by other work on a shared machine) for database 0 and database 1. The two
should match: SELECT only repoints the session's store.

To compare two checkouts, run this file from each with its `src` on PYTHONPATH:

    PYTHONPATH=src .venv/bin/python bench/loop.py
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
import time  # noqa: E402

from geocache.config import NodeConfig  # noqa: E402
from geocache.server.node import Node  # noqa: E402
from geocache.server.resp import RespConnection  # noqa: E402

BATCH = 1000
BATCHES_PER_ROUND = 20
COMMANDS = {
    "GET": b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
    "SET": b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\nval\r\n",
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


def best_ns_per_command(conn: RespConnection, request: bytes, rounds: int) -> float:
    data = request * BATCH
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(BATCHES_PER_ROUND):
            conn.data_received(data)
        best = min(best, (time.perf_counter_ns() - started) / (BATCHES_PER_ROUND * BATCH))
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 3
    node = Node(NodeConfig(max_pipeline=BATCH * 2))
    for db in (b"0", b"1"):
        conn = RespConnection(node)
        conn.connection_made(NullTransport())  # type: ignore[arg-type]
        conn.data_received(b"*2\r\n$6\r\nSELECT\r\n$1\r\n%s\r\n" % db)
        conn.data_received(COMMANDS["SET"])
        for name, request in COMMANDS.items():
            ns = best_ns_per_command(conn, request, args.rounds)
            print(f"db {db.decode()} {name}: {ns:,.0f} ns/command")


if __name__ == "__main__":
    asyncio.run(main())
