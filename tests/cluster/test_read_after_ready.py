"""Read-your-writes across nodes from the moment a region reports ready: a write
acknowledged through one ready node reads back through every other ready node.

Nodes start together (one seed, two joining through it), the test waits for /readyz on
all three, then writes through one node and reads through the others at once.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from support import ServerProcess, free_port, start_geocache
from support.cluster import cluster_args, poll

pytestmark = pytest.mark.slow

RUNS = 20
KEYS = 1000


def ready(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_region(tmp: Path) -> tuple[list[ServerProcess], list[int]]:
    http = [free_port() for _ in range(3)]
    first = start_geocache(tmp, [*cluster_args("n1", None), "--http-port", str(http[0])])
    seed = f"127.0.0.1:{first.port}"
    nodes = [first]
    for i in (2, 3):
        args = [*cluster_args(f"n{i}", seed), "--http-port", str(http[i - 1])]
        nodes.append(start_geocache(tmp, args))
    return nodes, http


@pytest.mark.parametrize("run", range(RUNS))
def test_a_write_through_one_ready_node_reads_back_through_every_other(
    run: int, tmp_path: Path
) -> None:
    nodes, http = start_region(tmp_path)
    try:
        poll(lambda: all(ready(port) for port in http), 30, "all three ready")
        with redis.Redis(port=nodes[0].port, socket_timeout=5) as writer:
            pipe = writer.pipeline(transaction=False)
            for i in range(KEYS):
                pipe.set(f"rar:{i}", i)
            assert all(pipe.execute())
        for node in nodes[1:]:
            with redis.Redis(port=node.port, socket_timeout=5) as reader:
                pipe = reader.pipeline(transaction=False)
                for i in range(KEYS):
                    pipe.get(f"rar:{i}")
                got = pipe.execute()
            missing = [i for i, v in enumerate(got) if v != str(i).encode()]
            assert not missing, f"{len(missing)} of {KEYS} missing through {node.port}"
    finally:
        for node in nodes:
            node.stop()
