"""Node configuration: one table of settings, read from defaults, a TOML file, the
environment and flags, each overriding the one before.

Every setting is a field of `NodeConfig` with its default, unit and help text in the
field's metadata; the CLI builds its flags from this table (`--max-bytes`), the
environment is read as `GEOCACHE_MAX_BYTES`, and a TOML file uses `max_bytes = ...` or
`max-bytes = ...`. Sizes accept suffixes (`64mb`, `1gib`; k/m/g are powers of 1024 as
in redis.conf).

Nothing wrong passes silently: a value of the wrong type (`port = "abc"`, `replicas =
2.5`, `log_json = "maybe"`), an unknown TOML key or `GEOCACHE_*` variable, and a TOML
syntax error are refused with a ValueError that names the setting and where its value
came from (the file, the variable or the flag).
"""

from __future__ import annotations

import dataclasses
import difflib
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
    port: int = _setting(
        7379,
        "RESP port (7379, so a local Redis on 6379 is not in the way); 0 with a tls_port:"
        " no plaintext port",
    )
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
    seeds: str = _setting(
        "",
        "comma-separated nodes to join through: host:port, dns:NAME:PORT (every A/AAAA"
        " record, resolved again every 5 s) or srv:_NAME._tcp.DOMAIN",
    )
    advertise_addr: str = _setting(
        "",
        "host:port peers reach this node at (default bind:port; with a wildcard bind,"
        " the address toward the first seed)",
    )
    dns_server: str = _setting(
        "", "HOST:PORT of the DNS server dns: and srv: seeds are resolved with; empty = system's"
    )
    discover: str = _setting(
        "", "mdns: announce this node and find the cluster's nodes on the local network"
    )
    cluster_name: str = _setting(
        "geocache", "the cluster's name in mDNS: nodes join only nodes announcing the same"
    )
    mdns_service_type: str = _setting(
        "_geocache._tcp.local.", "the mDNS service type nodes announce and browse"
    )
    network: str = _setting(
        "lan", "membership timing profile: lan (one site) or wan (regions far apart)"
    )
    swim_probe_interval_ms: int = _setting(
        0, "membership probe interval (ms); 0 = the network profile's (lan 1000, wan 2000)"
    )
    swim_probe_timeout_ms: int = _setting(
        0, "wait for a direct probe's answer (ms); 0 = the profile's (lan 400, wan 800)"
    )
    swim_suspicion_mult: int = _setting(
        0, "suspicion timeout in probe intervals x max(1, log10 n); 0 = profile's (4, 6)"
    )
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
    warmup_max_s: float = _setting(
        60.0,
        "a node started with seeds is ready once it has pulled the keys it owns (warm-up),"
        " or after this long, whichever is first (s)",
    )
    warmup_keys_per_s: int = _setting(
        0, "pace warm-up's pull to this many keys a second, to spare its sources; 0 = no pacing"
    )
    allow_solo: bool = _setting(
        False,
        "with seeds: if no seed accepts this node's proof of the cluster secret within the"
        " join timeout (10 s), serve alone instead of exiting",
    )
    max_clock_skew_ms: int = _setting(
        60_000,
        "refuse a received version more than this far ahead of this node's clock (ms);"
        " a wall clock off from the peers' by half of it is reported",
    )
    auth_max_failures: int = _setting(
        10, "close a connection after this many failed AUTHs in a row (each reply delayed more)"
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
    tls_port: int = _setting(0, "RESP over TLS on this port; 0 = no TLS port (as Redis)")
    tls_cert_file: str = _setting("", "this node's certificate (PEM, chain included)")
    tls_key_file: str = _setting("", "the certificate's private key (PEM)")
    tls_ca_cert_file: str = _setting(
        "", "CA certificates (PEM) that client and peer certificates are verified against"
    )
    tls_ca_cert_dir: str = _setting("", "a directory of CA certificates (c_rehash layout)")
    tls_auth_clients: str = _setting(
        "yes", "client certificates on the TLS port: no, optional (verified if sent), yes"
    )
    tls_cluster: bool = _setting(
        False,
        "peer links use TLS (mutual: the peer's certificate is verified against the CA,"
        " this node's is presented); peers and clients reach this node at its TLS port",
        "yesno",
    )
    tls_cluster_check_name: bool = _setting(
        True,
        "with tls_cluster, a peer's certificate must name the host of its address (DNS or"
        " IP); no: any certificate from the CA will do (certificates without the address)",
        "yesno",
    )
    tls_http: bool = _setting(
        True, "HTTPS on http_port, with the same certificate, when TLS is configured", "yesno"
    )
    tls_protocols: str = _setting(
        "", "TLS versions allowed, as Redis: 'TLSv1.2 TLSv1.3' (empty: both)"
    )
    tls_ciphers: str = _setting(
        "", "TLS 1.2 cipher suites (OpenSSL syntax); empty: OpenSSL's defaults"
    )
    log_level: str = _setting("info", "debug, info, warning or error")
    log_json: bool = _setting(False, "log one JSON object per line")

    def __post_init__(self) -> None:
        for name in ("port", "http_port", "tls_port"):
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
            "warmup_keys_per_s",
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
            "warmup_max_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0")
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.max_clock_skew_ms < 1 or self.auth_max_failures < 1:
            raise ValueError("max_clock_skew_ms and auth_max_failures must be at least 1")
        if self.remote_read_budget_ms < 1 or self.geo_queue_max < 1:
            raise ValueError("remote_read_budget_ms and geo_queue_max must be at least 1")
        if self.geo_resync_after_s <= 0:
            raise ValueError("geo_resync_after_s must be more than 0")
        self.peer_routes  # noqa: B018 - validates peer_map
        if self.write_acks not in ("one", "quorum", "all"):
            raise ValueError(f"write_acks must be one, quorum or all, not {self.write_acks}")
        if self.seeds and not self.cluster_secret:
            raise ValueError("joining a cluster (seeds) needs cluster_secret")
        self._check_discovery()
        self._check_origin()
        self._check_tls()
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError(
                f"log_level must be debug, info, warning or error, not {self.log_level}"
            )

    def _check_discovery(self) -> None:
        if self.discover not in ("", "mdns"):
            raise ValueError(f"discover must be mdns or empty, not {self.discover!r}")
        if self.discover and not self.cluster_secret:
            raise ValueError("discovering a cluster (discover) needs cluster_secret")
        if self.network not in ("lan", "wan"):
            raise ValueError(f"network must be lan or wan, not {self.network!r}")
        for name in ("swim_probe_interval_ms", "swim_probe_timeout_ms", "swim_suspicion_mult"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (the profile's) or more")
        if not self.mdns_service_type.endswith("._tcp.local."):
            raise ValueError("mdns_service_type is _NAME._tcp.local.")

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

    def _check_tls(self) -> None:
        from geocache.tls import parse_protocols

        if self.tls_port and not (self.tls_cert_file and self.tls_key_file):
            raise ValueError("tls_port needs tls_cert_file and tls_key_file")
        if self.tls_auth_clients not in ("no", "optional", "yes"):
            raise ValueError(
                f"tls_auth_clients is no, optional or yes, not {self.tls_auth_clients}"
            )
        ca = self.tls_ca_cert_file or self.tls_ca_cert_dir
        if self.tls_port and self.tls_auth_clients != "no" and not ca:
            raise ValueError(
                f"tls_auth_clients {self.tls_auth_clients} needs tls_ca_cert_file or"
                " tls_ca_cert_dir (the CA client certificates are verified against)"
            )
        if self.tls_cluster and not (self.tls_port and ca):
            raise ValueError("tls_cluster needs a tls_port and tls_ca_cert_file or _dir")
        if self.clustered and self.tls_port and not self.port and not self.tls_cluster:
            raise ValueError("with port 0, peers can only reach this node with tls_cluster yes")
        parse_protocols(self.tls_protocols)

    @property
    def tls(self) -> bool:
        """A TLS port is configured (and so certificate files)."""
        return bool(self.tls_port)

    @property
    def https(self) -> bool:
        return self.tls and self.tls_http and bool(self.http_port)

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
        return self.node_id or f"{self.bind}:{self.port or self.tls_port}"

    @property
    def peer_addr(self) -> str:
        """Where peers reach this node: the advertised address, else the TLS port with
        tls_cluster, else the plaintext port."""
        port = self.tls_port if self.tls_cluster else self.port
        return self.advertise_addr or f"{self.bind}:{port}"

    def replace(self, **changes: Any) -> NodeConfig:
        return dataclasses.replace(self, **changes)


def setting_help() -> dict[str, tuple[Any, str, str]]:
    """name -> (default, help, kind) for every setting."""
    return {f.name: (f.default, f.metadata["help"], f.metadata["kind"]) for f in fields(NodeConfig)}


# GEOCACHE_* variables that are not settings but are read by geocache or its tools:
# the node's per-command timing switch (observability/metrics.py), pure Python instead
# of the compiled modules (compiled.py), and the test suite's.
OTHER_VARIABLES = frozenset(
    {
        "GEOCACHE_COMMAND_LATENCY",
        "GEOCACHE_PURE",
        "GEOCACHE_TEST_TARGET",
        "GEOCACHE_SCHEMATHESIS_SEED",
        "GEOCACHE_EXPECT_COMPILED",
    }
)
ENV_PREFIX = "GEOCACHE_"
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise ValueError(f"not an integer: {value!r}")


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"not a number: {value!r}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, str) and text in _TRUE + _FALSE:
        return text in _TRUE
    raise ValueError(f"not true or false: {value!r} (use true/false, yes/no, on/off, 1/0)")


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not a size: {value!r} (use e.g. 1048576, 64mb or 1gib)")
    return parse_size(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # A TOML list of strings for the comma-separated settings (seeds, refresh_keys, ...).
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise ValueError(f"not a string: {value!r}")


_COERCE = {"int": _integer, "float": _float, "bool": _bool, "str": _text}


def coerce(name: str, value: Any) -> Any:
    """Turn a setting's value (text from the environment or flags, or a TOML value) into
    its type; ValueError naming the setting when it is not one."""
    try:
        return _convert(name, value)
    except _BadValue as exc:
        raise ValueError(f"{name}: {exc}") from None


class _BadValue(ValueError):
    """A value that is not of its setting's type (the message does not name the setting)."""


def _convert(name: str, value: Any) -> Any:
    kinds = {f.name: (str(f.type), f.metadata["kind"]) for f in fields(NodeConfig)}
    if name not in kinds:
        known = difflib.get_close_matches(name, kinds, n=1)
        hint = f" (did you mean {known[0]!r}?)" if known else ""
        raise ValueError(f"unknown setting {name!r}{hint}")
    type_name, kind = kinds[name]
    convert = _size if kind == "size" else _COERCE[type_name]
    try:
        return convert(value)
    except ValueError as exc:
        raise _BadValue(str(exc)) from None


def _read_toml(path: str) -> dict[str, Any]:
    """The file's settings; ValueError naming the file on a syntax error."""
    with open(path, "rb") as f:
        try:
            document = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: TOML syntax error: {exc}") from None
    return {key.replace("-", "_"): value for key, value in document.items()}


def _environment(env: Mapping[str, str]) -> dict[str, str]:
    """GEOCACHE_<SETTING> values; ValueError for a GEOCACHE_ variable that is none (a typo
    would otherwise be ignored without a word)."""
    names = {ENV_PREFIX + name.upper(): name for name in setting_help()}
    values = {}
    for variable, text in env.items():
        if not variable.startswith(ENV_PREFIX) or variable in OTHER_VARIABLES:
            continue
        if variable not in names:
            # Compared without the prefix, which every name shares.
            known = difflib.get_close_matches(
                variable.removeprefix(ENV_PREFIX).lower(), names.values()
            )
            hint = f" (did you mean {ENV_PREFIX}{known[0].upper()}?)" if known else ""
            raise ValueError(f"unknown environment variable {variable}{hint}")
        values[names[variable]] = text
    return values


def load(
    toml_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Defaults, then the TOML file, then GEOCACHE_* variables, then `overrides` (flags).

    A ValueError names the setting and where its value came from (the file, the
    variable or the flag)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if toml_path:
        for name, value in _read_toml(toml_path).items():
            values[name], sources[name] = value, toml_path
    env = os.environ if environ is None else environ
    for name, text in _environment(env).items():
        values[name], sources[name] = text, ENV_PREFIX + name.upper()
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name], sources[name] = value, "--" + name.replace("_", "-")
    typed = {}
    for name, value in values.items():
        try:
            typed[name] = _convert(name, value)
        except _BadValue as exc:
            source = sources[name]
            where = source if source.startswith("--") else f"{source}: {name}"
            raise ValueError(f"{where}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{sources[name]}: {exc}") from None
    try:
        return NodeConfig(**typed)
    except ValueError as exc:
        # Checks across settings name the setting first: say where it was set.
        named = next(
            (n for n in sorted(sources, key=len, reverse=True) if str(exc).startswith(n + " ")),
            None,
        )
        if named is None:
            raise
        raise ValueError(f"{sources[named]}: {exc}") from None
