"""Regions of node processes for the client tests, on top of support/cluster.py.

Nodes join through the first one's address with the shared test secret; every wait
polls with a deadline; every process is stopped by its PID.
"""

from __future__ import annotations

from pathlib import Path

from support import cluster
from support.cluster import poll, start_at, states
from support.procs import ServerProcess, start_geocache

__all__ = ["addr", "cluster_args", "poll", "start_at", "start_nodes", "stop_all", "wait_alive"]

# A region of Python nodes agrees on membership within a few seconds on loopback.
CONVERGE_S = 15.0


def cluster_args(node_id: str, seed: str | None, region: str = "local") -> list[str]:
    return cluster.cluster_args(node_id, seed, "--region", region)


def start_nodes(
    tmp: Path, ids: list[str], region: str = "local", seed: str | None = None
) -> list[ServerProcess]:
    """Nodes joined into one cluster (through `seed`, else the first node started)."""
    nodes: list[ServerProcess] = []
    try:
        for node_id in ids:
            nodes.append(start_geocache(tmp, cluster_args(node_id, seed, region)))
            seed = seed or addr(nodes[0])
    except BaseException:
        stop_all(nodes)
        raise
    return nodes


def wait_alive(nodes: list[ServerProcess], count: int) -> None:
    """Until every node sees `count` members alive."""

    def converged() -> bool:
        return all(list(states(n).values()).count("alive") == count for n in nodes)

    poll(converged, CONVERGE_S, f"{count} members alive")


def stop_all(nodes: list[ServerProcess]) -> None:
    for node in nodes:
        node.stop()


def addr(server: ServerProcess) -> str:
    return f"{server.host}:{server.port}"
