"""`geocache demo`: a local region of nodes, a workload, a crash and a recovery, live.

The nodes are real `geocache serve` subprocesses on free ports of 127.0.0.1, joined into
one cluster. A workload (90% GET, 10% SET, skewed keys, pipelined, bounded by time and
count) goes to every node in turn; any node answers any key. A third of the way in,
the last node is killed with SIGKILL: the workload moves to the other nodes and every
read still succeeds, from the surviving replica. Two thirds in, the node is restarted
and rejoins. A live table shows each node's state, keys, hit ratio and throughput.
At the end (or on Ctrl-C) every node gets SIGTERM and must exit 0; nothing is left
running.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

from geocache.cli.status import fetch_info
from geocache.client.connection import Connection
from geocache.protocol.types import Error

PIPELINE = 50
# A bound on the workload whatever the duration: 20 million commands.
MAX_COMMANDS = 20_000_000
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
REFRESH_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoNode:
    node_id: str
    port: int
    argv: list[str]
    log_path: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@dataclass
class Workload:
    """Sends pipelines to the running nodes in turn; a dead node's share moves on."""

    nodes: list[DemoNode]
    keys: int
    sent: int = 0
    errors: int = 0
    failovers: int = 0
    last_error: str = ""
    stop: bool = False
    _conns: dict[str, Connection] = field(default_factory=dict)

    def run(self, deadline: float) -> None:
        rng = random.Random(7)
        weights = [1.0 / (i + 1) ** 1.1 for i in range(self.keys)]  # Zipf-like skew
        turn = 0
        while not self.stop and time.monotonic() < deadline and self.sent < MAX_COMMANDS:
            node = self.nodes[turn % len(self.nodes)]
            turn += 1
            if not node.running():
                continue
            batch: list[tuple[str | int, ...]] = []
            for i in rng.choices(range(self.keys), weights, k=PIPELINE):
                if rng.random() < 0.1:
                    batch.append(("SET", f"user:{i}", f"profile-{i}-" + "x" * 64, "EX", 300))
                else:
                    batch.append(("GET", f"user:{i}"))
            try:
                replies = self._conn(node).pipeline(batch)
            except OSError:
                self._conns.pop(node.node_id, None)
                self.failovers += 1
                continue
            self.sent += len(replies)
            for reply in replies:
                if isinstance(reply, Error):
                    if reply.startswith("LOADING"):  # a restarted node still joining
                        self.failovers += 1
                        continue
                    self.errors += 1
                    self.last_error = str(reply)
        for conn in self._conns.values():
            conn.close()

    def _conn(self, node: DemoNode) -> Connection:
        conn = self._conns.get(node.node_id)
        if conn is None:
            conn = self._conns[node.node_id] = Connection("127.0.0.1", node.port, timeout_s=2)
        return conn


def _node_row(node: DemoNode, last: dict[str, int], dt: float) -> list[str]:
    if not node.running():
        return [node.node_id, "[red]down[/red]", "-", "-", "-", "-"]
    try:
        info = fetch_info("127.0.0.1", node.port)
    except OSError:
        return [node.node_id, "[yellow]starting[/yellow]", "-", "-", "-", "-"]
    stats = info.get("stats", {})
    hits, misses = int(stats.get("keyspace_hits", 0)), int(stats.get("keyspace_misses", 0))
    done = int(stats.get("total_commands_processed", 0))
    ops = max(done - last.get(node.node_id, done), 0) / max(dt, 1e-6)
    last[node.node_id] = done
    keys = info.get("keyspace", {}).get("db0", "keys=0").split(",")[0].split("=")[1]
    ratio = f"{hits / (hits + misses):.1%}" if hits + misses else "-"
    memory = info.get("memory", {}).get("used_memory_human", "?")
    return [node.node_id, "[green]up[/green]", keys, ratio, f"{ops:,.0f}", memory]


def _table(
    nodes: list[DemoNode], work: Workload, last: dict[str, int], dt: float, note: str
) -> Table:
    table = Table(title=f"geocache demo: {len(nodes)} nodes, one region. {note}")
    for column in ("node", "state", "keys", "hit ratio", "cmds/s", "memory"):
        table.add_column(column, justify="right")
    for node in nodes:
        table.add_row(*_node_row(node, last, dt))
    table.caption = f"{work.sent:,} commands sent, {work.errors} errors, {work.failovers} failovers"
    return table


def _wait_ready(node: DemoNode) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not node.running():
            raise RuntimeError(f"{node.node_id} exited before it was ready (log: {node.log_path})")
        try:
            with Connection("127.0.0.1", node.port, timeout_s=1.0) as conn:
                conn.execute("PING")
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{node.node_id} did not answer PING in time (log: {node.log_path})")


def make_nodes(count: int, logdir: str) -> list[DemoNode]:
    secret = secrets.token_hex(16)
    ports = [free_port() for _ in range(count)]
    nodes = []
    for i, port in enumerate(ports, 1):
        argv = [
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
            f"local-{i}",
            "--cluster-secret",
            secret,
            "--log-level",
            "warning",
        ]
        if i > 1:
            argv += ["--seeds", f"127.0.0.1:{ports[0]}"]
        nodes.append(DemoNode(f"local-{i}", port, argv, os.path.join(logdir, f"local-{i}.log")))
    return nodes


def run_demo(duration_s: float, keys: int, live: bool = True, node_count: int = 3) -> int:
    console = Console()
    logdir = tempfile.mkdtemp(prefix="geocache-demo-")
    nodes = make_nodes(node_count, logdir)
    work = Workload(nodes, keys)
    codes: list[int] = []
    try:
        for node in nodes:
            node.start()
            _wait_ready(node)
        console.print(f"{node_count} nodes answering on 127.0.0.1 (logs: {logdir})")
        start = time.monotonic()
        worker = threading.Thread(target=work.run, args=(start + duration_s,), daemon=True)
        worker.start()
        _watch(console, nodes, work, worker, start, duration_s, live)
        console.print(f"{work.sent:,} commands, {work.errors} errors, {work.failovers} failovers")
        if work.last_error:
            console.print(f"last error: {work.last_error}")
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        work.stop = True
        codes = [node.stop() for node in nodes]
    console.print(f"nodes stopped with exit codes {codes}")
    return 0 if all(c == 0 for c in codes) and work.errors == 0 else 1


def _watch(
    console: Console,
    nodes: list[DemoNode],
    work: Workload,
    worker: threading.Thread,
    start: float,
    duration_s: float,
    live: bool,
) -> None:
    victim = nodes[-1] if len(nodes) > 1 else None
    killed = restarted = False
    last: dict[str, int] = {}
    note, last_t = "", start
    with Live(console=console, auto_refresh=False, transient=not live) as view:
        while worker.is_alive():
            worker.join(REFRESH_S)
            now = time.monotonic()
            elapsed = now - start
            if victim and not killed and elapsed > duration_s / 3:
                victim.kill()
                killed, note = True, f"{victim.node_id} killed (SIGKILL); reads go on."
            elif victim and killed and not restarted and elapsed > 2 * duration_s / 3:
                victim.start()
                restarted, note = True, f"{victim.node_id} restarted; it rejoins and warms up."
            view.update(_table(nodes, work, last, now - last_t, note), refresh=True)
            last_t = now
    console.print(_table(nodes, work, last, time.monotonic() - last_t, note))
