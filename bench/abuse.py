"""Abuse, side by side: what each hostile or careless client of issue 15 costs a geocache
node and a redis-server.

Each scenario runs against a fresh server of each kind, both with 64 MB for data
(geocache `--max-bytes 64mb`, redis `--maxmemory 64mb --maxmemory-policy allkeys-lru`,
every other setting at its default). While the abuser runs, a bystander in its own
process PINGs the server every 10 ms on another connection; the table shows the
server's peak RSS (sampled every 10 ms from /proc), the bystander's worst PING and what
the abuser got. Scenarios that need a cluster, HTTP or geocache's peer door run on
geocache only (redis-server has no such thing to compare).

How to read it: geocache's bounds are RSS under 3 x 64 MB + 100 MB = 292 MB and PING
under 250 ms (tests/abuse/ asserts them); redis-server's column shows what Redis itself
allows with its defaults (normal clients have no output buffer or client memory limit
unless configured). This is not a timed benchmark: one run, no rounds.

`--quick` runs smaller loads through the same code (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from _common import raise_on_sigterm, results_path
from support.abuse import (
    MB,
    Bystander,
    Outcome,
    RssPeak,
    big_multi,
    closed_count,
    half_sent_http,
    idle_connections,
    pipelined_big_gets,
    slow_reader,
    unfinished_commands,
    wait_for,
)
from support.cluster import cluster_args, running_region
from support.procs import ServerProcess, free_port, start_geocache, start_redis
from support.resp import RawClient, encode_command

GEOCACHE_ARGS = ["--max-bytes", "64mb", "--log-level", "warning"]
REDIS_ARGS = ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    server: str
    peak_rss_mb: float
    worst_ping_ms: float
    abuser_got: str


@dataclass(frozen=True, slots=True)
class Sizes:
    gets: int
    rounds: int
    multi: int
    slow_s: float
    mgets: int
    hang_s: float


FULL = Sizes(gets=1024, rounds=12, multi=500, slow_s=8.0, mgets=20, hang_s=6.0)
QUICK = Sizes(gets=128, rounds=3, multi=100, slow_s=4.0, mgets=3, hang_s=2.0)

Abuse = Callable[[ServerProcess], str]


# The bystander PINGs for at least this long (s), a quick abuse included.
MIN_WATCH_S = 0.5


def watched(name: str, kind: str, server: ServerProcess, abuse: Abuse) -> Row:
    with RssPeak(server.pid) as rss, Bystander(server.port) as bystander:
        started = time.monotonic()
        got = abuse(server)
        time.sleep(max(0.0, MIN_WATCH_S - (time.monotonic() - started)))
    if bystander.failures:
        got += f" (bystander: {bystander.failures[0]})"
    return Row(name, kind, rss.peak / MB, bystander.worst_ms, got)


@contextlib.contextmanager
def single(kind: str, tmp: Path, *extra: str) -> Iterator[ServerProcess]:
    if kind == "redis":
        server = start_redis(tmp, REDIS_ARGS)
    else:
        server = start_geocache(tmp, [*GEOCACHE_ARGS, *extra])
    try:
        yield server
    finally:
        server.stop()


def words(outcome: Outcome) -> str:
    return outcome.text


def config_set_non_utf8(server: ServerProcess) -> str:
    with server.raw() as c:
        reply = c.call("CONFIG", "SET", "timeout", b"\xff\xfe")
        ping = c.call("PING")
    return f"{reply[:40].decode(errors='replace').strip()}; then PING {ping.strip().decode()}"


def standalone(sizes: Sizes) -> list[tuple[str, Abuse, tuple[str, ...]]]:
    return [
        (
            f"{sizes.gets} pipelined GETs of 1 MB",
            lambda s: words(pipelined_big_gets(s.port, MB, sizes.gets, hold_s=1.0)),
            (),
        ),
        (
            f"{sizes.rounds} x 100 MB unfinished MSET, closed",
            lambda s: words(unfinished_commands(s.port, sizes.rounds, 100 * MB)),
            (),
        ),
        (
            f"MULTI of {sizes.multi} x 1 MB SETs",
            lambda s: words(big_multi(s.port, sizes.multi, MB)),
            (),
        ),
        (
            "reads replies a byte a second",
            lambda s: words(slow_reader(s.port, watch_s=sizes.slow_s)),
            ("--output-stall-timeout-s", "2"),
        ),
        (
            "CONFIG SET non-UTF-8, one command at a time",
            config_set_non_utf8,
            ("--max-concurrent-commands", "1"),
        ),
    ]


def half_sent_http_row(tmp: Path) -> Row:
    http_port = free_port()
    extra = ("--http-port", str(http_port), "--max-http-connections", "1000")
    extra += ("--http-header-timeout-s", "2")
    with single("geocache", tmp, *extra) as server:

        def abuse(s: ServerProcess) -> str:
            socks = half_sent_http(http_port, 1007)
            try:
                with s.raw() as c:
                    resp_ok = c.call("PING") == b"+PONG\r\n"
                started = time.monotonic()
                wait_for(lambda: closed_count(socks, 0.001) >= 1000, 15)
                closed = closed_count(socks, 0.001)
                took = time.monotonic() - started
            finally:
                for sock in socks:
                    sock.close()
            return (
                f"RESP PING {'ok' if resp_ok else 'refused'}; {closed} closed within {took:.1f} s"
            )

        return watched("1007 half-sent HTTP requests", "geocache", server, abuse)


def idle_strangers_row(tmp: Path) -> Row:
    extra = ("--max-clients", "20", "--auth-timeout-s", "1")
    first = start_geocache(tmp, cluster_args("n1", None, *GEOCACHE_ARGS[:2], *extra))
    strangers: list[socket.socket] = []
    second: ServerProcess | None = None
    try:

        def abuse(s: ServerProcess) -> str:
            nonlocal second
            strangers.extend(idle_connections(first.port, 19))  # the bystander has one
            seed = f"127.0.0.1:{first.port}"
            second = start_geocache(tmp, cluster_args("n2", seed, *GEOCACHE_ARGS[:2], *extra))
            joined = wait_for(lambda: second is not None and _alive_seen(second) == 2, 15)
            at_peer_door = idle_connections(first.port, 3)
            strangers.extend(at_peer_door)
            closed = wait_for(lambda: closed_count(at_peer_door) == 3, 5)
            return (
                f"n2 joined through n1's full client door: {joined}; "
                f"3 strangers at the peer door closed after the auth timeout: {closed}"
            )

        return watched("20 idle strangers, then a peer joins", "geocache", first, abuse)
    finally:
        for sock in strangers:
            sock.close()
        if second is not None:
            second.stop()
        first.stop()


def _alive_seen(server: ServerProcess) -> int:
    with RawClient(server.host, server.port) as c:
        raw = c.call("INFO", "geocache").decode()
    for line in raw.splitlines():
        if line.startswith("cluster_members_alive:"):
            return int(line.split(":")[1])
    return 0


def mget_pipeline_row(tmp: Path, sizes: Sizes) -> Row:
    keys = [f"key:{i}" for i in range(10_000)]
    with running_region(tmp, 3, GEOCACHE_ARGS[:2]) as nodes:
        n1 = nodes[0]
        with n1.raw(timeout_s=60) as c:
            for start in range(0, len(keys), 2000):
                chunk = keys[start : start + 2000]
                c.call("MSET", *[x for k in chunk for x in (k, k.upper())])

        def abuse(s: ServerProcess) -> str:
            with s.raw(timeout_s=60) as c:
                started = time.monotonic()
                c.send_raw(encode_command(["MGET", *keys]) * sizes.mgets)
                replies = c.read_replies(sizes.mgets)
                took = time.monotonic() - started
                with contextlib.suppress(OSError):  # it may be cut off mid-send
                    c.send_raw(encode_command(["EXISTS", *[f"x{i}" for i in range(100_000)]]))
                too_many = c.read_until_closed()
            ok = all(r.startswith(b"*10000\r\n") for r in replies)
            return (
                f"{sizes.mgets} x 10,000 keys answered in {took:.1f} s ({'ok' if ok else 'WRONG'});"
                f" EXISTS of 100k keys: {too_many[:47].decode().strip()} and closed"
            )

        return watched(
            f"pipeline of {sizes.mgets} MGETs of 10,000 keys, 3 nodes", "geocache", n1, abuse
        )


def hung_replica_row(tmp: Path, sizes: Sizes) -> Row:
    with running_region(tmp, 2, [*GEOCACHE_ARGS[:2], "--max-hint-bytes", "32mb"]) as (n1, n2):

        def abuse(s: ServerProcess) -> str:
            n2.proc.send_signal(signal.SIGSTOP)
            writes = 0
            try:
                with s.raw() as c:
                    deadline = time.monotonic() + sizes.hang_s
                    while time.monotonic() < deadline:
                        value = b"b" * MB
                        if c.call("SET", f"big:{writes % 40}", value) == b"+OK\r\n":
                            writes += 1
            finally:
                n2.proc.send_signal(signal.SIGCONT)
            with s.raw() as c:
                info = c.call("INFO", "memory").decode()
            hint_mb = next(
                int(line.split(":")[1]) / MB
                for line in info.splitlines()
                if line.startswith("hint_bytes:")
            )
            return f"{writes} writes of 1 MB acknowledged; hints held {hint_mb:.0f} MB"

        return watched(
            f"replica hung {sizes.hang_s:.0f} s under 1 MB writes", "geocache", n1, abuse
        )


def run(sizes: Sizes, tmp: Path, console: Console) -> list[Row]:
    rows: list[Row] = []
    for name, abuse, extra in standalone(sizes):
        for kind in ("geocache", "redis"):
            with single(kind, tmp, *extra) as server:
                rows.append(watched(name, kind, server, abuse))
            console.log(f"{name} / {kind}: done")
    for make in (
        lambda: half_sent_http_row(tmp),
        lambda: idle_strangers_row(tmp),
        lambda: mget_pipeline_row(tmp, sizes),
        lambda: hung_replica_row(tmp, sizes),
    ):
        rows.append(make())
        console.log(f"{rows[-1].scenario}: done")
    return rows


def table(rows: list[Row]) -> Table:
    out = Table(title="abuse: one fresh server per row, 64 MB for data")
    for column in ("scenario", "server", "peak RSS MB", "worst PING ms", "the abuser got"):
        out.add_column(column)
    for row in rows:
        out.add_row(
            row.scenario,
            row.server,
            f"{row.peak_rss_mb:.0f}",
            f"{row.worst_ping_ms:.1f}",
            row.abuser_got,
        )
    return out


def markdown(rows: list[Row]) -> str:
    lines = [
        "| scenario | server | peak RSS MB | worst PING ms | the abuser got |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.server} | {row.peak_rss_mb:.0f} |"
            f" {row.worst_ping_ms:.1f} | {row.abuser_got} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small loads: a smoke run")
    args = parser.parse_args()
    raise_on_sigterm()
    console = Console()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="geocache-abuse-") as tmp:
        rows = run(sizes, Path(tmp), console)
    console.print(table(rows))
    print(markdown(rows))
    path = results_path("abuse", args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"sizes": asdict(sizes), "rows": [asdict(r) for r in rows]}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
