"""The node under test: a geocache process, or a real redis-server as a stand-in.

`GEOCACHE_TEST_TARGET=redis` makes every "node" a redis-server, so the whole suite can
be checked against Redis itself. Node flags are given by their Python names
(`max_clients=2`); each maps to a geocache command-line flag and, where Redis has an
equivalent, to a redis-server option. A flag without a Redis equivalent raises
`UnsupportedOnRedis`: the test using it must be marked `geocache_only`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .procs import ServerProcess, start_geocache, start_redis, target

# Redis refuses a client-query-buffer-limit below 1 MiB (config.c); smaller limits
# exist only in geocache.
REDIS_MIN_QUERY_BUFFER_BYTES = 1024 * 1024

GEOCACHE_FLAGS: dict[str, str] = {
    "requirepass": "--requirepass",
    "max_clients": "--max-clients",
    "max_bytes": "--max-bytes",
    "max_keys": "--max-keys",
    "max_value_bytes": "--max-value-bytes",
    "max_query_buffer_bytes": "--max-query-buffer-bytes",
    "max_output_buffer_bytes": "--max-output-buffer-bytes",
    "idle_timeout_s": "--idle-timeout-s",
    "log_level": "--log-level",
}


class UnsupportedOnRedis(ValueError):
    """A node flag that redis-server has no equivalent for."""


def _query_buffer(value: object) -> list[str]:
    if int(str(value)) < REDIS_MIN_QUERY_BUFFER_BYTES:
        raise UnsupportedOnRedis("redis needs client-query-buffer-limit >= 1 MiB")
    return ["--client-query-buffer-limit", str(value)]


REDIS_EQUIVALENTS: dict[str, Callable[[object], list[str]]] = {
    "requirepass": lambda v: ["--requirepass", str(v)],
    "max_clients": lambda v: ["--maxclients", str(v)],
    # geocache evicts by LRU under max_bytes; the closest Redis policy is allkeys-lru.
    "max_bytes": lambda v: ["--maxmemory", str(v), "--maxmemory-policy", "allkeys-lru"],
    "max_query_buffer_bytes": _query_buffer,
    # Hard limit = soft limit = v, no soft-limit grace period: disconnect at v bytes.
    "max_output_buffer_bytes": lambda v: ["--client-output-buffer-limit", f"normal {v} {v} 0"],
    "idle_timeout_s": lambda v: ["--timeout", str(v)],
    # Redis's log levels differ from Python's; its default level is fine for tests.
    "log_level": lambda v: [],
}


def geocache_args(flags: dict[str, object]) -> list[str]:
    args: list[str] = []
    for name, value in flags.items():
        if name not in GEOCACHE_FLAGS:
            raise TypeError(f"unknown node flag {name!r}")
        args += [GEOCACHE_FLAGS[name], str(value)]
    return args


def redis_args(flags: dict[str, object]) -> list[str]:
    args: list[str] = []
    for name, value in flags.items():
        if name not in GEOCACHE_FLAGS:
            raise TypeError(f"unknown node flag {name!r}")
        if name not in REDIS_EQUIVALENTS:
            raise UnsupportedOnRedis(f"{name}: no redis-server equivalent; mark geocache_only")
        args += REDIS_EQUIVALENTS[name](value)
    return args


def start_node(workdir: Path, **flags: object) -> ServerProcess:
    """Start the node under test (geocache, or redis-server when the target is redis)."""
    if target() == "redis":
        server = start_redis(workdir, redis_args(flags))
    else:
        server = start_geocache(workdir, geocache_args(flags))
    server.password = None if flags.get("requirepass") is None else str(flags["requirepass"])
    server.flags = dict(flags)
    return server


class NodeFactory:
    """Starts nodes with custom flags and stops every one of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[ServerProcess] = []

    def __call__(self, **flags: object) -> ServerProcess:
        server = start_node(self.workdir, **flags)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
        self.started.clear()
