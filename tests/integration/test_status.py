"""`geocache status` against two regions of real nodes (joined directly, no relays).

One node per region: status through either shows both regions, each node's numbers,
the lag both ways once writes have crossed, and a node killed with SIGKILL as not up
(with its last numbers, marked stale). `--watch --json` prints one object a refresh
and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from support.cluster import cluster_args, poll, start_at
from support.procs import ServerProcess, free_port, geocache_env

pytestmark = [pytest.mark.geocache_only, pytest.mark.timeout(90)]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def regions(tmp_path: Path) -> Iterator[dict[str, ServerProcess]]:
    nodes: dict[str, ServerProcess] = {}
    try:
        nodes["eu"] = start_at(free_port(), tmp_path, cluster_args("eu-1", None, "--region", "eu"))
        seed = f"127.0.0.1:{nodes['eu'].port}"
        nodes["us"] = start_at(free_port(), tmp_path, cluster_args("us-1", seed, "--region", "us"))
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def status(node: ServerProcess, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "geocache", "status", "--port", str(node.port), "--json",
         "--interval", "0.3", *args],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, env=geocache_env(),
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def nodes_of(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node_id"]: n for r in snapshot["regions"] for n in r["nodes"]}


def test_status_json_shows_regions_nodes_and_lag(regions: dict[str, ServerProcess]) -> None:
    poll(lambda: len(nodes_of(status(regions["eu"]))) == 2, 20, "both members known")
    with redis.Redis(port=regions["eu"].port) as eu, redis.Redis(port=regions["us"].port) as us:
        for i in range(200):
            eu.set(f"eu{i}", "x" * 20)
            us.set(f"us{i}", "y" * 20)
        poll(lambda: us.get("eu199") is not None and eu.get("us199") is not None, 20, "crossed")
        for i in range(100):
            eu.get(f"eu{i}")

    snapshot = status(regions["eu"])
    assert snapshot["node_id"] == "eu-1" and snapshot["region"] == "eu"
    assert [r["name"] for r in snapshot["regions"]] == ["eu", "us"]
    nodes = nodes_of(snapshot)
    for node_id in ("eu-1", "us-1"):
        node = nodes[node_id]
        assert node["state"] == "up" and not node["stale"]
        assert node["keys"] >= 400 and node["used_bytes"] > 0
        assert node["ops_per_s"] is not None and node["ops_per_s"] >= 0
    assert nodes["eu-1"]["self"] and not nodes["us-1"]["self"]
    assert nodes["eu-1"]["hit_ratio"] > 0
    lags = {(lag["from"], lag["to"]): lag for lag in snapshot["lag"]}
    assert set(lags) == {("eu", "us"), ("us", "eu")}
    for lag in lags.values():
        assert lag["lag_ms"] is not None and 0 <= lag["lag_ms"] < 5000
        assert lag["lag_p99_ms"] >= lag["lag_p50_ms"] >= 0
        assert lag["queued"] >= 0 and lag["resync"] is False

    table = subprocess.run(
        [sys.executable, "-m", "geocache", "status", "--port", str(regions["us"].port),
         "--interval", "0.2"],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, env=geocache_env(),
        check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "us-1 *" in table.stdout and "eu-1" in table.stdout
    assert "replication lag between regions" in table.stdout

    regions["us"].proc.send_signal(signal.SIGKILL)
    regions["us"].proc.wait(10)

    def us_not_up() -> bool:
        us_node = nodes_of(status(regions["eu"]))["us-1"]
        return us_node["state"] in ("suspect", "down") and us_node["stale"]

    poll(us_not_up, 30, "us-1 seen suspect or down")


def test_watch_prints_a_json_object_per_refresh(regions: dict[str, ServerProcess]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "geocache", "status", "--port", str(regions["eu"].port),
         "--json", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env=geocache_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
        assert first["node_id"] == second["node_id"] == "eu-1"
        assert second["at_ms"] >= first["at_ms"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
