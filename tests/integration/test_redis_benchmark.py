"""redis-benchmark, the load tool Redis users reach for, runs clean against a node."""

from __future__ import annotations

import subprocess

from support import ServerProcess, require_tool


def test_redis_benchmark_completes_without_errors(node: ServerProcess) -> None:
    tool = require_tool("redis-benchmark")
    result = subprocess.run(
        [
            tool,
            "-h",
            node.host,
            "-p",
            str(node.port),
            "-t",
            "set,get,incr,mset",
            "-P",
            "16",
            "-n",
            "20000",
            "-c",
            "20",
            "-r",
            "1000",
            "-q",
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()
    tests = {line.split(",")[0].strip('"') for line in result.stdout.splitlines()[1:]}
    assert {"SET", "GET", "INCR"} <= tests
    assert any(name.startswith("MSET") for name in tests)
