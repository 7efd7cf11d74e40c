"""The `geocache` command itself: the demo, status, and bad settings."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from geocache.cli.demo import Sample, parse_regions, region_lag_ms
from support import RawClient
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


# "us-east-1=1234" on the line naming the nodes started, "restarted (pid 1234)" later.
STARTED_PID = re.compile(r"\b[a-z]+-[a-z]+-\d+=(\d+)")
RESTARTED_PID = re.compile(r"restarted \(pid (\d+)\)")
# "us-east: ... lag p99 → eu-west 52 ms, → ap-south 97 ms" in the summary.
SUMMARY_LAG = re.compile(r"→ ([a-z]+-[a-z]+) ([\d,]+) ms")
ONE_WAY_MS = {("us-east", "eu-west"): 40, ("us-east", "ap-south"): 90, ("eu-west", "ap-south"): 70}
DEMO_JITTER_MS = 3


def demo_pids(output: str) -> list[int]:
    return [int(p) for p in STARTED_PID.findall(output) + RESTARTED_PID.findall(output)]


def node_running(pid: int) -> bool:
    """A live (not zombie) `geocache serve` process with this PID (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z" and b"geocache" in cmdline and b"serve" in cmdline


def test_demo_runs_three_regions_kills_a_node_and_leaves_nothing_behind() -> None:
    before = set(children_of(os.getpid()))
    result = geocache(
        "demo", "--regions", "3", "--nodes-per-region", "2", "--duration", "5",
        "--keys", "2000", "--no-live", timeout_s=60,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    pids = demo_pids(out)
    assert len(pids) == 7, out  # six nodes, and the victim once more on its restart
    assert not [pid for pid in pids if node_running(pid)]
    assert set(children_of(os.getpid())) <= before
    assert "12 relays" in out  # one per (remote node, source region)
    assert "TLS on every link" in out  # and it worked: the nodes were ready, 0 errors
    assert "killed (SIGKILL)" in out and "restarted" in out
    assert "0 errors" in out
    assert "exit codes [0, 0, 0, 0, 0, 0]; relays stopped" in out
    # Replication lag from the nodes' INFO, per region pair: every write crossed its
    # relay once, so no lag is below that pair's one-way delay.
    for region in ("us-east", "eu-west", "ap-south"):
        line = next(x for x in out.splitlines() if x.startswith(f"{region}: "))
        lags = {remote: float(ms.replace(",", "")) for remote, ms in SUMMARY_LAG.findall(line)}
        assert len(lags) == 2, line
        for remote, lag_ms in lags.items():
            pair = (region, remote) if (region, remote) in ONE_WAY_MS else (remote, region)
            assert lag_ms >= ONE_WAY_MS[pair] - DEMO_JITTER_MS, line


def test_demo_stops_everything_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "geocache", "demo", "--regions", "1", "--nodes", "2",
         "--duration", "60", "--no-live"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env={**geocache_env(), "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("ready" in x for x in lines):
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
        assert any("ready" in x for x in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "interrupted" in out and "exit codes [0, 0]" in out
    pids = demo_pids(out)
    assert len(pids) == 2 and not [pid for pid in pids if node_running(pid)]


DASHBOARD_URL = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/)")


def test_demo_keep_runs_on_with_the_dashboard_until_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "geocache", "demo", "--regions", "2", "--nodes", "1",
         "--duration", "2", "--rate", "500", "--no-live", "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
        env={**geocache_env(), "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        # Blocking reads (select would miss lines already in the pipe's text buffer);
        # the demo prints a line at least every few seconds, and pytest-timeout bounds it.
        while not any("keep running" in x for x in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        out = "".join(lines)
        assert "keep running" in out, out
        match = DASHBOARD_URL.search(out)
        assert match, out
        url = match.group(1)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"geocache" in page.read()
        with urllib.request.urlopen(url + "v1/dashboard", timeout=10) as reply:
            data = json.load(reply)
        states = {n["node_id"]: n["state"] for r in data["regions"] for n in r["nodes"]}
        assert states == {"us-east-1": "up", "eu-west-1": "up"}
        assert all(node_running(pid) for pid in demo_pids(out))  # still running
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = "".join(lines) + rest
    assert proc.returncode == 0, out
    assert "exit codes [0, 0]" in out
    assert not [pid for pid in demo_pids(out) if node_running(pid)]


def test_the_demo_reads_lag_from_info_and_shows_dashes_without_it() -> None:
    info = (
        "# Stats\r\nkeyspace_hits:3\r\n\r\n# Regions\r\n"
        "region:eu-west=rtt_ms=41.2,lag_ms=45,lag_p99_ms=52,queued=0,resync=0,sent=9,acked=9\r\n"
        "region_ap-south:rtt_ms=-1,lag_ms=0,lag_p99_ms=97.5,acked=3\r\n"
        "region:us-west=rtt_ms=80,lag_p99_ms=60,acked=0\r\n"
        "\r\n# Geocache\r\nregion:us-east\r\n"
    )
    regions = parse_regions(info)
    assert regions["eu-west"] == {
        "rtt_ms": 41.2, "lag_ms": 45, "lag_p99_ms": 52, "queued": 0, "resync": 0,
        "sent": 9, "acked": 9,
    }  # fmt: skip
    assert regions["ap-south"] == {"lag_ms": 0, "lag_p99_ms": 97.5, "acked": 3}  # -1: unknown
    assert set(regions) == {"eu-west", "ap-south", "us-west"}  # not the Geocache section's
    assert parse_regions("# Stats\r\nkeyspace_hits:3\r\n") == {}

    def node(regions: dict[str, dict[str, float]]) -> Sample:
        return Sample(keys=0, hits=0, misses=0, ready=True, alive=1, regions=regions)

    nodes = [node(regions), node({"eu-west": {"lag_p99_ms": 70.0, "acked": 1}}), node({})]
    assert region_lag_ms(nodes, "eu-west") == 70.0  # the worst node's
    assert region_lag_ms(nodes, "ap-south") == 97.5
    assert region_lag_ms(nodes, "us-west") is None  # nothing acknowledged yet: no lag
    assert region_lag_ms([node({})], "eu-west") is None


def test_relay_command_delays_a_node_and_stops_on_sigterm(node: ServerProcess) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "geocache", "relay", "--target", f"127.0.0.1:{node.port}",
         "--delay-ms", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**geocache_env(), "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the relay printed nothing"
        first = proc.stdout.readline()  # "relay 127.0.0.1:PORT -> 127.0.0.1:NODE"
        port = int(first.split()[1].rsplit(":", 1)[1])
        with RawClient("127.0.0.1", port, timeout_s=5) as client:
            client.call("PING")  # connect and warm up
            started = time.monotonic()
            assert client.call("PING") == b"+PONG\r\n"
            assert time.monotonic() - started >= 0.040  # 20 ms each way
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=10)
        assert proc.returncode == 0, errors
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_status_shows_a_node(node: ServerProcess, target_name: str) -> None:
    result = geocache("status", "--port", str(node.port), "--interval", "0.2", timeout_s=30)
    assert result.returncode == 0, result.stderr
    assert "geocache cluster through" in result.stdout and " up " in result.stdout
    assert "ops/s" in result.stdout and "hit ratio" in result.stdout


def test_status_of_a_node_that_is_not_there() -> None:
    result = geocache("status", "--port", "1", "--interval", "0.1", timeout_s=30)
    assert result.returncode == 1 and "cannot read 127.0.0.1:1" in result.stderr


def test_bad_settings_are_refused_clearly() -> None:
    result = geocache("serve", "--port", "70000", timeout_s=30)
    assert result.returncode == 2
    assert "port must be 0..65535" in result.stderr
    result = geocache("serve", "--write-acks", "most", timeout_s=30)
    assert result.returncode == 2 and "write_acks" in result.stderr
    result = geocache("serve", "--seeds", "127.0.0.1:1", timeout_s=30)
    assert result.returncode == 2 and "cluster_secret" in result.stderr


def test_config_errors_name_the_setting_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('port = "abc"\n')
    result = geocache("serve", "--config", str(config), timeout_s=30)
    assert result.returncode == 2
    assert f"{config}: port: not an integer: 'abc'" in result.stderr
    config.write_text("replicas = 2.5\n")
    result = geocache("serve", "--config", str(config), timeout_s=30)
    assert result.returncode == 2 and "replicas: not an integer: 2.5" in result.stderr
    config.write_text("port = [\n")
    result = geocache("serve", "--config", str(config), timeout_s=30)
    assert result.returncode == 2 and f"{config}: TOML syntax error" in result.stderr
    env = {**geocache_env(), "GEOCACHE_MAX_BYTE": "1mb"}
    result = subprocess.run(
        [sys.executable, "-m", "geocache", "serve"],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown environment variable GEOCACHE_MAX_BYTE" in result.stderr
    assert "did you mean GEOCACHE_MAX_BYTES?" in result.stderr
