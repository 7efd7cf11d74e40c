"""The `geocache` command: `serve`, `demo`, `status` and `relay`.

Every setting of `geocache serve` comes from config.NodeConfig, so each flag, its
environment variable and its TOML key are documented in one place (`--help` shows the
defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Coroutine, Sequence
from importlib.util import find_spec
from typing import Any

from geocache._version import __version__
from geocache.config import NodeConfig, load, setting_help

# `pip install geocache` brings what LocalCache and the clients need; these commands run
# a node (serve, and demo's nodes: dnspython and zeroconf find its peers) or draw tables
# with the `server` extra's modules.
# uvloop is left out: without it the node runs on asyncio's own loop.
SERVER_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("aiohttp", "prometheus_client", "dns", "zeroconf"),
    "demo": ("aiohttp", "prometheus_client", "dns", "zeroconf", "rich", "cryptography"),
    "certs": ("cryptography",),
    "status": ("rich",),
}
SERVER_EXTRA_HINT = "pip install 'geocache[server]'"


def missing_modules(command: str) -> list[str]:
    """The `server` extra's modules that `command` needs and cannot import."""
    return [name for name in SERVER_MODULES.get(command, ()) if find_spec(name) is None]


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "settings", "each may also come from GEOCACHE_<NAME> or the --config TOML file"
    )
    for name, (default, help_text, kind) in setting_help().items():
        flag = "--" + name.replace("_", "-")
        shown = f"{help_text} (default: {default!r})"
        if kind == "yesno":  # Redis's spelling (`--tls-cluster yes`); the value may be left out
            shown = f"{help_text} (default: {'yes' if default else 'no'})"
            group.add_argument(flag, nargs="?", const="yes", metavar="yes|no", help=shown)
        elif isinstance(default, bool):
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=shown
            )
        else:
            metavar = "SIZE" if kind == "size" else name.upper()
            group.add_argument(flag, default=None, metavar=metavar, help=shown)


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    """redis-cli's TLS flags, for commands that talk to a node."""
    parser.add_argument("--tls", action="store_true", help="connect over TLS")
    parser.add_argument("--cacert", help="CA certificate file to verify the node with")
    parser.add_argument("--cacertdir", help="directory of CA certificates")
    parser.add_argument("--cert", help="client certificate (for --tls-auth-clients yes)")
    parser.add_argument("--key", help="the client certificate's private key")


def tls_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A client TLS context from redis-cli style flags; None without --tls."""
    if not args.tls:
        return None
    from geocache.tls import client_context

    return client_context(args.cacert, args.cacertdir, args.cert, args.key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geocache", description="A geo-distributed in-memory cache that speaks Redis."
    )
    parser.add_argument("--version", action="version", version=f"geocache {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a node")
    serve.add_argument("--config", metavar="FILE", help="a TOML file of settings")
    _add_setting_flags(serve)

    demo = commands.add_parser(
        "demo",
        help="start local regions of nodes joined through delay relays, run a workload, "
        "kill a node, show it live",
    )
    demo.add_argument("--regions", type=int, default=3, help="regions, 1 to 3 (3)")
    demo.add_argument(
        "--nodes-per-region", "--nodes", type=int, default=3, help="nodes in each region (3)"
    )
    demo.add_argument("--duration", type=float, default=30.0, help="seconds of workload (30)")
    demo.add_argument("--keys", type=int, default=10_000, help="distinct keys (10000)")
    demo.add_argument(
        "--rate", type=float, default=2000.0, help="commands a second per region (2000)"
    )
    demo.add_argument("--no-live", action="store_true", help="print a summary, no live table")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="after the workload, keep the nodes running (for the dashboard) until Ctrl-C",
    )

    status = commands.add_parser(
        "status",
        help="the cluster through one node: members by region and state, keys, memory, "
        "ops/s, lag between regions",
    )
    status.add_argument("--host", default="127.0.0.1", help="a node to ask (127.0.0.1)")
    status.add_argument("--port", type=int, default=7379, help="its RESP port (7379)")
    status.add_argument("--password", default=None, help="requirepass of the nodes")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.add_argument(
        "--watch", action="store_true", help="refresh every --interval until Ctrl-C"
    )
    status.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between the two samples ops/s is measured over, and between refreshes (1)",
    )
    _add_tls_flags(status)

    certs = commands.add_parser(
        "certs",
        help="write a CA, a node certificate and a client certificate (PEM) for a test"
        " cluster: ca.crt, node.crt, node.key, client.crt, client.key",
    )
    certs.add_argument("--dir", required=True, help="directory to write them to")
    certs.add_argument(
        "--hosts",
        default="127.0.0.1,localhost",
        help="comma-separated names and IP addresses the node certificate is for",
    )
    certs.add_argument("--days", type=int, default=90, help="validity of the leaves (90)")

    relay = commands.add_parser(
        "relay", help="a TCP relay that delays each chunk (a slow link on 127.0.0.1)"
    )
    relay.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: a free one)")
    relay.add_argument("--target", required=True, help="host:port to relay to")
    relay.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay (50)")
    relay.add_argument("--jitter-ms", type=float, default=0.0, help="+- around the delay (0)")
    relay.add_argument("--seed", type=int, default=None, help="seed for the jitter")
    return parser


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:  # pragma: no cover - the server extra installs it where available
        asyncio.run(coro)


def serve(args: argparse.Namespace) -> int:
    from geocache.cluster.advertise import with_advertise_addr
    from geocache.observability import logs
    from geocache.server.node import Node

    overrides = {name: getattr(args, name) for name in setting_help()}
    why = ""
    try:
        config = load(args.config, overrides=overrides)
        if config.clustered and config.port and not config.advertise_addr:
            # Before logging starts: the node id may be the chosen address.
            config, why = with_advertise_addr(config)
    except (ValueError, OSError) as exc:
        print(f"geocache serve: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.effective_node_id, config.region, config.log_level, config.log_json)
    if why:
        log = logging.getLogger("geocache.node")
        log.info("advertising", extra={"addr": config.advertise_addr, "chosen_by": why})

    exit_code = 0
    if config.tls:  # certificate and key files that do not load: say so before starting
        from geocache.tls import server_context

        try:
            server_context(config)
        except (OSError, ssl.SSLError) as exc:
            print(f"geocache serve: TLS files: {exc}", file=sys.stderr)
            return 2

    async def main() -> None:
        nonlocal exit_code
        node = Node(config)
        await node.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, node.request_stop)
        # SIGHUP: new certificates for new handshakes; open connections stay (as nginx).
        loop.add_signal_handler(signal.SIGHUP, node.reload_tls)
        await node.run()
        exit_code = node.exit_code  # 1: no seed accepted this node's proof (allow_solo off)

    try:
        _run(main())
    except OSError as exc:
        print(f"geocache serve: cannot listen: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. an origin's module:function that cannot be loaded
        print(f"geocache serve: {exc}", file=sys.stderr)
        return 2
    except ssl.SSLError as exc:  # a certificate or key file that does not load
        print(f"geocache serve: TLS: {exc}", file=sys.stderr)
        return 2
    return exit_code


def run_relay(args: argparse.Namespace) -> int:
    """Relay until SIGINT or SIGTERM; the first line printed names the listening address."""
    from geocache.relay import Relay, serve, split_hostport

    try:
        listen_host, listen_port = split_hostport(args.listen)
        target_host, target_port = split_hostport(args.target)
        relay = Relay(listen_host, listen_port, target_host, target_port, seed=args.seed)
        relay.set_delay(args.delay_ms, args.jitter_ms)
    except ValueError as exc:
        print(f"geocache relay: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(relay, stop)

    try:
        _run(main())
    except OSError as exc:
        print(f"geocache relay: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def run_certs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from geocache.cli.certs import make_certs

    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    files = make_certs(Path(args.dir), hosts, args.days)
    print(f"wrote {files.ca_cert.name}, {files.node_cert.name}, {files.node_key.name},", end=" ")
    print(f"{files.client_cert.name}, {files.client_key.name} in {files.directory}")
    print(f"the node certificate is for {', '.join(hosts)}; keep ca.key off the nodes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = missing_modules(args.command)
    if missing:
        print(
            f"geocache {args.command} needs {', '.join(missing)}, which the server extra"
            f" installs: {SERVER_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 2
    if args.command == "serve":
        return serve(args)
    if args.command == "demo":
        from geocache.cli.demo import run_demo

        return run_demo(
            args.duration,
            args.keys,
            live=not args.no_live,
            regions=args.regions,
            nodes_per_region=args.nodes_per_region,
            rate=args.rate,
            keep=args.keep,
        )
    if args.command == "status":
        from geocache.cli.status import run_status

        if args.interval <= 0:
            print("geocache status: --interval must be more than 0", file=sys.stderr)
            return 2
        try:
            tls = tls_from_args(args)
        except (OSError, ssl.SSLError) as exc:
            print(f"geocache status: TLS: {exc}", file=sys.stderr)
            return 2
        return run_status(
            args.host, args.port, args.password, args.json, args.watch, args.interval, tls
        )
    if args.command == "relay":
        return run_relay(args)
    if args.command == "certs":
        return run_certs(args)
    return 2  # pragma: no cover - argparse requires a command


__all__ = ["NodeConfig", "build_parser", "main"]
