"""The `geocache` command itself: the demo, status, and bad settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.procs import ServerProcess, geocache_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def geocache(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geocache", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        env=geocache_env(),
        check=False,
    )


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc; nothing to install)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def test_demo_runs_kills_a_node_and_leaves_nothing_behind() -> None:
    before = set(children_of(os.getpid()))
    result = geocache("demo", "--duration", "6", "--no-live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 errors" in result.stdout
    assert "killed (SIGKILL)" in result.stdout or "restarted" in result.stdout
    assert "exit codes [0, 0, 0]" in result.stdout
    assert set(children_of(os.getpid())) <= before


def test_status_shows_a_node(node: ServerProcess, target_name: str) -> None:
    result = geocache("status", "--port", str(node.port), timeout_s=30)
    assert result.returncode == 0, result.stderr
    assert "connected_clients" in result.stdout


def test_bad_settings_are_refused_clearly() -> None:
    result = geocache("serve", "--port", "70000", timeout_s=30)
    assert result.returncode == 2
    assert "port must be 0..65535" in result.stderr
    result = geocache("serve", "--write-acks", "most", timeout_s=30)
    assert result.returncode == 2 and "write_acks" in result.stderr
    result = geocache("serve", "--seeds", "127.0.0.1:1", timeout_s=30)
    assert result.returncode == 2 and "cluster_secret" in result.stderr
