"""Origin offload: a read-through node in front of an origin, beside cache-aside.

The workload: 100,000 keys at the origin (100-byte values), read with Zipf popularity
(s = 1.1: the key of rank r is asked for with probability ~ 1/r^1.1), through a cache
with room for 10,000 keys (`--max-keys`), by 50 connections with one request each in
flight, from a cold cache. The same sequence of keys goes to two caches:

- read-through: a geocache node with `--origin`: the node fills a miss, once per key
  however many connections miss it at once (singleflight);
- cache-aside, the cache that does not coalesce: a plain geocache node, and the client
  itself GETs the origin on a miss and SETs the value in the cache, as applications
  commonly do: every miss is an origin request.

Two origins, one after the other: a redis-server on 127.0.0.1 (about 0.1 ms a GET), and
an HTTP API (aiohttp, in a process of its own) that answers after `--latency-ms` (5 ms
by default, a nearby service): the longer a load takes, the more misses of one key
overlap, and the more coalescing saves.

Each run, on a fresh node: first 20 stampedes (the 50 connections GET one missing key
at once), then the Zipf load, offered at `--rate` GETs/s (the same for both caches, so
origin requests per second compare). Figures: origin requests per stampede; for the
Zipf load, the cache's hit ratio (keyspace hits over GETs, from its INFO), origin
requests in all, per second and per 1,000 GETs, origin requests in the first 5% of GETs
(the cold start, when misses of the hottest keys pile up), misses that joined a load in
flight (`coalesced`), and GETs per second. Runs alternate (read-through, cache-aside,
...) for `--rounds`; each figure is the median over rounds.

    .venv/bin/python bench/origin.py [--quick] [--requests N] [--rounds R] [--rate R]
                                     [--latency-ms L] [--ttl-s T] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py is named like the standard library's `http`, which aiohttp imports, and
# Python puts this script's folder first on sys.path: import the real one first.
_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _BENCH)]
import http.client  # noqa: E402, F401 - the standard library's, cached in sys.modules

sys.path.append(_BENCH)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Iterator  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402

import aiohttp  # noqa: E402
import hiredis  # noqa: E402
from aiohttp import web  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from _common import (  # noqa: E402
    READY_TIMEOUT_S,
    ServerProcess,
    ServerSpec,
    ServerStartError,
    cpu_info,
    free_port,
    raise_on_sigterm,
    results_path,
)

KEYS = 100_000  # keys at the origin
CACHE_KEYS = 10_000  # room in the cache: a tenth of the keys
ZIPF_S = 1.1
VALUE = b"v" * 100  # a small cached value, as in bench/resp.py
CLIENTS = 50
# The node's default origin_ttl_s: nothing expires during a run, so misses come from the
# cold start and the cache's room; `--ttl-s 2` makes hot keys expire too.
DEFAULT_TTL_S = 300.0
COLD_SHARE = 0.05  # "cold start": the first 5% of a run's GETs
DEFAULT_REQUESTS = 100_000  # per run: ten times the cache's room
QUICK_REQUESTS = 10_000
# Offered load (GETs/s): what every setup here sustains on a loaded 2-core machine.
DEFAULT_RATE = 4_000.0
DEFAULT_LATENCY_MS = 5.0
SEED = 11  # the same key sequence for every run
STAMPEDES = 20  # bursts of CLIENTS GETs of one missing key, before each run
SIDES = ("read-through", "cache-aside")
ORIGINS = ("redis", "http")
ITEM_PATH = "/items/"

Fetch = Callable[[bytes], Awaitable[bytes | None]]
Close = Callable[[], Awaitable[None]]


def encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class Conn:
    """One RESP connection with one request in flight."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer, self._parser = reader, writer, hiredis.Reader()

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def call(self, *args: bytes) -> object:
        self._writer.write(encode(*args))
        while (reply := self._parser.gets()) is False:
            data = await self._reader.read(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection")
            self._parser.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            raise RuntimeError(f"error reply: {reply}")
        return reply

    async def info(self, section: bytes) -> dict[str, str]:
        reply = await self.call(b"INFO", section)
        assert isinstance(reply, bytes)
        lines = (line.partition(":") for line in reply.decode().splitlines() if ":" in line)
        return {name: value for name, _, value in lines}

    def close(self) -> None:
        self._writer.close()


def key_name(rank: int) -> bytes:
    return b"key:%06d" % rank


def stampede_key(n: int) -> bytes:
    return b"stampede:%02d" % n


def zipf_keys(requests: int) -> list[bytes]:
    """`requests` keys drawn with Zipf(ZIPF_S) popularity over KEYS keys (fixed seed)."""
    weights = list(itertools.accumulate(1 / rank**ZIPF_S for rank in range(1, KEYS + 1)))
    ranks = random.Random(SEED).choices(range(KEYS), cum_weights=weights, k=requests)
    return [key_name(rank) for rank in ranks]


# -- the origins -------------------------------------------------------------------------


class RedisOrigin:
    """redis-server holding every key; requests counted by its commandstats."""

    kind = "redis"

    def __init__(self, logs: Path) -> None:
        self.port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no"]
        self.process = ServerSpec("origin-redis", argv, self.port, logs / "origin-redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def preload(self) -> None:
        conn = await Conn.open(self.port)
        stampeding = (part for n in range(STAMPEDES) for part in (stampede_key(n), VALUE))
        await conn.call(b"MSET", *stampeding)
        for start in range(0, KEYS, 1000):  # MSET in batches of 1,000 keys
            pairs = (
                part for r in range(start, min(start + 1000, KEYS)) for part in (key_name(r), VALUE)
            )
            await conn.call(b"MSET", *pairs)
        conn.close()

    async def requests(self) -> int:
        conn = await Conn.open(self.port)
        stats = (await conn.info(b"commandstats")).get("cmdstat_get", "calls=0")
        conn.close()
        return int(stats.split(",")[0].removeprefix("calls="))

    async def fetcher(self) -> tuple[Fetch, Close]:
        """What a cache-aside client GETs the origin with, and how it lets go."""
        conn = await Conn.open(self.port)

        async def fetch(key: bytes) -> bytes | None:
            value = await conn.call(b"GET", key)
            assert value is None or isinstance(value, bytes)
            return value

        async def close() -> None:
            conn.close()

        return fetch, close


def http_origin_ready(server: ServerProcess) -> None:
    """The HTTP origin's process is ready when it answers /stats (it speaks no RESP)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and server.is_running():
        try:
            asyncio.run(_http_requests(server.port))
            return
        except OSError:
            time.sleep(0.05)
    raise ServerStartError(f"the HTTP origin did not start: {server.log_text()[-2000:]}")


class HttpOrigin:
    """An HTTP API answering every key after `latency_ms`; requests counted at /stats."""

    kind = "http"

    def __init__(self, logs: Path, latency_ms: float) -> None:
        self.port = free_port()
        argv = [sys.executable, __file__, "--serve-http-origin", str(self.port)]
        argv += ["--latency-ms", str(latency_ms)]
        log = logs / "origin-http.log"
        self.process = ServerSpec("origin-http", argv, self.port, log, http_origin_ready)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ITEM_PATH}{{key}}"

    async def preload(self) -> None:
        pass  # it makes every key up

    async def requests(self) -> int:
        return await _http_requests(self.port)

    async def fetcher(self) -> tuple[Fetch, Close]:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        base = f"http://127.0.0.1:{self.port}{ITEM_PATH}"

        async def fetch(key: bytes) -> bytes | None:
            async with session.get(base + key.decode()) as response:
                return await response.read() if response.status == 200 else None

        return fetch, session.close


async def _http_requests(port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/stats") as response,
    ):
        return int(await response.text())


def serve_http_origin(port: int, latency_ms: float) -> None:
    """The HTTP origin's main: GET /items/key:NNNNNN after latency_ms; GET /stats."""
    served = 0

    async def item(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        await asyncio.sleep(latency_ms / 1000)
        return web.Response(body=VALUE, content_type="application/octet-stream")

    async def stats(request: web.Request) -> web.Response:
        return web.Response(text=str(served))

    app = web.Application()
    app.router.add_get(ITEM_PATH + "{key}", item)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- a run ---------------------------------------------------------------------------------


@dataclass
class Run:
    origin: str
    side: str
    requests: int
    seconds: float
    hit_ratio: float
    origin_requests: int
    origin_requests_cold: int
    coalesced: int
    origin_requests_per_stampede: float


def figures(run: Run) -> dict[str, float]:
    return {
        "hit_ratio": run.hit_ratio,
        "origin_requests": run.origin_requests,
        "origin_rps": run.origin_requests / run.seconds,
        "per_1000": 1000 * run.origin_requests / run.requests,
        "origin_requests_cold": run.origin_requests_cold,
        "coalesced": run.coalesced,
        "per_stampede": run.origin_requests_per_stampede,
        "rps": run.requests / run.seconds,
    }


async def get(cache: Conn, fetch: Fetch, side: str, key: bytes, ttl_ms: int) -> None:
    """One GET through the cache; cache-aside fills a miss itself."""
    value = await cache.call(b"GET", key)
    if value is None and side == "cache-aside":
        value = await fetch(key)
        assert value is not None
        await cache.call(b"SET", key, value, b"PX", b"%d" % ttl_ms)
    if value != VALUE:
        raise RuntimeError(f"{side}: GET {key!r} gave {value!r}")


async def stampedes(
    origin: RedisOrigin | HttpOrigin, side: str, cache_port: int, ttl_ms: int
) -> float:
    """Origin requests per stampede: CLIENTS connections GET one missing key at once."""
    caches = [await Conn.open(cache_port) for _ in range(CLIENTS)]
    fetchers = [await origin.fetcher() for _ in range(CLIENTS)]
    before = await origin.requests()
    for n in range(STAMPEDES):
        key = stampede_key(n)
        await asyncio.gather(
            *(
                get(c, fetch, side, key, ttl_ms)
                for c, (fetch, _) in zip(caches, fetchers, strict=True)
            )
        )
    per_stampede = (await origin.requests() - before) / STAMPEDES
    for cache, (_, close) in zip(caches, fetchers, strict=True):
        cache.close()
        await close()
    return per_stampede


async def drive(
    origin: RedisOrigin | HttpOrigin,
    side: str,
    cache_port: int,
    keys: list[bytes],
    args: argparse.Namespace,
) -> Run:
    """The stampedes, then every key's GET through CLIENTS connections, the i-th not
    before i / rate seconds (an offered load, the same for both caches, so that keys
    expire as often in both)."""
    ttl_ms = round(args.ttl_s * 1000)
    per_stampede = await stampedes(origin, side, cache_port, ttl_ms)
    stats_before = await cache_stats(cache_port)
    before = await origin.requests()
    loop = asyncio.get_running_loop()
    cold_at = int(len(keys) * COLD_SHARE)
    cold: list[int] = []
    work: Iterator[int] = iter(range(len(keys)))

    async def client() -> None:
        cache = await Conn.open(cache_port)
        fetch, close = await origin.fetcher()
        try:
            for i in work:
                if (wait_s := started + i / args.rate - loop.time()) > 0:
                    await asyncio.sleep(wait_s)
                if i == cold_at:
                    cold.append(await origin.requests() - before)
                await get(cache, fetch, side, keys[i], ttl_ms)
        finally:
            cache.close()
            await close()

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    seconds = loop.time() - started
    total = await origin.requests() - before
    stats = await cache_stats(cache_port)
    hits, misses = (stats[name] - stats_before[name] for name in ("hits", "misses"))
    return Run(
        origin=origin.kind,
        side=side,
        requests=len(keys),
        seconds=seconds,
        hit_ratio=hits / (hits + misses),
        origin_requests=total,
        origin_requests_cold=cold[0] if cold else total,
        coalesced=stats["coalesced"] - stats_before["coalesced"],
        origin_requests_per_stampede=per_stampede,
    )


async def cache_stats(port: int) -> dict[str, int]:
    cache = await Conn.open(port)
    stats, origin = await cache.info(b"stats"), await cache.info(b"origin")
    cache.close()
    return {
        "hits": int(stats["keyspace_hits"]),
        "misses": int(stats["keyspace_misses"]),
        "coalesced": int(origin.get("origin_coalesced", 0)),
    }


def cache_argv(port: int, origin: RedisOrigin | HttpOrigin, side: str, ttl_s: float) -> list[str]:
    argv = [sys.executable, "-m", "geocache", "serve", "--port", str(port), "--http-port", "0"]
    argv += ["--max-keys", str(CACHE_KEYS), "--log-level", "warning"]
    if side == "read-through":
        argv += ["--origin", origin.url, "--origin-ttl-s", str(ttl_s)]
    return argv


def measure(args: argparse.Namespace, console: Console) -> list[Run]:
    keys = zipf_keys(args.requests)
    logs = args.json.parent
    runs: list[Run] = []
    for origin in (RedisOrigin(logs), HttpOrigin(logs, args.latency_ms)):
        with origin.process.start():
            asyncio.run(origin.preload())
            for rnd in range(1, args.rounds + 1):
                for side in SIDES:
                    port = free_port()  # a fresh, cold cache for every run
                    argv = cache_argv(port, origin, side, args.ttl_s)
                    with ServerSpec(side, argv, port, logs / f"origin-{side}.log").start():
                        run = asyncio.run(drive(origin, side, port, keys, args))
                    console.print(
                        f"[dim]{origin.kind} origin, round {rnd}, {side}: "
                        f"{run.requests / run.seconds:,.0f} GETs/s, hit ratio {run.hit_ratio:.3f},"
                        f" {run.origin_requests:,} origin requests[/]"
                    )
                    runs.append(run)
    return runs


def summarize(runs: list[Run]) -> list[dict[str, object]]:
    """One row per origin and side: the median of each figure over rounds."""
    rows: list[dict[str, object]] = []
    for kind, side in itertools.product(ORIGINS, SIDES):
        mine = [figures(r) for r in runs if r.origin == kind and r.side == side]
        if mine:
            medians = {name: statistics.median(f[name] for f in mine) for name in mine[0]}
            rows.append({"origin": kind, "side": side, **medians})
    return rows


def print_table(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    table = Table(
        title=f"Origin offload: Zipf s={ZIPF_S} over {KEYS:,} keys, room for {CACHE_KEYS:,},"
        f" {CLIENTS} clients, {args.requests:,} GETs per run, median of {args.rounds}"
    )
    columns = {
        "origin": "{}",
        "side": "{}",
        "hit_ratio": "{:.3f}",
        "origin_requests": "{:,.0f}",
        "origin_rps": "{:,.0f}",
        "per_1000": "{:.1f}",
        "origin_requests_cold": "{:,.0f}",
        "coalesced": "{:,.0f}",
        "per_stampede": "{:.1f}",
        "rps": "{:,.0f}",
    }
    headers = (
        "origin", "cache", "hit ratio", "origin requests", "origin req/s",
        "per 1,000 GETs", f"in first {COLD_SHARE:.0%}", "coalesced", "per stampede",
        "GETs/s",
    )  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header in ("origin", "cache") else "right")
    for row in rows:
        origin = f"{row['origin']}" + (
            f" ({args.latency_ms:g} ms)" if row["origin"] == "http" else ""
        )
        cells = [spec.format(row[name]) for name, spec in columns.items()]
        table.add_row(origin, *cells[1:])
    Console(width=140).print(table)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="10,000 GETs, 1 round: a smoke test")
    p.add_argument("--requests", type=int, help=f"GETs per run (default {DEFAULT_REQUESTS:,})")
    p.add_argument("--rounds", type=int, help="alternating rounds, median taken (default 3)")
    p.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="HTTP origin's")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, help="GETs/s offered")
    p.add_argument("--ttl-s", type=float, default=DEFAULT_TTL_S, help="TTL of cached values")
    p.add_argument("--json", type=Path, help="results (default bench/results/origin.json)")
    p.add_argument("--serve-http-origin", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.requests = args.requests or (QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.json = args.json or results_path("origin", args.quick)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.serve_http_origin:
        serve_http_origin(args.serve_http_origin, args.latency_ms)
        return 0
    console = Console()
    raise_on_sigterm()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    runs = measure(args, console)
    rows = summarize(runs)
    print_table(rows, args)
    out = {
        **cpu_info(),
        "command": shlex.join([sys.executable, "bench/origin.py", *sys.argv[1:]]),
        "keys": KEYS,
        "cache_keys": CACHE_KEYS,
        "zipf_s": ZIPF_S,
        "clients": CLIENTS,
        "requests": args.requests,
        "rounds": args.rounds,
        "http_latency_ms": args.latency_ms,
        "ttl_s": args.ttl_s,
        "rate": args.rate,
        "duration_s": round(time.time() - started, 1),
        "rows": rows,
        "runs": [asdict(r) for r in runs],
    }
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RuntimeError as exc:  # a server did not start, or a reply was wrong
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # the servers were already stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
