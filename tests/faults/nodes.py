"""The nodes of a fault run: each a geocache process inside its own namespace.

A `NodeSpec` says what a node is (id, region, clock offset, key limit, whether it
starts late); the region tag is what region-level faults (a region split) and the
checker group nodes by. A node that starts late is not started with the others: a
`join` fault starts it mid-schedule, with every other node as a seed, as a node added
to a running cluster is. A node that left (`leave`: SIGTERM, it hands off and exits)
stays gone: it is nobody's seed, and the runner neither restarts nor reads it. Every
node listens on the same port, each at its own address, so a restart keeps its address
and there is no port race to lose.

Processes are started by support/procs.py's helpers (`_spawn`, `wait_ready`), prefixed
with `ip netns exec`: that execs in place, so the PID we hold is the node's own, and
SIGKILL, SIGSTOP and SIGCONT reach it directly. The environment passes through, so the
coverage of node processes is measured as everywhere else (procs.geocache_env).
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.cluster import cluster_args
from support.procs import REPO_ROOT, ServerProcess, _spawn, geocache_argv, geocache_env, wait_ready

from .netns import Host, Network

# Every node listens here, at its own address (geocache's default RESP port).
PORT = 7379
# A SIGKILLed process is reaped within milliseconds; 5 s means something is wrong.
REAP_TIMEOUT_S = 5.0
# A node's graceful stop (leave announcement, connections drained) takes under a second.
STOP_TIMEOUT_S = 5.0
# A leave mid-schedule waits for the handoff, which the node bounds at 10 s
# (handoff.LEAVE_HANDOFF_S), plus the drain; past this it is SIGKILLed.
LEAVE_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class NodeSpec:
    node_id: str
    region: str = "r1"
    # Test-only wall-clock skew of the node (`--clock-offset-ms`), from its first start.
    clock_offset_ms: int = 0
    # `--max-keys`: 0 for none; a small limit makes the node evict (LRU).
    max_keys: int = 0
    # Not started with the others: a `join` fault starts it (faults.py).
    starts_late: bool = False


@dataclass
class Node:
    """One node: its spec, where it lives, and its current process (None while down)."""

    spec: NodeSpec
    host: Host
    server: ServerProcess | None = None
    paused: bool = False
    # The clock offset of the running process (a skew fault restarts with another one).
    clock_offset_ms: int = 0
    # Left the cluster gracefully (a `leave` fault): never restarted.
    left: bool = False

    @property
    def node_id(self) -> str:
        return self.spec.node_id

    @property
    def addr(self) -> str:
        return self.host.addr

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.is_running()


class Cluster:
    """Nodes in namespaces of one network: start, SIGKILL, restart, SIGSTOP, SIGCONT."""

    def __init__(self, network: Network, specs: list[NodeSpec], workdir: Path) -> None:
        self.network = network
        self.workdir = workdir
        self.nodes: dict[str, Node] = {}
        for spec in specs:
            host = network.add_host(spec.node_id)
            self.nodes[spec.node_id] = Node(spec, host, clock_offset_ms=spec.clock_offset_ms)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.running]

    def members(self) -> list[Node]:
        """The nodes that are meant to be in the cluster: all but those that left."""
        return [n for n in self.nodes.values() if not n.left]

    def args(self, node: Node) -> list[str]:
        """geocache serve's flags for a node: its address, region, seeds (all the others
        but those that left)."""
        seeds = ",".join(f"{n.addr}:{PORT}" for n in self.members() if n is not node)
        extra = ["--bind", node.addr, "--advertise-addr", f"{node.addr}:{PORT}"]
        extra += ["--region", node.spec.region, "--replicas", "2", "--write-acks", "quorum"]
        if node.clock_offset_ms:
            extra += ["--clock-offset-ms", str(node.clock_offset_ms)]
        if node.spec.max_keys:
            extra += ["--max-keys", str(node.spec.max_keys)]
        return cluster_args(node.node_id, seeds, *extra)

    def spawn(self, node: Node) -> ServerProcess:
        """Start a node's process without waiting for it (see `wait_started`)."""
        if node.running:
            raise RuntimeError(f"{node.node_id} is already running")
        argv = node.host.exec_argv(geocache_argv(PORT, self.args(node)))
        log_path = self.workdir / f"{node.node_id}-{time.monotonic_ns()}.log"
        server = _spawn("geocache", argv, PORT, log_path, cwd=REPO_ROOT, env=geocache_env())
        server.host = node.addr
        node.server, node.paused = server, False
        return server

    def wait_started(self, node: Node) -> None:
        assert node.server is not None
        wait_ready(node.server)

    def start_all(self) -> None:
        """Start every node but the late ones at once (they join through each other), then
        wait for each."""
        first = [n for n in self.nodes.values() if not n.spec.starts_late]
        for node in first:
            self.spawn(node)
        for node in first:
            self.wait_started(node)

    def kill(self, node: Node) -> None:
        """SIGKILL by PID, and reap it."""
        server = node.server
        if server is None:
            return
        if server.is_running():
            server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(REAP_TIMEOUT_S)
        node.paused = False

    def restart(self, node: Node, clock_offset_ms: int | None = None) -> None:
        """Start a killed node again at its address (optionally with another clock offset)."""
        if clock_offset_ms is not None:
            node.clock_offset_ms = clock_offset_ms
        self.spawn(node)
        self.wait_started(node)

    def leave(self, node: Node) -> bool:
        """A graceful leave: SIGTERM by PID (the node announces LEFT, hands its buckets
        off and exits), waited for; True if it exited by itself, with status 0, within
        LEAVE_TIMEOUT_S."""
        node.left = True
        server = node.server
        if server is None or not server.is_running():
            return False
        self.resume(node)
        server.terminate()
        try:
            return server.wait(LEAVE_TIMEOUT_S) == 0
        except subprocess.TimeoutExpired:
            self.kill(node)
            return False

    def pause(self, node: Node) -> None:
        if node.server is not None and node.running:
            node.server.proc.send_signal(signal.SIGSTOP)
            node.paused = True

    def resume(self, node: Node) -> None:
        if node.server is not None and node.running:
            node.server.proc.send_signal(signal.SIGCONT)
        node.paused = False

    def stop_all(self) -> None:
        """Thaw, then stop every node by its PID: SIGTERM to all at once (each takes a
        moment to announce its leave), then wait for each, SIGKILL after a deadline."""
        servers = [n.server for n in self.nodes.values() if n.server is not None]
        for server in servers:
            if server.is_running():
                server.proc.send_signal(signal.SIGCONT)
                server.terminate()
        for server in servers:
            server.stop(timeout_s=STOP_TIMEOUT_S)
