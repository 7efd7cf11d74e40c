"""Shared helpers for the benchmark scripts: free ports, server processes, readiness.

A benchmark owns the servers it starts: `ServerProcess` remembers the PID it spawned and
stops exactly that process (SIGTERM, then SIGKILL after a grace period), so a Ctrl-C or a
crash in the middle of a run never leaves a server listening behind it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent

# 20 s: a cold Python node imports uvloop, aiohttp and prometheus_client before it
# listens; on a loaded 2-core machine that has been seen to take several seconds.
READY_TIMEOUT_S = 20.0
# 5 s: both servers exit well within this on SIGTERM; past it we stop asking.
STOP_GRACE_S = 5.0
PING = b"*1\r\n$4\r\nPING\r\n"


def answers_ping(port: int, timeout_s: float = 0.5) -> bool:
    """True if a RESP server on `port` replies +PONG to PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(PING)
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def exchange(port: int, payload: bytes, timeout_s: float = 2.0) -> bytes:
    """Send `payload` and collect replies until the server goes quiet for 0.2 s."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        sock.settimeout(0.2)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def encode(command: tuple[str, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    args = [a.encode() for a in command]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def replies_differ(ports: dict[str, int], script: str) -> str | None:
    """None if every server answers `script` ("CMD arg; CMD arg") alike, else all replies."""
    payload = b"".join(encode(tuple(c.split())) for c in script.split(";"))
    replies = {name: exchange(port, payload) for name, port in ports.items()}
    return None if len(set(replies.values())) == 1 else repr(replies)


def taskset_prefix(cpu: int | None) -> list[str]:
    """`taskset -c CPU` when pinning was asked for and taskset exists, else nothing."""
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def cpu_info() -> dict[str, int]:
    """Cores on the machine and cores this process may run on (they differ in containers)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    return {"cpu_count": os.cpu_count() or 0, "usable_cpus": usable or (os.cpu_count() or 0)}


class ServerProcess:
    """One server process we started; a context manager that always stops it by PID."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The node may run from a checkout that is not pip-installed yet.
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])
        )
        with self.log_path.open("wb") as log:
            # A new session: a terminal Ctrl-C reaches only us, and we stop the server.
            self._proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else -1

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                break
            if answers_ping(self.port):
                return
            time.sleep(0.05)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not answer PING on port {self.port}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM the process we started, SIGKILL it if it lingers; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_GRACE_S)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `with` blocks stop the servers on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
