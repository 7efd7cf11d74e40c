"""Shared helpers for the benchmark scripts: server processes, replies, results.

Server processes come from the tests' helper (tests/support/procs.py, imported as
`support.procs`, as the tests do): one `ServerProcess` for tests and benchmarks. A
benchmark owns the servers it starts: each is remembered by the PID it spawned, and
exactly that process is stopped (SIGTERM, then SIGKILL after a grace period), so a
Ctrl-C or a crash in the middle of a run never leaves a server listening behind it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The tests import their helpers as `support` (pytest puts tests/ on sys.path); so do
# we. Last on the path: nothing in tests/ may shadow an installed package.
if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))

from support.procs import (  # noqa: E402
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ServerProcess,
    ServerSpec,
    ServerStartError,
    free_port,
    geocache_env,
    start_all,
)

__all__ = [
    "READY_TIMEOUT_S",
    "REPO",
    "STOP_TIMEOUT_S",
    "ServerProcess",
    "ServerSpec",
    "ServerStartError",
    "cpu_info",
    "encode",
    "exchange",
    "free_port",
    "geocache_env",
    "raise_on_sigterm",
    "replies_differ",
    "results_path",
    "start_all",
    "taskset_prefix",
]


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


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `with` blocks stop the servers on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def results_path(name: str, quick: bool) -> Path:
    """Where a benchmark writes its JSON and logs: a --quick smoke run goes to its own
    folder, so it never overwrites the figures of a real run."""
    return REPO / "bench" / "results" / ("quick" if quick else "") / f"{name}.json"
