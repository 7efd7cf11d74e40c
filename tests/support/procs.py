"""Start and stop real server processes: redis-server and geocache nodes, for the tests
and for the benchmarks in bench/ (which import this module: one helper for both).

Every process is started by these helpers, remembered by its PID, and stopped by that
PID only (SIGTERM, then SIGKILL after a deadline). Readiness is polled with a deadline:
the server is ready when it answers PING (`+PONG`, or `-NOAUTH` when a password is set).
Ports are picked free by `geocache.ports.free_port`; since another process could take
the port between our probe and the server's bind, a test start that loses that race is
retried. A benchmark plans its servers first (`ServerSpec`: argv, port, log) and starts
them later, several at once with `start_all`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from geocache.ports import free_port

from .resp import RawClient

__all__ = [
    "HOST",
    "READY_TIMEOUT_S",
    "REPO_ROOT",
    "STOP_TIMEOUT_S",
    "ServerProcess",
    "ServerSpec",
    "ServerStartError",
    "free_port",
    "geocache_argv",
    "geocache_env",
    "redis_argv",
    "require_tool",
    "start_all",
    "start_geocache",
    "start_redis",
    "target",
    "wait_ready",
]

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
SRC_DIR = REPO_ROOT / "src"

# A Python node imports its dependencies before it listens: allow a slow CI machine
# 20 s to answer its first PING (a healthy start takes well under a second).
READY_TIMEOUT_S = 20.0
# Graceful shutdown budget before SIGKILL (seconds); a node drains connections first.
STOP_TIMEOUT_S = 10.0
# Delay between readiness probes (seconds): short, because tests wait on it.
POLL_INTERVAL_S = 0.02
# Attempts to start a server when its port was taken between the probe and its bind.
START_ATTEMPTS = 3

TARGET_ENV = "GEOCACHE_TEST_TARGET"


def target() -> str:
    """`geocache` (default) or `redis`: which server the `node` fixtures start."""
    value = os.environ.get(TARGET_ENV, "geocache").strip().lower() or "geocache"
    if value not in ("geocache", "redis"):
        raise ValueError(f"{TARGET_ENV} must be 'geocache' or 'redis', not {value!r}")
    return value


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"{name} is not installed; scripts/setup.sh installs it"
            " (apt: redis-server, redis-tools)"
        )
    return path


class ServerStartError(RuntimeError):
    """The server exited or never answered PING within the deadline."""


@dataclass
class ServerProcess:
    """A server process we started; `with` stops it on the way out.

    `kind` names it in errors and logs: "redis" or "geocache" in the tests, a label
    such as "fwd/n2" in a benchmark.
    """

    kind: str
    port: int
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = HOST
    password: str | None = None
    flags: dict[str, object] = field(default_factory=dict)
    # redis-py's ssl_* arguments, for a node whose `port` speaks TLS (support/cluster.py's
    # clients pass them on).
    client_tls: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def raw(self, timeout_s: float = 10.0) -> RawClient:
        """A new raw RESP connection (the caller closes it; use `with`)."""
        return RawClient(self.host, self.port, timeout_s=timeout_s)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def terminate(self) -> None:
        """Send SIGTERM to this process only (by PID), without waiting."""
        if self.is_running():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to timeout_s, then SIGKILL. Returns the exit code.

        Safe to call again, and after the process died (a benchmark SIGKILLs one).
        """
        if self.is_running():
            with contextlib.suppress(ProcessLookupError):  # it exited since the check
                self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=timeout_s)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_ready(server: ServerProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll PING until the server answers, the process exits, or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not server.is_running():
            raise ServerStartError(
                f"{server.kind} exited with {server.proc.returncode}: {server.argv}\n"
                f"{server.log_text()[-4000:]}"
            )
        try:
            with RawClient(server.host, server.port, timeout_s=1.0) as client:
                reply = client.call("PING")
            if reply == b"+PONG\r\n" or reply.startswith(b"-NOAUTH"):
                return
            last_error = RuntimeError(f"unexpected PING reply {reply!r}")
        except OSError as exc:
            last_error = exc
        time.sleep(POLL_INTERVAL_S)
    raise ServerStartError(
        f"{server.kind} on port {server.port} not ready in {timeout_s}s ({last_error}):\n"
        f"{server.log_text()[-4000:]}"
    )


def _spawn(
    kind: str,
    argv: list[str],
    port: int,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> ServerProcess:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=new_session,
        )
    return ServerProcess(kind=kind, port=port, argv=argv, proc=proc, log_path=log_path)


Builder = Callable[[int, Path], ServerProcess]
"""Spawns one server on a given port, logging to the given path."""


def _start_with_retry(build: Builder, workdir: Path, name: str) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    error: ServerStartError | None = None
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        server = build(port, workdir / f"{name}-{port}-{attempt}.log")
        try:
            wait_ready(server)
            return server
        except ServerStartError as exc:
            server.stop(timeout_s=2.0)
            error = exc
            if "in use" not in server.log_text().lower():
                break
    assert error is not None
    raise error


def redis_argv(port: int, workdir: Path, extra_args: Sequence[str] = ()) -> list[str]:
    return [
        require_tool("redis-server"),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(workdir),
        *extra_args,
    ]


def geocache_argv(port: int, extra_args: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "geocache",
        "serve",
        "--bind",
        HOST,
        "--port",
        str(port),
        "--http-port",
        "0",
        *extra_args,
    ]


def geocache_env() -> dict[str, str]:
    """The test's environment plus `src/` on PYTHONPATH (the package may not be installed).

    GEOCACHE_* variables are dropped: geocache reads its settings from them, and a
    developer's shell (or GEOCACHE_TEST_TARGET itself) must not change the node under test.
    GEOCACHE_PURE stays: it is the mode the whole run tests (pure Python or compiled).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GEOCACHE_") or name == "GEOCACHE_PURE"
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH")) if p)
    return env


def start_redis(workdir: Path, extra_args: Sequence[str] = ()) -> ServerProcess:
    """A fresh redis-server (no persistence) on a free port, ready to serve."""

    def build(port: int, log_path: Path) -> ServerProcess:
        argv = redis_argv(port, workdir, extra_args)
        return _spawn("redis", argv, port, log_path, cwd=workdir)

    return _start_with_retry(build, workdir, "redis")


def start_geocache(workdir: Path, extra_args: Sequence[str] = ()) -> ServerProcess:
    """A geocache node process on a free port, ready to serve."""

    def build(port: int, log_path: Path) -> ServerProcess:
        argv = geocache_argv(port, extra_args)
        return _spawn("geocache", argv, port, log_path, cwd=REPO_ROOT, env=geocache_env())

    return _start_with_retry(build, workdir, "geocache")


Ready = Callable[[ServerProcess], None]
"""Returns once a started server serves; raises ServerStartError if it never does."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A server to start later, on a port picked already: what a benchmark plans.

    Started in a session of its own, so a Ctrl-C at the terminal reaches only the
    benchmark, which then stops its servers by PID; with `src/` on PYTHONPATH and
    without GEOCACHE_* variables (`geocache_env`). Its log starts empty on each start.
    """

    kind: str
    argv: Sequence[str]
    port: int
    log_path: Path
    ready: Ready = wait_ready

    def spawn(self) -> ServerProcess:
        """The process, started but not yet known to serve."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)
        argv = list(self.argv)
        env = geocache_env()
        return _spawn(self.kind, argv, self.port, self.log_path, REPO_ROOT, env, new_session=True)

    def start(self) -> ServerProcess:
        """Spawn and wait until it serves; one that never does is stopped, and that raised."""
        server = self.spawn()
        try:
            self.ready(server)
        except BaseException:
            server.stop(timeout_s=2.0)
            raise
        return server


def start_all(
    stack: contextlib.ExitStack[bool | None], specs: Sequence[ServerSpec]
) -> list[ServerProcess]:
    """Spawn every server at once, then wait for each to serve (they start side by side).

    Each process is on `stack` from the moment it exists, so a failure or a Ctrl-C
    while any of them starts stops every one started here when the stack unwinds.
    """
    with contextlib.ExitStack() as mine:
        servers = [mine.enter_context(spec.spawn()) for spec in specs]
        for spec, server in zip(specs, servers, strict=True):
            spec.ready(server)
        stack.enter_context(mine.pop_all())
    return servers
