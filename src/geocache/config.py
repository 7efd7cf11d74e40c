"""Node configuration: one table of settings, read from defaults, a TOML file, the
environment and flags, each overriding the one before.

Every setting is a field of `NodeConfig` with its default, unit and help text in the
field's metadata; the CLI builds its flags from this table (`--max-bytes`), the
environment is read as `GEOCACHE_MAX_BYTES`, and a TOML file uses `max_bytes = ...` or
`max-bytes = ...`. Sizes accept suffixes (`64mb`, `1gib`; k/m/g are powers of 1024 as
in redis.conf).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

_SIZE = re.compile(r"(\d+)\s*([kmg]i?b?|b)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str | int) -> int:
    """Bytes from `1048576`, `1mb`, `1MiB` or `1m`."""
    if isinstance(text, int):
        return text
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 1048576, 64mb or 1gib)")
    number, unit = match.groups()
    return int(number) * _UNITS[(unit or "")[:1].lower()]


# The smallest default client memory budget (bytes): a small store must still let a few
# clients send their pipelines (one pipeline turn reads up to ~1 MiB ahead).
MIN_CLIENT_MEMORY = 32 << 20


def _setting(default: Any, help: str, kind: str = "") -> Any:
    return field(default=default, metadata={"help": help, "kind": kind})


@dataclass(frozen=True, slots=True)
class NodeConfig:
    bind: str = _setting("127.0.0.1", "address to listen on (RESP and HTTP); loopback by default")
    port: int = _setting(7379, "RESP port (7379, so a local Redis on 6379 is not in the way)")
    http_port: int = _setting(7380, "HTTP API port; 0 turns HTTP off")
    node_id: str = _setting("", "this node's id in the cluster (default: bind:port)")
    region: str = _setting("local", "the region this node belongs to")
    max_bytes: int = _setting(
        1 << 30, "memory limit for entries (keys + values + overhead); 0 = none", "size"
    )
    max_keys: int = _setting(0, "limit on the number of keys; 0 = none")
    default_ttl_s: int = _setting(0, "TTL in seconds for writes that give none; 0 = none")
    requirepass: str = _setting("", "password clients must AUTH with; empty = no AUTH")
    max_clients: int = _setting(10_000, "connections accepted at once (as Redis's maxclients)")
    max_key_bytes: int = _setting(64 << 10, "largest key accepted (64 KiB)", "size")
    max_value_bytes: int = _setting(32 << 20, "largest value accepted (32 MiB)", "size")
    max_query_buffer_bytes: int = _setting(
        128 << 20, "bytes buffered for one client's unfinished command (128 MiB)", "size"
    )
    max_output_buffer_bytes: int = _setting(
        64 << 20, "replies queued for a client that does not read before it is cut off", "size"
    )
    max_pipeline: int = _setting(
        1024, "commands run for one client before others get a turn (fairness)"
    )
    max_client_memory: int = _setting(
        0,
        "memory all clients may hold at once (query buffers, unsent replies, MULTI queues,"
        " HTTP bodies); past it the client using most is closed; 0 = a quarter of max_bytes,"
        " at least 32 MiB (no limit when max_bytes is 0)",
        "size",
    )
    output_stall_timeout_s: float = _setting(
        10.0, "close a client whose unsent replies stay over the pause mark this long (s)"
    )
    max_peer_connections: int = _setting(
        256, "connections from cluster peers, beside max_clients (3 per peer: data, forward, geo)"
    )
    auth_timeout_s: float = _setting(
        5.0,
        "close a connection that has not authenticated this long (s): with requirepass, or"
        " one let in by the peer budget",
    )
    max_http_connections: int = _setting(
        1024,
        "HTTP connections at once, beside max_clients (its own door: HTTP cannot lock RESP out)",
    )
    http_header_timeout_s: float = _setting(
        10.0, "an HTTP request's headers must arrive within this long (s)"
    )
    http_body_timeout_s: float = _setting(30.0, "an HTTP request's body must arrive within (s)")
    max_keys_per_command: int = _setting(
        10_000, "keys one command may name in cluster mode (MGET, MSET, DEL...); 0 = no cap"
    )
    max_hint_bytes: int = _setting(
        64 << 20, "bytes of hints (writes kept for replicas that missed them), all targets", "size"
    )
    idle_timeout_s: int = _setting(0, "close connections idle this long; 0 = never")
    cluster_secret: str = _setting(
        "", "shared secret peers prove (HMAC); setting it turns on cluster mode"
    )
    seeds: str = _setting("", "comma-separated host:port of nodes to join through")
    advertise_addr: str = _setting("", "host:port peers reach this node at (default bind:port)")
    replicas: int = _setting(2, "copies of each key in a region (capped at the region's size)")
    write_acks: str = _setting(
        "quorum", "owners that must apply a write before OK: one, quorum, all"
    )
    read_remote_on_miss: bool = _setting(
        False, "on a miss in this region, ask the nearest other region before answering"
    )
    remote_read_budget_ms: int = _setting(
        150, "time a read_remote_on_miss read may spend asking another region (ms)"
    )
    geo_queue_max: int = _setting(
        100_000, "keys queued per remote region before the stream falls back to a resync"
    )
    geo_resync_after_s: float = _setting(
        60.0, "a remote region unreachable this long: drop its queue and resync by digest"
    )
    geo_coalesce: bool = _setting(
        True, "send only the newest write of a key queued for another region (off: every write)"
    )
    peer_map: str = _setting(
        "", "comma-separated addr=via pairs: dial via to reach peer addr (a relay; tests, demo)"
    )
    clock_offset_ms: int = _setting(
        0, "test only: shift this node's wall clock by this many ms (clock skew tests)"
    )
    origin: str = _setting(
        "",
        "read-through origin: redis://host:port/db, http(s)://host/path/{key} or"
        " module:function (an async loader); empty = none",
    )
    origin_ttl_s: float = _setting(300.0, "TTL of values loaded from the origin (s); 0 = none")
    origin_timeout_s: float = _setting(
        1.0, "time one load may take, waiting for a free load slot included (s)"
    )
    origin_concurrency: int = _setting(64, "loads from the origin at once, per node")
    origin_breaker_failures: int = _setting(
        5, "failed loads in a row that open the origin's circuit breaker; 0 = never opens"
    )
    origin_breaker_reset_s: float = _setting(
        5.0, "time an open circuit breaker refuses loads before letting one try (s)"
    )
    max_stale_s: float = _setting(
        0.0, "when the origin fails, serve a value this long past its TTL (s); 0 = never"
    )
    negative_ttl_s: float = _setting(
        0.0, "remember the origin's 'no such key' (nil, 404) this long (s); 0 = not at all"
    )
    refresh_keys: str = _setting(
        "", "comma-separated keys or globs reloaded from the origin before they expire"
    )
    max_concurrent_commands: int = _setting(
        0, "client commands in progress at once, node-wide (1: one at a time); 0 = no cap"
    )
    log_level: str = _setting("info", "debug, info, warning or error")
    log_json: bool = _setting(False, "log one JSON object per line")

    def __post_init__(self) -> None:
        for name in ("port", "http_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ValueError(f"{name} must be 0..65535, not {value}")
        for name in (
            "max_bytes",
            "max_keys",
            "default_ttl_s",
            "idle_timeout_s",
            "max_client_memory",
            "max_keys_per_command",
            "max_hint_bytes",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        for name in (
            "max_clients",
            "max_key_bytes",
            "max_value_bytes",
            "max_query_buffer_bytes",
            "max_output_buffer_bytes",
            "max_pipeline",
            "max_peer_connections",
            "max_http_connections",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in (
            "output_stall_timeout_s",
            "auth_timeout_s",
            "http_header_timeout_s",
            "http_body_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0")
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.remote_read_budget_ms < 1 or self.geo_queue_max < 1:
            raise ValueError("remote_read_budget_ms and geo_queue_max must be at least 1")
        if self.geo_resync_after_s <= 0:
            raise ValueError("geo_resync_after_s must be more than 0")
        self.peer_routes  # noqa: B018 - validates peer_map
        if self.write_acks not in ("one", "quorum", "all"):
            raise ValueError(f"write_acks must be one, quorum or all, not {self.write_acks}")
        if self.seeds and not self.cluster_secret:
            raise ValueError("joining a cluster (seeds) needs cluster_secret")
        self._check_origin()
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError(
                f"log_level must be debug, info, warning or error, not {self.log_level}"
            )

    def _check_origin(self) -> None:
        from geocache.origin.spec import parse_origin

        if self.origin:
            parse_origin(self.origin)  # ValueError saying what is wrong
        for name in ("origin_ttl_s", "max_stale_s", "negative_ttl_s", "origin_breaker_failures"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        if self.origin_timeout_s <= 0 or self.origin_breaker_reset_s <= 0:
            raise ValueError("origin_timeout_s and origin_breaker_reset_s must be more than 0")
        if self.origin_concurrency < 1:
            raise ValueError("origin_concurrency must be at least 1")
        if self.max_concurrent_commands < 0:
            raise ValueError("max_concurrent_commands must be 0 (no cap) or more")
        if self.refresh_keys and not (self.origin and self.origin_ttl_s > 0):
            raise ValueError("refresh_keys needs an origin and an origin_ttl_s above 0")

    @property
    def client_memory_limit(self) -> int:
        """max_client_memory, or by default a quarter of max_bytes but at least
        MIN_CLIENT_MEMORY (a few clients' pipelines must fit); 0: no limit."""
        if self.max_client_memory or not self.max_bytes:
            return self.max_client_memory
        return max(self.max_bytes // 4, MIN_CLIENT_MEMORY)

    @property
    def clustered(self) -> bool:
        return bool(self.cluster_secret)

    @property
    def seed_list(self) -> list[str]:
        return [s.strip() for s in self.seeds.split(",") if s.strip()]

    @property
    def peer_routes(self) -> dict[str, str]:
        """peer_map as {peer addr: addr to dial instead}."""
        routes = {}
        for pair in self.peer_map.split(","):
            if not pair.strip():
                continue
            addr, sep, via = pair.strip().partition("=")
            if not sep or ":" not in addr or ":" not in via:
                raise ValueError(f"peer_map entries are host:port=host:port, not {pair!r}")
            routes[addr] = via
        return routes

    @property
    def effective_node_id(self) -> str:
        return self.node_id or f"{self.bind}:{self.port}"

    def replace(self, **changes: Any) -> NodeConfig:
        return dataclasses.replace(self, **changes)


def setting_help() -> dict[str, tuple[Any, str, str]]:
    """name -> (default, help, kind) for every setting."""
    return {f.name: (f.default, f.metadata["help"], f.metadata["kind"]) for f in fields(NodeConfig)}


def coerce(name: str, value: Any) -> Any:
    """Turn a setting's text (from the environment, flags or TOML) into its type."""
    kinds = {f.name: (f.type, f.metadata["kind"]) for f in fields(NodeConfig)}
    if name not in kinds:
        raise ValueError(f"unknown setting {name!r}")
    type_name, kind = kinds[name]
    if kind == "size":
        return parse_size(value)
    if type_name == "int":
        return int(value)
    if type_name == "float":
        return float(value)
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    return str(value)


def load(
    toml_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Defaults, then the TOML file, then GEOCACHE_* variables, then `overrides` (flags)."""
    values: dict[str, Any] = {}
    if toml_path:
        with open(toml_path, "rb") as f:
            for key, value in tomllib.load(f).items():
                values[key.replace("-", "_")] = value
    env = os.environ if environ is None else environ
    for name in setting_help():
        text = env.get("GEOCACHE_" + name.upper())
        if text is not None:
            values[name] = text
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return NodeConfig(**{name: coerce(name, value) for name, value in values.items()})
