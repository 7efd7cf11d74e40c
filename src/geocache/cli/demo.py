"""`geocache demo`: start a node on 127.0.0.1, run a workload against it, show it live.

The node is a real `geocache serve` subprocess on a free port. The workload is a
90/10 GET/SET mix over a skewed (Zipf-like) key set, pipelined, bounded by both time
and count. A live table shows throughput, hit ratio, keys and memory from the node's
INFO. At the end (or on Ctrl-C) the node gets SIGTERM and must exit 0; nothing is
left running.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from geocache.cli.status import fetch_info
from geocache.client.connection import Connection

PIPELINE = 50
# A bound on the workload whatever the duration: 20 million commands.
MAX_COMMANDS = 20_000_000
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Workload:
    keys: int
    sent: int = 0
    errors: int = 0
    stop: bool = False

    def run(self, port: int, deadline: float) -> None:
        try:
            self._run(port, deadline)
        except OSError:
            self.errors += 1

    def _run(self, port: int, deadline: float) -> None:
        rng = random.Random(7)
        # Zipf-like skew: a few keys are hot, most are cold.
        weights = [1.0 / (i + 1) ** 1.1 for i in range(self.keys)]
        with Connection("127.0.0.1", port) as conn:
            while not self.stop and time.monotonic() < deadline and self.sent < MAX_COMMANDS:
                picks = rng.choices(range(self.keys), weights, k=PIPELINE)
                batch: list[tuple[str | int, ...]] = []
                for i in picks:
                    if rng.random() < 0.1:
                        batch.append(("SET", f"user:{i}", f"profile-{i}-" + "x" * 64, "EX", 60))
                    else:
                        batch.append(("GET", f"user:{i}"))
                replies = conn.pipeline(batch)
                self.sent += len(replies)
                self.errors += sum(1 for r in replies if isinstance(r, Exception))


def _table(info: dict[str, dict[str, str]], ops_s: float, elapsed: float) -> Table:
    stats, memory = info.get("stats", {}), info.get("memory", {})
    hits, misses = int(stats.get("keyspace_hits", 0)), int(stats.get("keyspace_misses", 0))
    ratio = hits / (hits + misses) if hits + misses else 0.0
    keyspace = info.get("keyspace", {}).get("db0", "keys=0").split(",")[0].split("=")[1]
    table = Table(title=f"geocache demo: one node, {elapsed:.0f}s")
    for column in ("node", "ops/s", "hit ratio", "keys", "memory", "evictions", "clients"):
        table.add_column(column, justify="right")
    table.add_row(
        info.get("geocache", {}).get("node_id", "?"),
        f"{ops_s:,.0f}",
        f"{ratio:.1%}",
        keyspace,
        memory.get("used_memory_human", "?"),
        stats.get("evicted_keys", "0"),
        info.get("clients", {}).get("connected_clients", "?"),
    )
    return table


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited with {proc.returncode} before it was ready")
        try:
            with Connection("127.0.0.1", port, timeout_s=1.0) as conn:
                if conn.execute("PING") is not None:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the node did not answer PING in time")


def run_demo(duration_s: float, keys: int, live: bool = True) -> int:
    console = Console()
    port = free_port()
    logdir = tempfile.mkdtemp(prefix="geocache-demo-")
    log_path = os.path.join(logdir, "node.log")
    cmd = [
        sys.executable,
        "-m",
        "geocache",
        "serve",
        "--port",
        str(port),
        "--http-port",
        "0",
        "--max-bytes",
        "64mb",
        "--node-id",
        "local-1",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    workload = Workload(keys)
    try:
        _wait_ready(port, proc)
        console.print(f"node [bold]local-1[/bold] answering on 127.0.0.1:{port} (log: {log_path})")
        start = time.monotonic()
        worker = threading.Thread(target=workload.run, args=(port, start + duration_s))
        worker.start()
        last_sent, last_t = 0, start
        with Live(console=console, auto_refresh=False, transient=not live) as view:
            while worker.is_alive():
                worker.join(0.5)
                now = time.monotonic()
                ops = (workload.sent - last_sent) / max(now - last_t, 1e-6)
                last_sent, last_t = workload.sent, now
                view.update(_table(fetch_info("127.0.0.1", port), ops, now - start), refresh=True)
        elapsed = time.monotonic() - start
        info = fetch_info("127.0.0.1", port)
        console.print(_table(info, workload.sent / elapsed, elapsed))
        console.print(f"{workload.sent:,} commands in {elapsed:.1f}s, {workload.errors} errors")
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        workload.stop = True
        code = _stop(proc)
    console.print(f"node stopped with exit code {code}")
    return 0 if code == 0 and workload.errors == 0 else 1


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)
