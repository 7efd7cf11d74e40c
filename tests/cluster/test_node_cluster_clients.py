"""Node.js cluster clients (ioredis `Cluster`, node-redis `createCluster`) against a region.

The packages are pinned in tests/cluster/node/package.json and installed by
scripts/setup.sh (`npm ci`); Node.js comes from the system's packages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess
from support.cluster import running_region

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with running_region(tmp_path_factory.mktemp("region")) as nodes:
        yield nodes


def run_client(which: str, region: list[ServerProcess]) -> dict[str, object]:
    node = shutil.which("node")
    assert node, "Node.js is missing: scripts/setup.sh installs it"
    assert (HERE / "node_modules").is_dir(), "run scripts/setup.sh (npm ci in tests/cluster/node)"
    ports = [str(n.port) for n in region[:1]]  # one seed: the client learns the rest
    done = subprocess.run(
        [node, "cluster_clients.mjs", which, *ports],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("which", ["ioredis", "node-redis"])
def test_node_cluster_client_routes_by_the_slot_map(
    which: str, region: list[ServerProcess]
) -> None:
    result = run_client(which, region)
    assert result["nodes"] == 3  # every member is a primary of some slots
    assert result["read"] == 1000
    if which == "ioredis":
        assert result["count"] == "50"
    assert result["tx"][-1] == "42"  # type: ignore[index]
